"""`rilke bench cluster-metadata`: the metadata controller of a real cluster.

Spawns ``--nodes`` `rilke server` processes with ``--initial-voters`` on 127.0.0.1 (ports
from the OS, temporary data directories) and measures:

- topic creation: the CreateTopics answer (committed on the controller leader and applied on
  the node asked) and the propagation until every node's Metadata lists the topic;
- idle CPU per node (user + system from /proc, over ``--idle-s``) with no topics and with
  ``--partitions`` partitions (topics of 100);
- controller failover: kill -9 of the controller leader to the next successful topic create
  through another node (``--failovers`` times; the killed node is started again between).

Every process is stopped (killed if need be) at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

from rilke.bench.cluster_idle import idle_cpu
from rilke.bench.cluster_spawn import FORM_TIMEOUT_S, SpawnedCluster, SpawnedNode
from rilke.bench.common import percentiles, print_table, write_json


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster-metadata",
        help="a real cluster's controller: topic creation and propagation, idle CPU, failover",
    )
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--creates", type=int, default=20, help="topics created (default 20)")
    p.add_argument("--partitions", type=int, default=1000, help="for the idle CPU (default 1000)")
    p.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (default 10)")
    p.add_argument("--failovers", type=int, default=3, help="kill -9 rounds (default 3)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.set_defaults(func=run)


def _create(
    cluster: SpawnedCluster,
    node: SpawnedNode,
    name: str,
    partitions: int = 1,
    timeout_s: float = 30,
) -> str:
    """'' when created, else the error message."""
    from rilke.proto import rilke_pb2 as pb

    request = pb.CreateTopicsRequest(topics=[pb.NewTopic(name=name, num_partitions=partitions)])
    try:
        answer = cluster.probe.call(node.address, "Admin", "CreateTopics", request, timeout_s)
    except Exception as e:
        return str(e)
    result = answer.results[0]
    return result.error.message if result.error.code else ""


def _on_every_node(cluster: SpawnedCluster, name: str) -> bool:
    return all(cluster.probe.partitions(n.address, name) is not None for n in cluster.live())


def run(args: argparse.Namespace) -> int:
    result: dict[str, Any] = {"nodes": args.nodes}
    t0 = time.monotonic()
    with SpawnedCluster(args.nodes) as cluster:
        nodes = list(cluster.nodes.values())
        result["form_s"] = time.monotonic() - t0

        answered, everywhere = [], []
        for i in range(args.creates):
            name, node = f"bench-{i}", nodes[i % len(nodes)]
            start = time.monotonic()
            error = _create(cluster, node, name)
            if error:
                raise RuntimeError(f"creating {name}: {error}")
            answered.append((time.monotonic() - start) * 1000)
            cluster.wait(partial(_on_every_node, cluster, name), 30, name, 0.002)
            everywhere.append((time.monotonic() - start) * 1000)
        result["create_answer_ms"] = percentiles(answered)
        result["create_on_every_node_ms"] = percentiles(everywhere)

        time.sleep(3)  # the creates' aftermath passes before the idle window
        result["idle_cpu_few_topics"] = idle_cpu(nodes, args.idle_s)
        topics = max(1, args.partitions // 100)
        for t in range(topics):
            error = _create(cluster, nodes[t % len(nodes)], f"wide-{t}", 100, 120)
            if error:
                raise RuntimeError(f"creating wide-{t}: {error}")
        last = f"wide-{topics - 1}"
        cluster.wait(partial(_on_every_node, cluster, last), 60, "wide topics")
        time.sleep(5)  # as above
        result["idle_cpu_partitions"] = topics * 100
        result["idle_cpu_with_partitions"] = idle_cpu(nodes, args.idle_s)

        failovers = []
        for round_ in range(args.failovers):
            info = cluster.describe(nodes[0]) or cluster.describe(nodes[1])
            leader = next(n for n in nodes if n.node_id == info.controller_id)
            other = next(n for n in nodes if n is not leader)
            start = time.monotonic()
            leader.kill()
            name = f"failover-{round_}"
            while True:
                error = _create(cluster, other, name, timeout_s=5)
                if not error or "already exists" in error:
                    break
                if time.monotonic() - start > 60:
                    raise TimeoutError(f"no create within 60 s of the kill: {error}")
            failovers.append((time.monotonic() - start) * 1000)
            leader.start()
            cluster.wait(cluster.formed, FORM_TIMEOUT_S, "the killed node back")
        result["failover_ms"] = failovers

    rows = [
        ("nodes", str(args.nodes)),
        ("cluster formed in", f"{result['form_s']:.2f} s"),
        ("create answered p50 / p99", _p(result["create_answer_ms"])),
        ("create on every node p50 / p99", _p(result["create_on_every_node_ms"])),
        ("idle CPU per node, few topics", _cpu(result["idle_cpu_few_topics"])),
        (
            f"idle CPU per node, {result['idle_cpu_partitions']} partitions",
            _cpu(result["idle_cpu_with_partitions"]),
        ),
        ("failover (kill -9 to next create)", ", ".join(f"{v:.0f} ms" for v in failovers)),
    ]
    print_table("cluster metadata", rows)
    write_json(args.json, result)
    return 0


def _p(p: dict[str, float]) -> str:
    return f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} ms"


def _cpu(shares: list[float]) -> str:
    return ", ".join(f"{100 * s:.1f}%" for s in shares)
