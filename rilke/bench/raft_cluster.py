"""`rilke bench raft-idle` and `rilke bench raft-commit`: Raft groups over the real transport.

Each node is its own process (a gRPC server on an OS-assigned 127.0.0.1 port, a
ReplicationHost, every group's PartitionLog in a temporary directory), so the figures are per
node as in a cluster.

- ``raft-idle``: CPU per node (user + system, ``getrusage``) over ``--measure-s`` once every
  group has a leader and the groups had ``--settle-s`` to go quiet, for each ``--groups``
  count (default 0 and 1000). The issue's goal: under 5% of a core per node.
- ``raft-commit``: commit latency (propose to committed, p50/p99) of 16 KiB batches on one
  group led by node 1, with 1 and with 16 proposals in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import resource
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rilke.bench.common import percentiles, print_table, write_json


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _node(node_id: int, args: dict[str, Any], conn: Connection) -> None:
    import grpc

    from rilke.records.builder import BatchBuilder
    from rilke.replication.host import ReplicationHost
    from rilke.replication.raft.types import Config, Role
    from rilke.replication.raft_storage import PartitionRaftStorage
    from rilke.replication.transport import TransportConfig
    from rilke.storage.config import LogConfig
    from rilke.storage.handles import FileCache
    from rilke.storage.log import PartitionLog

    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    conn.send(port)
    addrs: dict[int, str] = conn.recv()
    peers = {n: a for n, a in addrs.items() if n != node_id}
    host = ReplicationHost(TransportConfig("bench", node_id, addrs[node_id]), peers, server=server)
    await server.start()
    root = Path(args["root"]) / f"n{node_id}"
    cache = FileCache(4096)
    voters = tuple(sorted(addrs))
    logs = []
    names = [f"t-{i}" for i in range(args["groups"])]
    for name in names:
        log = PartitionLog.open(root / name, LogConfig(), now_ms=0, recover=False, cache=cache)
        logs.append(log)
        host.runtime.add_group(
            name, PartitionRaftStorage.open(log), Config(node_id, voters=voters), lambda _e: None
        )
    await host.start()
    runtime = host.runtime
    deadline = time.monotonic() + 120
    while any(runtime.status(n).leader_id == 0 for n in names):
        if time.monotonic() > deadline:
            raise TimeoutError("groups without a leader after 120 s")
        await asyncio.sleep(0.05)
    result: dict[str, Any] = {"node": node_id}
    if args["mode"] == "idle":
        await asyncio.sleep(args["settle_s"])
        wall0, cpu0 = time.monotonic(), _cpu_s()
        await asyncio.sleep(args["measure_s"])
        wall, cpu = time.monotonic() - wall0, _cpu_s() - cpu0
        result.update(cpu_share=cpu / wall, quiesced=runtime.quiesced_count)
    elif node_id == 1:
        name = names[0]
        while runtime.status(name).role is not Role.LEADER:
            if runtime.status(name).leader_id not in (0, 1):
                runtime.transfer_leadership(name, 1)
            await asyncio.sleep(0.1)
        builder = BatchBuilder()
        for i in range(16):
            builder.append(None, b"x" * 1000, None, 1_000 + i)
        batch = builder.build()
        for inflight in (1, 16):
            latencies: list[float] = []
            end = time.monotonic() + args["measure_s"]

            async def proposer(latencies: list[float] = latencies, end: float = end) -> None:
                while time.monotonic() < end:
                    start = time.monotonic()
                    await runtime.propose(name, [batch], [16])
                    latencies.append((time.monotonic() - start) * 1000)

            await asyncio.gather(*(proposer() for _ in range(inflight)))
            result[f"inflight_{inflight}"] = {
                "commits": len(latencies),
                **percentiles(latencies),
            }
    conn.send(result)
    # Stay up (and keep answering Raft) until every node has measured. The wait runs on a
    # thread: a blocking recv on the loop froze this node's Raft (a follower stopped answering
    # the moment it reported, and the leader lost it).
    await wait_for_parent(conn, STOP_TIMEOUT_S)
    await host.close()
    await server.stop(None)
    for log in logs:
        log.close()


STOP_TIMEOUT_S = 600.0
"""How long a node waits for the parent's "stop" (the parent kills it after its own deadlines)."""


