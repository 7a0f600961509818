"""`rilke bench cluster-batch`: what the replicated path adds to one batch over a single node.

In one run, with :mod:`rilke.timeline` marks on in every process (``RILKE_TIMELINE``), the
same acks=all load goes to three one-partition topics, one batch in flight (each record sent
alone and waited for, at ``--rate`` records/s for ``--seconds``):

- ``single``: one spawned broker, the topic with ``flush.messages=1`` (fsync before the
  acknowledgement: the durability a replicated acks=all write has on every replica);
- ``rf1``: a spawned ``--nodes`` cluster, a topic of replication factor 1 (the cluster's own
  path: metadata view, leadership checks, a Raft group of one voter once partitions are
  replicated);
- ``rf3``: the same cluster, replication factor 3.

For each it prints the p50 of every hop of the produce path (client send -> sender -> request
-> broker handler -> appended -> acked -> response -> caller woken; see `rilke bench
timeline`), the batch's p50/p99 from send to caller woken, and the CPU each node spent per
batch (user + system from /proc over the phase, less the node's idle CPU measured just
before it over as long a window). The difference rf3 - single is what replication adds per
batch; broker_appended -> broker_acked on rf3 holds the replication round (propose, persist,
send to the followers, their append and fsync, the quorum, apply).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from rilke import timeline
from rilke.bench import latency
from rilke.bench.cluster_idle import idle_cpu
from rilke.bench.cluster_spawn import SpawnedCluster, process_cpu_s
from rilke.bench.common import SpawnedBroker, ensure_topic, print_table, write_json
from rilke.bench.latency_timeline import PRODUCE_HOPS, _produce_phase, hop_figures

PHASES = ("single", "rf1", "rf3")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster-batch",
        help="what replication adds per batch over one node (acks=all, hops and CPU)",
        description="Send the same acks=all load, one batch in flight, to a single broker "
        "(flush.messages=1), and to topics of replication factor 1 and 3 on a spawned "
        "cluster; print each hop's p50, the batch p50/p99 and CPU per batch per node.",
    )
    p.add_argument("--nodes", type=int, default=3, help="cluster nodes (default 3)")
    p.add_argument("--rate", type=int, default=200, help="records/s (default 200)")
    p.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    p.add_argument("--record-size", type=int, default=100)
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    p.set_defaults(func=run, linger_ms=0.0, acks="all", produce_path="unary")


def cpu_per_batch_us(
    busy_s: Sequence[float], idle_share: Sequence[float], wall_s: float, batches: int
) -> list[float]:
    """Per node: CPU seconds spent over a phase of ``wall_s`` less its idle share of a core
    over as long, per batch, in microseconds (never below 0)."""
    if batches <= 0:
        return [0.0 for _ in busy_s]
    return [
        max(0.0, (busy - idle * wall_s) / batches * 1e6)
        for busy, idle in zip(busy_s, idle_share, strict=True)
    ]


class _Measured:
    """One phase's figures: hop rows, batch count and CPU per batch per node."""

    def __init__(self) -> None:
        self.window: tuple[int, int] = (0, 0)
        self.batches = 0
        self.cpu_us: list[float] = []
        self.nodes: list[str] = []
        self.hops: dict[str, tuple[float, float]] = {}


def _phase(
    bootstrap: str,
    topic: str,
    pids: dict[str, int],
    args: argparse.Namespace,
    idle_window_s: float,
) -> _Measured:
    """Idle CPU of ``pids`` over ``idle_window_s``, then the load, with their CPU over it."""
    m = _Measured()
    m.nodes = list(pids)
    idle = idle_cpu([_Pid(pid) for pid in pids.values()], idle_window_s)
    before = [process_cpu_s(pid) for pid in pids.values()]
    start = time.monotonic()
    m.window = _produce_phase(bootstrap, topic, args)
    wall = time.monotonic() - start
    busy = [process_cpu_s(pid) - b for pid, b in zip(pids.values(), before, strict=True)]
    m.batches = int(args.rate * args.seconds)
    m.cpu_us = cpu_per_batch_us(busy, idle, wall, m.batches)
    return m


