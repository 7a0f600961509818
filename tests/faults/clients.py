"""The clients of a fault run and the histories they write: one process each, in the bed's
client namespace, one JSON event per line in its own file, flushed as it happens.

    python -m tests.faults.clients producer --bootstrap B --out F --seconds S --topic T --acks all
    python -m tests.faults.clients consumer --bootstrap B --out F --seconds S --topic T --group G
    python -m tests.faults.clients admin    --bootstrap B --out F --seconds S --replicas 3
    python -m tests.faults.clients final    --bootstrap B --out F --topic T ... --group G ...

Every event has ``t`` (CLOCK_MONOTONIC, the same clock in every process of the machine, so
the nemesis's fault times compare with it) and ``type``:

- producer: ``send`` (client, acks, topic, partition, seq, value) before the record is handed
  to the producer; then ``ack`` (the same and ``offset``) or ``fail`` (and ``error``). Values
  are ``"<client>:<seq>"``, unique in the run. Idempotent (the producer's default).
- consumer (one member of its group, manual commits): ``commit`` (group, topic, partition,
  offset, ``t0`` when the commit began) once the coordinator acknowledged it;
  ``committed`` (the same fields) for every read of the group's committed offset.
- admin: ``topic`` (op create|delete, name, ok, error, t0) for each operation.
- final (after the heal): ``read`` (topic, partition, offset, value) for every record of the
  topics from the log start to the high watermark; ``final_committed`` per group partition;
  ``final_error`` when a part could not be read in time. (The run itself adds ``topics``,
  each node's ListTopics answer: tests/faults/run.py.)

Every client stops at ``--seconds`` or once ``--stop-file`` exists (and every call has its own deadline); failures of calls
are events (``error``), never the end of the client, so a fault cannot end the history early.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from rilke.client.admin import Admin
from rilke.client.consumer import Consumer
from rilke.client.producer import Producer
from rilke.client.structs import NewTopic, OffsetAndMetadata, TopicPartition

REQUEST_TIMEOUT_MS = 3000
DELIVERY_TIMEOUT_MS = 15_000
"""A record not acknowledged within this fails (and is indeterminate: it may still be in the
log). Shorter than a run, so most records are decided while the run lasts."""
MAX_IN_FLIGHT_RECORDS = 200
ERROR_BACKOFF_S = 0.2
COMMITTED_READ_INTERVAL_S = 0.5
FINAL_READ_TIMEOUT_S = 60.0
READ_QUIET_S = 3.0


class History:
    """One JSON event per line, flushed per event; thread-safe (producer callbacks write from
    the client's loop thread)."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"t": time.monotonic(), "type": kind, **fields})
        with self._lock:
            self._stream.write(line + "\n")
            self._stream.flush()


def _going(args: argparse.Namespace, deadline: float) -> bool:
    """Before ``--seconds`` and before the ``--stop-file`` appears."""
    return time.monotonic() < deadline and not (args.stop_file and os.path.exists(args.stop_file))


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def run_producer(args: argparse.Namespace, history: History) -> None:
    deadline = time.monotonic() + args.seconds
    window = threading.BoundedSemaphore(MAX_IN_FLIGHT_RECORDS)
    producer = None
    while producer is None and _going(args, deadline):
        try:
            producer = Producer(
                args.bootstrap,
                acks=args.acks,
                linger_ms=2,
                request_timeout_ms=REQUEST_TIMEOUT_MS,
                delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
                retry_backoff_ms=50,
                retry_backoff_max_ms=500,
                metadata_max_age_ms=2000,
                max_block_ms=REQUEST_TIMEOUT_MS,
                client_id=args.client,
            )
        except Exception as exc:
            history.write("error", client=args.client, error=_error(exc))
            time.sleep(ERROR_BACKOFF_S)
    if producer is None:
        return
    acks = "all" if args.acks == "all" else "1"
    partitions = 0
    seq = 0
    interval_s = 1.0 / args.rate
    next_send = time.monotonic()
    try:
        while _going(args, deadline):
            if not partitions:
                try:
                    partitions = producer.partitions_for(args.topic)
                except Exception as exc:
                    history.write("error", client=args.client, error=_error(exc))
                    time.sleep(ERROR_BACKOFF_S)
                    continue
            if not window.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            partition = seq % partitions
            value = f"{args.client}:{seq}"
            fields = {"client": args.client, "acks": acks, "topic": args.topic,
                      "partition": partition, "seq": seq, "value": value}  # fmt: skip
            history.write("send", **fields)
            try:
                future = producer.send(args.topic, value.encode(), partition=partition)
            except Exception as exc:
                window.release()
                history.write("fail", **fields, error=_error(exc))
                seq += 1
                continue

            def done(err: BaseException | None, meta: Any, fields: dict[str, Any] = fields) -> None:
                window.release()
                if err is None:
                    history.write("ack", **fields, offset=meta.offset)
                else:
                    history.write("fail", **fields, error=_error(err))

            future.add_both(done)
            seq += 1
            next_send += interval_s
            if (pause := next_send - time.monotonic()) > 0:
                time.sleep(pause)
    finally:
        with contextlib.suppress(Exception):
            producer.flush(DELIVERY_TIMEOUT_MS / 1000)
        with contextlib.suppress(Exception):
            producer.close(5)


def _consumer(args: argparse.Namespace) -> Consumer:
    return Consumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        session_timeout_ms=10_000,
        fetch_max_wait_ms=200,
        metadata_max_age_ms=2000,
        client_id=args.client,
    )