async def wait_for_parent(conn: Connection, timeout_s: float) -> Any:
    """The parent's next message, read on a worker thread so the node's loop (its Raft) keeps
    running. Raises TimeoutError after ``timeout_s`` and EOFError when the parent is gone."""
    ready = await asyncio.to_thread(conn.poll, timeout_s)
    if not ready:
        raise TimeoutError(f"no word from the bench within {timeout_s} s")
    return conn.recv()


def _child(node_id: int, args: dict[str, Any], conn: Connection) -> None:
    logging.basicConfig(level=logging.WARNING, format=f"node {node_id} %(levelname)s %(message)s")
    asyncio.run(_node(node_id, args, conn))


def run_cluster(mode: str, groups: int, nodes: int, measure_s: float, settle_s: float) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="rilke-bench-raft-") as root:
        args = {
            "root": root,
            "groups": groups,
            "mode": mode,
            "measure_s": measure_s,
            "settle_s": settle_s,
        }
        procs, conns = [], {}
        try:
            for node_id in range(1, nodes + 1):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=_child, args=(node_id, args, child), daemon=True)
                proc.start()
                procs.append(proc)
                conns[node_id] = parent
            addrs = {n: f"127.0.0.1:{c.recv()}" for n, c in conns.items()}
            for conn in conns.values():
                conn.send(addrs)
            results = []
            for conn in conns.values():
                if not conn.poll(300):
                    raise TimeoutError("a node did not report within 300 s")
                results.append(conn.recv())
            for conn in conns.values():
                conn.send("stop")
            for proc in procs:
                proc.join(30)
            return results
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)


def register(subparsers: Any) -> None:
    idle = subparsers.add_parser("raft-idle", help="idle CPU per node of a 3-node Raft cluster")
    idle.add_argument("--groups", type=int, nargs="+", default=[0, 1000])
    idle.add_argument("--nodes", type=int, default=3)
    idle.add_argument("--measure-s", type=float, default=10.0)
    idle.add_argument("--settle-s", type=float, default=5.0)
    idle.add_argument("--json", default=None, help="write the figures to this file")
    idle.set_defaults(func=_idle_main)
    commit = subparsers.add_parser(
        "raft-commit", help="commit latency over the real transport (1 and 16 in flight)"
    )
    commit.add_argument("--nodes", type=int, default=3)
    commit.add_argument("--measure-s", type=float, default=5.0)
    commit.add_argument("--json", default=None, help="write the figures to this file")
    commit.set_defaults(func=_commit_main)


def _idle_main(args: argparse.Namespace) -> int:
    out: dict[str, Any] = {}
    rows = []
    for groups in args.groups:
        results = run_cluster("idle", groups, args.nodes, args.measure_s, args.settle_s)
        out[str(groups)] = results
        for r in sorted(results, key=lambda r: r["node"]):
            rows.append(
                (
                    f"{groups} groups, node {r['node']}",
                    f"{r['cpu_share'] * 100:.1f}% of a core ({r['quiesced']} quiet)",
                )
            )
    print_table("raft-idle: CPU per node", rows)
    write_json(args.json, out)
    return 0


def _commit_main(args: argparse.Namespace) -> int:
    results = run_cluster("commit", 1, args.nodes, args.measure_s, 0.0)
    leader = next(r for r in results if r["node"] == 1)
    rows = []
    for inflight in (1, 16):
        r = leader[f"inflight_{inflight}"]
        rows.append(
            (
                f"{inflight} in flight",
                f"{r['commits']} commits, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms",
            )
        )
    print_table("raft-commit: 16 KiB batches, 3 nodes on 127.0.0.1", rows)
    write_json(args.json, leader)
    return 0
