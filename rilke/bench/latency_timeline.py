"""`rilke bench timeline`: where one record's time goes at low load, hop by hop.

Starts a broker (``--spawn-broker``) with :mod:`rilke.timeline` marks on (``RILKE_TIMELINE``
names a temporary directory for every process it starts), then runs two phases on fresh
one-partition topics:

- produce: this process sends ``--rate`` records/s with ``linger_ms`` ``--linger-ms`` and
  ``acks`` ``--acks``, each one alone (the caller blocks in ``get()`` on its future), and marks
  when the caller is woken;
- end to end: a producer process sends ``--rate`` records/s while this process tails the topic
  and marks each record's return from ``poll()``.

Each process writes its marks at exit; they share one clock (CLOCK_MONOTONIC), so a record's
marks from producer, broker and consumer line up by its offset. For each hop (one mark to the
next present one) it prints p50 and p90 over the phase's records in microseconds, and the
bare gRPC round trip of the same run beside them.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from rilke import timeline
from rilke.bench import latency
from rilke.bench.common import (
    SpawnedBroker,
    ensure_topic,
    live_producer,
    parse_topic_configs,
    payloads,
    percentiles,
    print_table,
    tail_live,
    write_json,
)

PRODUCE_HOPS = (
    "send",
    "drained",
    "request",
    "broker_handler",
    "broker_appended",
    "flush_begin",
    "flush_done",
    "broker_acked",
    "response",
    "resolved",
    "caller_woken",
)
"""The produce path's marks in the order a record passes them (flush_* only for a topic
with flush.messages=1 and acks != 0)."""

CLUSTER_PRODUCE_HOPS = (
    "send",
    "drained",
    "request",
    "broker_handler",
    "broker_appended",
    "leader_written",
    "leader_sent",
    "follower_received",
    "follower_written",
    "follower_synced",
    "follower_answered",
    "leader_heard",
    "leader_committed",
    "broker_acked",
    "response",
    "resolved",
    "caller_woken",
)
"""The produce path of a replicated partition (--spawn-cluster): the leader's Raft round
(written, sent), the first follower's (received, written, synced, answered), the leader
hearing it and committing. Of two followers, each follower mark is the earlier one's. The
leader syncs its own write while the followers do theirs: ``CLUSTER_SIDE_SPANS``."""

CLUSTER_SIDE_SPANS = (("leader_written", "leader_synced"), ("leader_synced", "leader_committed"))
"""Spans off the path, reported beside it: the leader's own fsync, and how long after it
the commit came (negative: the commit waited for the leader's sync, not a follower's)."""

E2E_HOPS = (
    "send",
    "drained",
    "request",
    "broker_handler",
    "broker_appended",
    "fetch_woken",
    "fetch_answered",
    "fetch_response",
    "polled",
)
"""The end-to-end path's marks (the consumer's fetch waits at the log end: fetch_woken)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "timeline",
        help="where one record's time goes at low load (produce and end to end)",
        description="Mark each hop of a record (client send, sender, broker handler, append, "
        "flush, fetch wake-up, response, caller woken, poll) across processes and print the "
        "p50/p90 of each hop, beside the bare gRPC round trip of the same run.",
    )
    p.add_argument("--rate", type=int, default=200, help="records/s (default 200)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    p.add_argument("--linger-ms", type=float, default=0)
    p.add_argument("--acks", default="1", choices=["0", "1", "all", "-1"])
    p.add_argument(
        "--topic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config of the topics, e.g. flush.messages=1 (repeatable)",
    )
    p.add_argument("--record-size", type=int, default=100)
    p.add_argument(
        "--produce-path",
        default="unary",
        choices=["unary", "stream"],
        help="the produce phase's producer: unary Produce calls or one ProduceStream",
    )
    p.add_argument(
        "--spawn-cluster",
        type=int,
        default=0,
        metavar="N",
        help="run against N spawned nodes (replication factor min(3, N)) and mark the "
        "replication hops too; use with --acks all",
    )
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=run)