class _Pid:
    """What idle_cpu asks of a node, for any process."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)


def run(args: argparse.Namespace) -> int:
    if args.rate < 1 or args.seconds <= 0 or args.nodes < 3:
        print("rilke: bad argument: --rate >= 1, --seconds > 0 and --nodes >= 3 needed")
        return 2
    idle_window_s = min(args.seconds, 3.0)
    phases: dict[str, _Measured] = {}
    with tempfile.TemporaryDirectory(prefix="rilke-cluster-batch-") as directory:
        os.environ[timeline.ENV] = directory  # for every process started from here on
        timeline.enable(directory)
        try:
            floor = latency.measure_floor()
            broker = SpawnedBroker()
            try:
                topic = ensure_topic(broker.address, None, 1, {"flush.messages": "1"})
                phases["single"] = _phase(
                    broker.address, topic, {"broker": broker.proc.pid}, args, idle_window_s
                )
            finally:
                broker.stop()  # a clean stop: it writes its marks
            with SpawnedCluster(args.nodes) as cluster:
                for name, factor in (("rf1", 1), ("rf3", 3)):
                    topic = f"bench-batch-{name}"
                    cluster.create_topic(topic, 1, factor)
                    leader, _ = cluster.leader_of(topic, 0)
                    pids = {
                        f"node {n.node_id}" + (" (leader)" if n.node_id == leader else ""): n.pid
                        for n in cluster.nodes.values()
                    }
                    phases[name] = _phase(cluster.bootstrap, topic, pids, args, idle_window_s)
        finally:
            os.environ.pop(timeline.ENV, None)
        timeline.dump()
        marks = timeline.load(directory)
    floor += latency.measure_floor()
    for m in phases.values():
        _, rows = hop_figures(marks, PRODUCE_HOPS, m.window)
        m.hops = {name: (p50, p90) for name, p50, p90 in rows}
    return _report(phases, latency.floor_percentiles(floor), args)


def _report(phases: dict[str, _Measured], floor: dict[str, float], args: argparse.Namespace) -> int:
    names = sorted({h for m in phases.values() for h in m.hops}, key=_hop_order)
    rows = [("hop: p50 / p90 us", "  ".join(f"{p:>17}" for p in PHASES))]
    rows += [(hop, "  ".join(_us(phases[p].hops.get(hop)) for p in PHASES)) for hop in names]
    single = phases["single"].hops.get("total")
    rf3 = phases["rf3"].hops.get("total")
    if single and rf3:
        rows.append(("rf3 adds per batch (p50)", f"{rf3[0] - single[0]:,.0f} us"))
    rows.append(("floor: gRPC unary p50", f"{floor['p50_ms'] * 1000:,.0f} us"))
    for p in PHASES:
        m = phases[p]
        rows.append(
            (
                f"CPU per batch, {p}",
                ", ".join(
                    f"{node} {us:,.0f} us" for node, us in zip(m.nodes, m.cpu_us, strict=True)
                ),
            )
        )
    print_table(
        f"rilke bench cluster-batch: acks=all, one batch in flight, {args.rate}/s x "
        f"{args.seconds:g} s, {args.record_size} B",
        rows,
    )
    write_json(
        args.json,
        {
            "benchmark": "cluster-batch",
            "settings": {"nodes": args.nodes, "rate": args.rate, "seconds": args.seconds},
            "floor_p50_us": round(floor["p50_ms"] * 1000, 1),
            "phases": {
                p: {
                    "hops_us": {h: {"p50": v[0], "p90": v[1]} for h, v in m.hops.items()},
                    "cpu_per_batch_us": dict(zip(m.nodes, m.cpu_us, strict=True)),
                }
                for p, m in phases.items()
            },
        },
    )
    return 0 if all(m.hops for m in phases.values()) else 1


def _us(value: tuple[float, float] | None) -> str:
    return f"{'-':>17}" if value is None else f"{value[0]:8,.0f} / {value[1]:6,.0f}"


def _hop_order(hop: str) -> int:
    """Hops in path order, the total last."""
    n = len(PRODUCE_HOPS)
    if hop == "total":
        return n * n
    a, _, b = hop.partition(" -> ")
    return PRODUCE_HOPS.index(a) * n + PRODUCE_HOPS.index(b)
