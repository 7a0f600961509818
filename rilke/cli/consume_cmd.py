"""`rilke consume TOPIC`: print records as text, JSON lines or raw bytes."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import Any

from rilke.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    add_client_arguments,
    client_command,
    client_settings,
)
from rilke.cli.record_format import make_formatter


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "consume",
        help="print records of a topic",
        description=(
            "Print records of a topic (all partitions, or --partition). Without --follow, "
            "stops at the end of each partition as it was at the start; with --follow, waits "
            "for new records until interrupted or --timeout passes without one. With "
            "--group, reads as a member of that consumer group (the group's committed offsets "
            "say where to start; --from earliest|latest only where it has none) and commits "
            "what it printed. Ctrl-C exits 130."
        ),
    )
    p.add_argument("topic")
    p.add_argument(
        "--from",
        dest="start",
        default="earliest",
        metavar="WHERE",
        help="earliest (default), latest, an OFFSET, -N (the last N records of each "
        "partition), an ISO-8601 time (2024-05-01T12:00:00Z) or @MILLIS (a timestamp in ms); "
        "an offset past the end waits there for it",
    )
    p.add_argument(
        "--group",
        "-G",
        metavar="GROUP",
        help="consume as a member of this consumer group and commit the records printed",
    )
    p.add_argument(
        "--partition", "-p", type=int, action="append", help="read only this partition (repeatable)"
    )
    p.add_argument("--max-messages", "-n", type=int, help="stop after this many records")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records")
    p.add_argument(
        "--format",
        default="text",
        metavar="FORMAT",
        help="text (default): the value as UTF-8 (with --print-key, KEY<TAB>VALUE); json: one "
        "JSON object per line with topic, partition, offset, timestamp, key, value and headers "
        '([{"key": K, "value": V}]; bytes that are not UTF-8 become key_base64/value_base64); '
        "raw: the value bytes and a newline; or a format string as kcat's -f: '%%t %%p %%o "
        "%%k %%s' (%%t topic, %%p partition, %%o offset, %%k key, %%s value, %%K/%%S their "
        "lengths, %%T timestamp, %%h headers, \\n \\t escapes)",
    )
    p.add_argument(
        "--null-text",
        default="NULL",
        metavar="TEXT",
        help="text and format strings: print a null key or value as this (default NULL), "
        "so it reads apart from an empty one",
    )
    p.add_argument("--print-key", action="store_true", help="text format: print the key too")
    p.add_argument(
        "--key-separator", default="\t", help="text format: between key and value (default TAB)"
    )
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop after this long without a new record"
    )
    add_client_arguments(p)
    p.set_defaults(func=_consume)


def parse_start(text: str) -> tuple[str, int]:
    """--from to ("earliest"|"latest"|"offset"|"time", value); raises ValueError."""
    t = text.strip()
    if t in ("earliest", "beginning"):
        return "earliest", 0
    if t in ("latest", "end"):
        return "latest", 0
    if t.startswith("@"):
        ms = int(t[1:])
        if ms < 0:
            raise ValueError(f"--from {text!r}: a timestamp must be >= 0")
        return "time", ms
    if t.startswith("-") and t[1:].isdigit():
        last = int(t[1:])
        if last == 0:
            raise ValueError(f"--from {text!r}: -N needs N >= 1 (the last N records)")
        return "last", last
    if t.isdigit():
        return "offset", int(t)
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--from {text!r}: expected earliest, latest, an offset, -N, an ISO time or @millis"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return "time", int(when.timestamp() * 1000)


PROBE_INTERVAL_S = 1.0
"""How long ``rilke consume`` waits without a record before asking the broker for the end
offsets: the answer (or the NoBrokersAvailableError of a dead broker) ends the wait."""


def _probe(
    consumer: Any,
    tps: list[Any],
    *,
    stop_at: dict[Any, int] | None,
    done: set[Any],
    idle_s: float,
    args: argparse.Namespace,
) -> None:
    """No record came for a while: make sure the broker is there (raises
    NoBrokersAvailableError when it is gone), mark partitions whose end has moved down to the
    position as done (retention), and, when reading to the end, raise KafkaTimeoutError once
    nothing has come for the request timeout although records are left."""
    from rilke.errors import KafkaTimeoutError

    pending = [tp for tp in tps if tp not in done]
    ends = consumer.end_offsets(pending)
    if stop_at is None:
        return
    behind = []
    for tp in pending:
        position = consumer.position(tp)
        if position >= min(stop_at[tp], ends[tp]):
            done.add(tp)
        else:
            behind.append(f"{tp.topic}-{tp.partition} at {position} of {stop_at[tp]}")
    if behind and idle_s >= args.request_timeout:
        raise KafkaTimeoutError(
            f"no records for {idle_s:.0f}s although some are left ({', '.join(behind)}): "
            f"the broker does not serve them; see its log, or raise --request-timeout"
        )


@client_command
def _consume(args: argparse.Namespace) -> int:
    kind, value = parse_start(args.start)
    if args.max_messages is not None and args.max_messages < 0:
        raise ValueError(f"--max-messages must be >= 0, not {args.max_messages}")
    if args.timeout is not None and args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0, not {args.timeout}")
    formatter = make_formatter(
        args.format,
        print_key=args.print_key,
        key_separator=args.key_separator,
        null_text=args.null_text,
    )
    if args.group is not None:
        if kind not in ("earliest", "latest"):
            raise ValueError(
                f"--from {args.start!r} cannot be combined with --group: the group's committed "
                f"offsets say where to start (--from earliest or latest applies where it has none)"
            )
        if args.partition:
            raise ValueError("--partition cannot be combined with --group: the group assigns them")
        return _consume_group(args, kind, formatter)
    return _consume_partitions(args, kind, value, formatter)


def _consume_partitions(args: argparse.Namespace, kind: str, value: int, formatter: Any) -> int:
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    out = sys.stdout.buffer
    with Consumer(
        bootstrap_servers=args.bootstrap_servers,
        client_id="rilke-cli",
        auto_offset_reset="earliest",
        **client_settings(args),
    ) as consumer:
        partitions = sorted(consumer.partitions_for_topic(args.topic))
        if args.partition:
            for p in args.partition:
                if p not in partitions:
                    raise ValueError(
                        f"--partition {p}: topic {args.topic!r} has {len(partitions)} partitions"
                    )
            partitions = sorted(set(args.partition))
        tps = [TopicPartition(args.topic, p) for p in partitions]
        consumer.assign(tps)
        # Offsets below which records are read but not printed: an offset past the end is
        # waited for there (a fetch past the end would be out of range, and the reset policy
        # would jump back to the start of the log).
        skip_below: dict[TopicPartition, int] = {}
        if kind == "latest":
            consumer.seek_to_end()
        elif kind == "offset":
            ends = consumer.end_offsets(tps)
            for tp in tps:
                if value > ends[tp]:
                    consumer.seek(tp, ends[tp])
                    skip_below[tp] = value
                else:
                    consumer.seek(tp, value)
        elif kind == "last":
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, max(begins[tp], ends[tp] - value))
        elif kind == "time":
            found = consumer.offsets_for_times(dict.fromkeys(tps, value))
            ends = consumer.end_offsets(tps)
            for tp in tps:
                ot = found.get(tp)
                consumer.seek(tp, ot.offset if ot is not None else ends[tp])
        # Without --follow: stop at the end offsets as they are now.
        stop_at = None if args.follow else consumer.end_offsets(tps)
        done: set[TopicPartition] = set()
        if stop_at is not None:
            for tp in tps:
                if consumer.position(tp) >= stop_at[tp]:
                    done.add(tp)
        count = 0
        last_record = time.monotonic()
        probe_at = last_record + PROBE_INTERVAL_S
        try:
            while len(done) < len(tps) and (args.max_messages is None or count < args.max_messages):
                got = consumer.poll(200)
                if not got:
                    now = time.monotonic()
                    if args.timeout is not None and now - last_record >= args.timeout:
                        break
                    if now >= probe_at:
                        _probe(
                            consumer,
                            tps,
                            stop_at=stop_at,
                            done=done,
                            idle_s=now - last_record,
                            args=args,
                        )
                        probe_at = time.monotonic() + PROBE_INTERVAL_S
                    continue
                last_record = time.monotonic()
                for tp, records in got.items():
                    floor = skip_below.get(tp, 0)
                    for r in records:
                        if stop_at is not None and r.offset >= stop_at[tp]:
                            done.add(tp)
                            break
                        if args.max_messages is not None and count >= args.max_messages:
                            break
                        if r.offset < floor:
                            continue
                        out.write(formatter(r))
                        count += 1
                    if stop_at is not None and consumer.position(tp) >= stop_at[tp]:
                        done.add(tp)
                out.flush()
        except KeyboardInterrupt:
            out.flush()
            return EXIT_INTERRUPTED
        out.flush()
    return EXIT_OK


def _consume_group(args: argparse.Namespace, reset: str, formatter: Any) -> int:
    """Read ``args.topic`` as a member of group ``args.group``; commit each printed record.

    Without --follow, stops once every assigned partition has reached the end offset it had
    when it was assigned; raises KafkaTimeoutError when no partition is assigned within the
    request timeout.
    """
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition
    from rilke.errors import KafkaTimeoutError

    out = sys.stdout.buffer
    with Consumer(
        args.topic,
        bootstrap_servers=args.bootstrap_servers,
        client_id="rilke-cli",
        group_id=args.group,
        auto_offset_reset=reset,
        enable_auto_commit=False,
        **client_settings(args),
    ) as consumer:
        stop_at: dict[TopicPartition, int] = {}
        count = 0
        started = last_record = time.monotonic()
        try:
            while args.max_messages is None or count < args.max_messages:
                got = consumer.poll(200)
                assigned = consumer.assignment()
                if not args.follow:
                    new = [tp for tp in assigned if tp not in stop_at]
                    if new:
                        stop_at.update(consumer.end_offsets(new))
                    if not assigned and time.monotonic() - started >= args.request_timeout:
                        raise KafkaTimeoutError(
                            f"group {args.group!r} assigned this consumer no partition of "
                            f"{args.topic!r} within {args.request_timeout:g}s (are other "
                            f"members holding them all?)"
                        )
                if not got:
                    if args.timeout is not None and time.monotonic() - last_record >= args.timeout:
                        break
                    if (
                        not args.follow
                        and assigned
                        and all(consumer.position(tp) >= stop_at[tp] for tp in assigned)
                    ):
                        break
                    continue
                last_record = time.monotonic()
                printed: dict[TopicPartition, int] = {}
                for tp, records in got.items():
                    for r in records:
                        if not args.follow and tp in stop_at and r.offset >= stop_at[tp]:
                            break
                        if args.max_messages is not None and count >= args.max_messages:
                            break
                        out.write(formatter(r))
                        printed[tp] = r.offset + 1
                        count += 1
                out.flush()
                if printed:
                    consumer.commit(printed)
        except KeyboardInterrupt:
            out.flush()
            return EXIT_INTERRUPTED
        out.flush()
    return EXIT_OK