def hop_figures(
    marks: Sequence[tuple[str, int, int]],
    hops: Sequence[str],
    window_ns: tuple[int, int],
    side: Sequence[tuple[str, str]] = (),
) -> tuple[int, list[tuple[str, float, float]]]:
    """Per hop (from one mark to the next one the record has), p50 and p90 in microseconds
    over the records whose first mark lies in ``window_ns``; and how many records counted.
    The last row is the whole path, first mark to last; then each ``side`` span (a to b, of
    the records counted that have both marks), named "a -> b (beside)"."""
    by_key: dict[int, dict[str, int]] = defaultdict(dict)
    for event, key, ns in sorted(marks, key=lambda m: m[2]):  # a mark made twice: the first
        if event in hops and window_ns[0] <= ns <= window_ns[1]:
            by_key[key].setdefault(event, ns)
    spans: dict[str, list[float]] = defaultdict(list)
    counted = 0
    for events in by_key.values():
        present = [h for h in hops if h in events]
        if len(present) < 2 or present[0] != hops[0] or present[-1] != hops[-1]:
            continue  # not a whole path (a record of the warm-up, or cut by the window)
        counted += 1
        for a, b in itertools.pairwise(present):
            spans[f"{a} -> {b}"].append((events[b] - events[a]) / 1000)
        spans["total"].append((events[present[-1]] - events[present[0]]) / 1000)
        for a, b in side:
            if a in events and b in events:
                spans[f"{a} -> {b} (beside)"].append((events[b] - events[a]) / 1000)
    order = [f"{a} -> {b}" for i, a in enumerate(hops) for b in hops[i + 1 :]]
    rows = [
        (name, statistics.median(spans[name]), _p90(spans[name]))
        for name in [*order, "total", *(f"{a} -> {b} (beside)" for a, b in side)]
        if spans.get(name)
    ]
    return counted, rows


def _p90(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(0.9 * len(s)) - 1))]


@contextlib.contextmanager
def _spawned(nodes: int) -> Iterator[str]:
    """A spawned broker's bootstrap address, or a spawned cluster's of ``nodes`` nodes;
    every process stopped cleanly (SIGTERM: each writes its marks) on exit."""
    if nodes:
        from rilke.bench.cluster_spawn import SpawnedCluster

        with SpawnedCluster(nodes) as cluster:
            yield cluster.bootstrap
        return
    broker = SpawnedBroker()
    try:
        yield broker.address
    finally:
        broker.stop()


def _produce_phase(bootstrap: str, topic: str, args: argparse.Namespace) -> tuple[int, int]:
    """Returns the window of the measured records (after the warm-up), in ns."""
    from rilke.client.producer import Producer

    values = payloads(args.record_size)
    with Producer(
        bootstrap,
        acks=args.acks,
        linger_ms=args.linger_ms,
        client_id="rilke-bench-timeline",
        produce_path=args.produce_path,
    ) as producer:
        producer.partitions_for(topic)
        for i in range(20):  # warm-up, outside the window
            producer.send(topic, values[i]).get(30)
        window_start = timeline.now_ns()
        start = time.perf_counter()
        count = int(args.rate * args.seconds)
        for i in range(count):
            due = start + i / args.rate
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            metadata = producer.send(topic, values[i & 1023]).get(30)
            timeline.mark("caller_woken", metadata.offset)
    return window_start, timeline.now_ns()


def _e2e_phase(bootstrap: str, topic: str, args: argparse.Namespace) -> None:
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    with Consumer(bootstrap_servers=bootstrap, client_id="rilke-bench-timeline") as consumer:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_end()
        consumer.position(tp)
        ctx = mp.get_context("spawn")
        sent_count = ctx.Value("q", -1)
        proc = ctx.Process(
            target=live_producer,
            kwargs={
                "bootstrap": bootstrap,
                "topic": topic,
                "rate": args.rate,
                "seconds": args.seconds,
                "size": args.record_size,
                "linger_ms": args.linger_ms,
                "acks": args.acks,
                "sent_count": sent_count,
            },
            daemon=True,
        )
        proc.start()

        def polled(records: Any, now_ns: int) -> None:
            now = timeline.now_ns()
            for r in records:
                timeline.mark("polled", r.offset, now)

        tail_live(consumer, proc, sent_count, polled, args.seconds + 60)


