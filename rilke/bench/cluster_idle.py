"""`rilke bench cluster-idle`: what an idle cluster costs per node, with and without partitions.

Spawns ``--nodes`` voters (:mod:`rilke.bench.cluster_spawn`) and measures each node's CPU
(user + system from /proc, as a share of one core) and resident memory over ``--idle-s``:
first with no topics, then after creating ``--partitions`` partitions of replication factor
``--replication-factor`` (default min(3, nodes)) in topics of ``--per-topic`` and waiting
until every one of them is led on every node and ``--settle-s`` have passed. Issue 9's goal:
under 5% of a core per node with 1,000 replicated partitions (their Raft heartbeats travel
coalesced, one message per tick per pair of nodes).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from rilke.bench.cluster_spawn import SpawnedCluster
from rilke.bench.common import print_table, write_json

GOAL_CORE_SHARE = 0.05
QUIET_TIMEOUT_S = 180.0
"""The longest wait for a new topic's terms to stop changing (about 35 s measured for 200
partitions on a loaded machine, see wait_terms_quiet)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster-idle",
        help="idle CPU and memory per node of a spawned cluster, with 0 and N partitions",
    )
    p.add_argument("--nodes", type=int, default=3, help="cluster nodes (default 3)")
    p.add_argument(
        "--partitions", type=int, default=1000, help="partitions created (default 1,000)"
    )
    p.add_argument(
        "--replication-factor",
        type=int,
        default=0,
        metavar="R",
        help="of the partitions (default min(3, nodes))",
    )
    p.add_argument("--per-topic", type=int, default=100, help="partitions a topic (default 100)")
    p.add_argument("--idle-s", type=float, default=10.0, help="measuring window (default 10)")
    p.add_argument(
        "--settle-s",
        type=float,
        default=5.0,
        help="wait after forming / creating before measuring (default 5)",
    )
    p.add_argument(
        "--quiet-s",
        type=float,
        default=5.0,
        help="after each topic, wait until no partition got a new term for this long (default 5)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS from /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class HasCpu(Protocol):
    def cpu_s(self) -> float:
        """User + system CPU seconds so far."""
        ...


def idle_cpu(nodes: Sequence[HasCpu], seconds: float) -> list[float]:
    """Each node's CPU over the next ``seconds`` as a share of one core."""
    before = [n.cpu_s() for n in nodes]
    start = time.monotonic()
    time.sleep(seconds)  # the measuring window itself: nothing is waited on
    wall = time.monotonic() - start
    return [(n.cpu_s() - b) / wall for n, b in zip(nodes, before, strict=True)]


def topic_sizes(partitions: int, per_topic: int) -> list[int]:
    """Partition counts of the topics that make ``partitions`` in topics of ``per_topic``."""
    full, rest = divmod(partitions, per_topic)
    return [per_topic] * full + ([rest] if rest else [])


def terms_of(cluster: SpawnedCluster, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """Leader epoch (the Raft term) of every partition of ``topics`` as the first live node
    answers Metadata (partitions it does not list are left out)."""
    address = cluster.live()[0].address
    terms: dict[tuple[str, int], int] = {}
    for topic in topics:
        for partition, (_, epoch) in (cluster.probe.partitions(address, topic) or {}).items():
            terms[topic, partition] = epoch
    return terms


def new_terms(before: dict[tuple[str, int], int], after: dict[tuple[str, int], int]) -> int:
    """Elections between two :func:`terms_of` readings (a term that grew by k counts k)."""
    return sum(max(0, after[k] - before[k]) for k in before.keys() & after.keys())


def wait_terms_quiet(
    cluster: SpawnedCluster, topics: Sequence[str], quiet_s: float, timeout_s: float
) -> tuple[float, int]:
    """Wait until no partition of ``topics`` got a new term for ``quiet_s`` (read every
    second); (seconds waited, elections seen meanwhile). ClusterError after ``timeout_s``.

    Measured 2026-12-03 (load average 21-28 on 2 cores): after 200 RF-3 partitions were
    created, 197, 4, 128, 27, 0, 7, 0, 0 of them got a new term in successive 5 s windows."""
    from rilke.bench.cluster_spawn import ClusterError

    start = time.monotonic()
    last = terms_of(cluster, topics)
    quiet_since = start
    elections = 0
    while time.monotonic() - quiet_since < quiet_s:
        if time.monotonic() - start > timeout_s:
            raise ClusterError(
                f"partition terms still changing {timeout_s:.0f} s after creating "
                f"{', '.join(topics)} ({elections} elections)"
            )
        time.sleep(1.0)
        now = terms_of(cluster, topics)
        changed = new_terms(last, now)
        if changed:
            elections += changed
            quiet_since = time.monotonic()
        last = now
    return time.monotonic() - start, elections


def run(args: argparse.Namespace) -> int:
    factor = args.replication_factor or min(3, args.nodes)
    if args.nodes < 1 or args.partitions < 0 or args.per_topic < 1 or args.idle_s <= 0:
        print("rilke: bad argument: --nodes, --per-topic and --idle-s must be > 0")
        return 2
    if not 1 <= factor <= args.nodes:
        print(f"rilke: bad argument: --replication-factor must be 1..{args.nodes}")
        return 2
    result: dict[str, Any] = {
        "benchmark": "cluster-idle",
        "nodes": args.nodes,
        "replication_factor": factor,
        "idle_s": args.idle_s,
    }
    with SpawnedCluster(args.nodes) as cluster:
        nodes = list(cluster.nodes.values())
        time.sleep(args.settle_s)  # let the fresh cluster's start-up work pass
        result["no_partitions"] = {
            "cpu_core_share": idle_cpu(nodes, args.idle_s),
            "rss_bytes": [rss_bytes(n.pid) for n in nodes],
        }
        start = time.monotonic()
        topics: list[str] = []
        elections = 0
        for i, count in enumerate(topic_sizes(args.partitions, args.per_topic)):
            topics.append(f"idle-{i}")
            cluster.create_topic(topics[-1], count, factor)
            # The next topic only once this one's groups are quiet: elections of hundreds of
            # groups at once starve the loop that keeps the metadata group's leader.
            elections += wait_terms_quiet(cluster, topics, args.quiet_s, QUIET_TIMEOUT_S)[1]
        result["create_and_lead_s"] = time.monotonic() - start
        result["elections_while_creating"] = elections
        time.sleep(args.settle_s)
        before = terms_of(cluster, topics)
        result["partitions"] = args.partitions
        result["with_partitions"] = {
            "cpu_core_share": idle_cpu(nodes, args.idle_s),
            "rss_bytes": [rss_bytes(n.pid) for n in nodes],
        }
        result["elections_while_idle"] = new_terms(before, terms_of(cluster, topics))
    worst = max(result["with_partitions"]["cpu_core_share"])
    print_table(
        f"rilke bench cluster-idle: {args.nodes} nodes, replication factor {factor}, "
        f"{args.idle_s:g} s windows",
        [
            ("idle CPU per node, no partitions", _cpu(result["no_partitions"])),
            (f"idle CPU per node, {args.partitions:,} partitions", _cpu(result["with_partitions"])),
            (
                "goal",
                f"< {GOAL_CORE_SHARE:.0%} of a core per node: "
                + ("met" if worst < GOAL_CORE_SHARE else f"missed (worst {worst:.1%})"),
            ),
            (
                f"{args.partitions:,} partitions created, led and quiet in",
                f"{result['create_and_lead_s']:.1f} s ({result['elections_while_creating']:,} "
                "elections meanwhile)",
            ),
            ("elections during the idle window", f"{result['elections_while_idle']:,}"),
        ],
    )
    write_json(args.json, result)
    return 0


def _cpu(phase: dict[str, list[Any]]) -> str:
    return ", ".join(
        f"{100 * cpu:.1f}% ({rss / 2**20:.0f} MiB)"
        for cpu, rss in zip(phase["cpu_core_share"], phase["rss_bytes"], strict=True)
    )