def run_consumer(args: argparse.Namespace, history: History) -> None:
    deadline = time.monotonic() + args.seconds
    consumer: Consumer | None = None
    last_read = 0.0
    while _going(args, deadline):
        try:
            if consumer is None:
                consumer = _consumer(args)
            got = consumer.poll(timeout_ms=200)
            ends = {tp: records[-1].offset + 1 for tp, records in got.items() if records}
            if ends:
                t0 = time.monotonic()
                consumer.commit({tp: OffsetAndMetadata(end) for tp, end in ends.items()})
                for tp, end in ends.items():
                    history.write("commit", group=args.group, topic=tp.topic,
                                  partition=tp.partition, offset=end, t0=t0)  # fmt: skip
            if time.monotonic() - last_read >= COMMITTED_READ_INTERVAL_S and consumer.assignment():
                last_read = t0 = time.monotonic()
                for tp, committed in consumer.committed(consumer.assignment()).items():
                    offset = getattr(committed, "offset", committed)
                    if offset is not None and offset >= 0:
                        history.write("committed", group=args.group, topic=tp.topic,
                                      partition=tp.partition, offset=offset, t0=t0)  # fmt: skip
        except Exception as exc:
            history.write("error", client=args.client, error=_error(exc))
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()
            consumer = None
            time.sleep(ERROR_BACKOFF_S)
    if consumer is not None:
        with contextlib.suppress(Exception):
            consumer.close()


def run_admin(args: argparse.Namespace, history: History) -> None:
    deadline = time.monotonic() + args.seconds
    admin = Admin(args.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS, client_id=args.client)
    created: list[str] = []
    k = 0
    try:
        while _going(args, deadline):
            if k % 3 == 2 and created:
                op, name = "delete", created.pop(0)
            else:
                op, name = "create", f"adm-{args.client}-{k}"
            k += 1
            t0 = time.monotonic()
            try:
                if op == "create":
                    admin.create_topics([NewTopic(name, 1, args.replicas)])
                    created.append(name)
                else:
                    admin.delete_topics([name])
                history.write("topic", op=op, name=name, ok=True, error=None, t0=t0)
            except Exception as exc:
                history.write("topic", op=op, name=name, ok=False, error=_error(exc), t0=t0)
            time.sleep(args.interval)
    finally:
        with contextlib.suppress(Exception):
            admin.close()


