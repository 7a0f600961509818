"""`rilke consume TOPIC`: print records as text, JSON lines or raw bytes."""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from datetime import datetime
from typing import Any

from rilke.cli.common import EXIT_OK, add_client_arguments, client_command, client_settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "consume",
        help="print records of a topic",
        description=(
            "Print records of a topic (all partitions, or --partition). Without --follow, "
            "stops at the end of each partition as it was at the start; with --follow, waits "
            "for new records until interrupted or --timeout passes without one."
        ),
    )
    p.add_argument("topic")
    p.add_argument(
        "--from",
        dest="start",
        default="earliest",
        metavar="WHERE",
        help="earliest (default), latest, an OFFSET, an ISO-8601 time (2024-05-01T12:00:00Z) "
        "or @MILLIS (a timestamp in ms)",
    )
    p.add_argument(
        "--partition", "-p", type=int, action="append", help="read only this partition (repeatable)"
    )
    p.add_argument("--max-messages", "-n", type=int, help="stop after this many records")
    p.add_argument("--follow", "-f", action="store_true", help="keep waiting for new records")
    p.add_argument(
        "--format",
        choices=["text", "json", "raw"],
        default="text",
        help="text: the value as UTF-8 (with --print-key, KEY<TAB>VALUE); json: one JSON object "
        "per line with topic, partition, offset, timestamp, key, value, headers (bytes that "
        "are not UTF-8 become key_base64/value_base64); raw: the value bytes and a newline",
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
    if t.lstrip("-").isdigit():
        offset = int(t)
        if offset < 0:
            raise ValueError(f"--from {text!r}: an offset must be >= 0")
        return "offset", offset
    try:
        when = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"--from {text!r}: expected earliest, latest, an offset, an ISO time or @millis"
        ) from None
    if when.tzinfo is None:
        when = when.astimezone()
    return "time", int(when.timestamp() * 1000)


def _text(b: bytes | None) -> str:
    return "" if b is None else b.decode("utf-8", errors="replace")


def _json_bytes(obj: dict[str, Any], name: str, b: bytes | None) -> None:
    if b is None:
        obj[name] = None
        return
    try:
        obj[name] = b.decode("utf-8")
    except UnicodeDecodeError:
        obj[name] = None
        obj[f"{name}_base64"] = base64.b64encode(b).decode()


def format_record(
    record: Any, fmt: str, print_key: bool = False, key_separator: str = "\t"
) -> bytes:
    if fmt == "raw":
        return (record.value or b"") + b"\n"
    if fmt == "json":
        obj: dict[str, Any] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
        }
        _json_bytes(obj, "key", record.key)
        _json_bytes(obj, "value", record.value)
        obj["headers"] = [[k, _text(v) if v is not None else None] for k, v in record.headers]
        return (json.dumps(obj, ensure_ascii=False) + "\n").encode()
    line = _text(record.value)
    if print_key:
        line = _text(record.key) + key_separator + line
    return (line + "\n").encode()


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
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    kind, value = parse_start(args.start)
    if args.max_messages is not None and args.max_messages < 0:
        raise ValueError(f"--max-messages must be >= 0, not {args.max_messages}")
    if args.timeout is not None and args.timeout <= 0:
        raise ValueError(f"--timeout must be > 0, not {args.timeout}")
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
        if kind == "latest":
            consumer.seek_to_end()
        elif kind == "offset":
            for tp in tps:
                consumer.seek(tp, value)
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
                    for r in records:
                        if stop_at is not None and r.offset >= stop_at[tp]:
                            done.add(tp)
                            break
                        if args.max_messages is not None and count >= args.max_messages:
                            break
                        out.write(format_record(r, args.format, args.print_key, args.key_separator))
                        count += 1
                    if stop_at is not None and consumer.position(tp) >= stop_at[tp]:
                        done.add(tp)
                out.flush()
        except KeyboardInterrupt:
            pass
        out.flush()
    return EXIT_OK