def run(args: argparse.Namespace) -> int:
    if args.rate < 1 or args.seconds <= 0:
        print("rilke: bad argument: --rate must be >= 1 and --seconds > 0")
        return 2
    configs = parse_topic_configs(args.topic_config)
    with tempfile.TemporaryDirectory(prefix="rilke-timeline-") as directory:
        os.environ[timeline.ENV] = directory  # for the broker and producer processes
        timeline.enable(directory)
        floors = latency.Floors(args.rate)
        floors.measure()
        rf = min(3, args.spawn_cluster) or 1
        with _spawned(args.spawn_cluster) as bootstrap:
            try:
                topic = ensure_topic(bootstrap, None, 1, configs, rf)
                produce_window = _produce_phase(bootstrap, topic, args)
                topic = ensure_topic(bootstrap, topic + "-e2e", 1, configs, rf)
                e2e_window = (timeline.now_ns(), 0)
                _e2e_phase(bootstrap, topic, args)
                e2e_window = (e2e_window[0], timeline.now_ns())
            finally:
                os.environ.pop(timeline.ENV, None)
        # Left: the nodes stopped cleanly and wrote their marks.
        timeline.dump()
        marks = timeline.load(directory)
    floors.measure()
    floor_pct = percentiles(floors.back_to_back)
    paced_pct = percentiles(floors.paced)
    hops = CLUSTER_PRODUCE_HOPS if args.spawn_cluster else PRODUCE_HOPS
    side = CLUSTER_SIDE_SPANS if args.spawn_cluster else ()
    produced, produce_rows = hop_figures(marks, hops, produce_window, side)
    consumed, e2e_rows = hop_figures(marks, E2E_HOPS, e2e_window)
    settings = (
        f"{args.rate}/s, linger {args.linger_ms} ms, acks={args.acks}"
        + (f", {args.spawn_cluster} nodes, replication factor {rf}" if args.spawn_cluster else "")
        + (f", {' '.join(args.topic_config)}" if args.topic_config else "")
    )
    floor_rows = [
        (
            "floor: gRPC unary p50 / p99",
            f"{floor_pct['p50_ms'] * 1000:.0f} / {floor_pct['p99_ms'] * 1000:.0f} us",
        ),
        (
            f"floor at {args.rate}/s: p50 / p99",
            f"{paced_pct['p50_ms'] * 1000:.0f} / {paced_pct['p99_ms'] * 1000:.0f} us",
        ),
    ]
    for title, rows in (
        (f"produce ({settings}): {produced} records", produce_rows),
        (f"end to end ({settings}): {consumed} records", e2e_rows),
    ):
        print_table(
            f"rilke bench timeline, {title}; p50 / p90 per hop",
            [(name, f"{p50:8.0f} / {p90:8.0f} us") for name, p50, p90 in rows] + floor_rows,
        )
    write_json(
        args.json,
        {
            "benchmark": "timeline",
            "settings": vars(args) | {"func": None},
            "floor_p50_us": round(floor_pct["p50_ms"] * 1000, 1),
            "floor_p99_us": round(floor_pct["p99_ms"] * 1000, 1),
            "paced_floor_p50_us": round(paced_pct["p50_ms"] * 1000, 1),
            "paced_floor_p99_us": round(paced_pct["p99_ms"] * 1000, 1),
            "produce": {"records": produced, "hops": _rows_json(produce_rows)},
            "end_to_end": {"records": consumed, "hops": _rows_json(e2e_rows)},
        },
    )
    return 0 if produced and consumed else 1


def _rows_json(rows: list[tuple[str, float, float]]) -> dict[str, dict[str, float]]:
    return {name: {"p50_us": round(p50, 1), "p90_us": round(p90, 1)} for name, p50, p90 in rows}