def _read_topic(args: argparse.Namespace, topic: str, history: History) -> None:
    consumer = Consumer(
        bootstrap_servers=args.bootstrap,
        auto_offset_reset="earliest",
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        fetch_max_wait_ms=100,
        client_id="final-reader",
    )
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        positions = dict.fromkeys(parts, 0)  # the next offset to read
        quiet_since = dict.fromkeys(parts, time.monotonic())  # last poll that gave records
        deadline = time.monotonic() + FINAL_READ_TIMEOUT_S

        def done(tp: TopicPartition) -> bool:
            # Read to the end; or the tail left holds no record: polls at the position have
            # given nothing for READ_QUIET_S while the broker's high watermark is at the end
            # (a log can end with control batches, Raft's no-op entries, which hold none).
            if positions[tp] >= ends[tp]:
                return True
            highwater = consumer.highwater(tp)
            return (
                highwater is not None
                and highwater >= ends[tp]
                and time.monotonic() - quiet_since[tp] >= READ_QUIET_S
            )

        while not all(done(tp) for tp in parts):
            if time.monotonic() >= deadline:
                history.write("final_error", topic=topic, error="read-back timed out",
                              ends={str(tp.partition): ends[tp] for tp in parts},
                              positions={str(tp.partition): positions[tp] for tp in parts},
                              highwater={str(tp.partition): consumer.highwater(tp)
                                         for tp in parts})  # fmt: skip
                return
            for tp, records in consumer.poll(timeout_ms=500).items():
                if records:
                    quiet_since[tp] = time.monotonic()
                for r in records:
                    positions[tp] = max(positions[tp], r.offset + 1)
                    value = r.value.decode(errors="replace") if r.value is not None else None
                    history.write("read", topic=tp.topic, partition=tp.partition,
                                  offset=r.offset, value=value)  # fmt: skip
            for tp in parts:
                positions[tp] = max(positions[tp], consumer.position(tp, timeout=5))
        history.write("read_end", topic=topic,
                      ends={str(tp.partition): ends[tp] for tp in parts},
                      positions={str(tp.partition): positions[tp] for tp in parts})  # fmt: skip
    finally:
        consumer.close()


def _retrying(what: str, history: History, attempts: int = 10) -> Iterator[int]:
    yield from range(attempts)
    history.write("final_error", topic=what, error=f"gave up after {attempts} attempts")


def run_final(args: argparse.Namespace, history: History) -> None:
    for topic in args.topic_list:
        for _ in _retrying(topic, history):
            try:
                _read_topic(args, topic, history)
                break
            except Exception as exc:
                history.write("error", client="final", error=_error(exc))
                time.sleep(1)
    with Admin(args.bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS) as admin:
        for group in args.group_list:
            for _ in _retrying(f"group {group}", history):
                try:
                    for tp, offset in admin.list_group_offsets(group).items():
                        history.write("final_committed", group=group, topic=tp.topic,
                                      partition=tp.partition, offset=offset)  # fmt: skip
                    break
                except Exception as exc:
                    history.write("error", client="final", error=_error(exc))
                    time.sleep(1)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.clients")
    parser.add_argument("role", choices=["producer", "consumer", "admin", "final"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--stop-file", help="stop once this file exists (or at --seconds)")
    parser.add_argument("--client", default="c")
    parser.add_argument("--topic", default="faults")
    parser.add_argument("--acks", choices=["all", "1"], default="all")
    parser.add_argument("--rate", type=float, default=200.0, help="records per second")
    parser.add_argument("--group", default="faults-group")
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.5, help="admin: between ops")
    parser.add_argument("--topic-list", nargs="*", default=[], help="final: topics to read")
    parser.add_argument("--group-list", nargs="*", default=[], help="final: groups' offsets")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.seconds < 0:
        parser.error("--rate must be > 0 and --seconds >= 0")
    return args


ROLES = {"producer": run_producer, "consumer": run_consumer, "admin": run_admin, "final": run_final}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with open(args.out, "a", encoding="utf-8") as stream:
        ROLES[args.role](args, History(stream))
    return 0


if __name__ == "__main__":
    sys.exit(main())
