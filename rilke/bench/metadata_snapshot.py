"""`rilke bench metadata-snapshot`: what a metadata snapshot costs a node.

Builds a metadata state in process (``--brokers`` alive brokers, ``--topics`` topics of
``--partitions`` partitions and ``--replicas`` replicas each, placed by the controller's own
decider), then times, ``--runs`` times each, the three steps the controller takes: encoding
the applied state (on the event loop), saving it as a snapshot file (fsynced, on a worker
thread) and, at a restart or an InstallSnapshot, reading the file back and restoring the state
from it. Reports the snapshot's bytes and p50/max of each step.

Example (10,000 partitions): ``rilke bench metadata-snapshot --topics 1000 --partitions 10``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from rilke.bench.common import percentiles, print_table, write_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "metadata-snapshot",
        help="cost of a metadata snapshot: encode, save, read and restore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--brokers", type=int, default=5, help="alive brokers (5)")
    parser.add_argument("--topics", type=int, default=1000, help="topics (1000)")
    parser.add_argument("--partitions", type=int, default=10, help="partitions per topic (10)")
    parser.add_argument("--replicas", type=int, default=3, help="replicas per partition (3)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each step (5)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rilke.replication.controller import ControllerDecider, MetadataApplier
    from rilke.replication.raft.types import ConfState, Snapshot
    from rilke.replication.snapshot_files import SnapshotFiles

    if min(args.brokers, args.topics, args.partitions, args.replicas, args.runs) < 1:
        raise ValueError("--brokers, --topics, --partitions, --replicas and --runs must be >= 1")
    applier = MetadataApplier()
    state = applier.state
    decider = ControllerDecider(state)
    decider.become_leader(0)
    offset = 0

    def apply(records: list[Any]) -> None:
        nonlocal offset
        if records:
            offset += len(records)
            state.apply_batch(records, offset)

    apply(decider.bootstrap("bench-cluster", [1, 2, 3]))
    for b in range(1, args.brokers + 1):
        apply(decider.register_broker(b, f"10.0.0.{b}", 9292, f"rack-{b % 3}", 0))
        apply(decider.heartbeat(b, state.brokers[b].epoch, 0))
    for t in range(args.topics):
        apply(decider.create_topic(f"topic-{t}", args.partitions, args.replicas, {}, f"id-{t}"))

    encode_ms, save_ms, restore_ms = [], [], []
    data = b""
    with tempfile.TemporaryDirectory(prefix="rilke-bench-snapshot-") as tmp:
        files = SnapshotFiles(Path(tmp))
        for _ in range(args.runs):
            started = time.perf_counter()
            index, data = applier.snapshot()
            encode_ms.append((time.perf_counter() - started) * 1000)
            snap = Snapshot(index, 1, ConfState(frozenset({1, 2, 3})), data)
            started = time.perf_counter()
            files.save(snap)
            save_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            loaded = files.read(index)
            MetadataApplier().restore(loaded.data)
            restore_ms.append((time.perf_counter() - started) * 1000)
    figures = {
        "partitions": args.topics * args.partitions,
        "snapshot_bytes": len(data),
        "encode_ms": percentiles(encode_ms),
        "save_ms": percentiles(save_ms),
        "read_restore_ms": percentiles(restore_ms),
    }
    rows = [
        ("partitions", f"{figures['partitions']:,} ({args.topics:,} topics, R={args.replicas})"),
        ("snapshot bytes", f"{len(data):,}"),
    ]
    for name, values in (
        ("encode (event loop)", figures["encode_ms"]),
        ("save + fsync (worker)", figures["save_ms"]),
        ("read + restore", figures["read_restore_ms"]),
    ):
        rows.append((name, f"p50 {values['p50_ms']:.1f} ms, max {values['max_ms']:.1f} ms"))
    print_table("metadata snapshot", rows)
    write_json(args.json, figures)
    return 0
