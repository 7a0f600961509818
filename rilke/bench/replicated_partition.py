"""`rilke bench replicated-partition`: what Raft replication adds per committed batch.

In one process and one event loop, on 127.0.0.1 over the real transport: three
ReplicationHosts, each with its own temp data dir and a ReplicatedPartition of one
partition (replicas 1, 2, 3), and, in the same run, a LocalPartition with ``flush.messages=1``
(acks=all on one node: acknowledged once fsynced). Writers append one pre-built batch over and
over with acks=-1 (``--in-flight`` at a time) straight to the partition (no gRPC client, no
Produce handler), so the figures are the partition paths alone. Prints batches/s, wall time
per committed batch, this process's CPU time per batch, and the ratio to the local path.

All three nodes share this process's CPU and loop, so CPU per batch counts the leader's and
both followers' work (network included); over real processes the leader's share is smaller.
``--write-caching`` adds the replicated path with the topic's ``write.caching`` on (replicas
acknowledge before fsync). ``--profile`` runs the replicated measurement again under cProfile and prints the top
functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_SECONDS = 3.0
LEADER_TIMEOUT_S = 30.0


@dataclass
class Figures:
    path: str  # "local", "replicated" or "repl+wcache" (write.caching on)
    in_flight: int
    batches: int
    batches_per_s: float
    wall_us_per_batch: float
    cpu_us_per_batch: float


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replicated-partition",
        help="in-process: 3-replica ReplicatedPartition vs LocalPartition, acks=all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="per measurement")
    parser.add_argument("--in-flight", default="1,16", help="comma-separated windows to try")
    parser.add_argument("--records-per-batch", type=int, default=16)
    parser.add_argument("--record-bytes", type=int, default=100)
    parser.add_argument(
        "--write-caching",
        action="store_true",
        help="also measure the replicated path with the topic's write.caching on",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the replicated path")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--json", help="also write the results here")
    parser.set_defaults(func=run)


def _batch(count: int, size: int) -> bytes:
    from rilke.records import BatchBuilder

    builder = BatchBuilder()
    now = int(time.time() * 1000)
    for _ in range(count):
        builder.append(None, b"x" * size, None, now)
    return bytes(builder.build())


async def _drive(partition: Any, batch: bytes, in_flight: int, seconds: float) -> Figures:
    from rilke.partition.interface import ACKS_ALL

    done = 0
    end = time.monotonic() + seconds

    async def writer() -> None:
        nonlocal done
        while time.monotonic() < end:
            await partition.append(batch, ACKS_ALL)
            done += 1

    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.gather(*(writer() for _ in range(in_flight)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    per = max(done, 1)
    return Figures("", in_flight, done, done / wall, wall / per * 1e6, cpu / per * 1e6)


class _Cluster:
    """Three in-process nodes, each a gRPC server, a ReplicationHost and the partition."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[tuple[Any, Any, Any, Any]] = []  # (server, host, log, partition)

    async def start(self) -> None:
        import grpc

        from rilke.partition.interface import PartitionSpec
        from rilke.replication.host import ReplicationHost
        from rilke.replication.partition import ReplicatedPartitionFactory
        from rilke.replication.transport import TransportConfig
        from rilke.storage.config import LogConfig
        from rilke.storage.log import PartitionLog

        replicas = (1, 2, 3)
        servers, addrs = {}, {}
        for node_id in replicas:
            server = grpc.aio.server()
            port = server.add_insecure_port("127.0.0.1:0")
            servers[node_id], addrs[node_id] = server, f"127.0.0.1:{port}"
        config = LogConfig(max_message_bytes=64 << 20)
        for node_id in replicas:
            peers = {n: a for n, a in addrs.items() if n != node_id}
            host = ReplicationHost(
                TransportConfig("bench", node_id, addrs[node_id]), peers, server=servers[node_id]
            )
            await servers[node_id].start()
            directory = self.root / f"n{node_id}" / "bench-0"
            plog = PartitionLog.open(directory, config, now_ms=0, recover=True)
            spec = PartitionSpec(
                "bench", 0, plog, config, directory, replicas=replicas, group="bench-id/0"
            )
            partition = ReplicatedPartitionFactory(host, node_id)(spec)
            await host.start()
            self.nodes.append((servers[node_id], host, plog, partition))

    def set_write_caching(self, on: bool) -> None:
        from dataclasses import replace

        for _server, _host, plog, partition in self.nodes:
            partition.update_config(replace(plog.config, write_caching=on))

    async def leader(self) -> Any:
        deadline = time.monotonic() + LEADER_TIMEOUT_S
        while time.monotonic() < deadline:
            for _server, _host, _log, partition in self.nodes:
                if partition.is_leader:
                    return partition
            await asyncio.sleep(0.02)
        raise RuntimeError(f"no leader elected within {LEADER_TIMEOUT_S} s")

    async def close(self) -> None:
        for server, host, plog, partition in self.nodes:
            await host.close()
            partition.close()
            await server.stop(None)
            plog.close()


async def _local(root: Path, batch: bytes, in_flight: int, seconds: float) -> Figures:
    from rilke.server.partition import LocalPartition
    from rilke.storage.config import LogConfig
    from rilke.storage.log import PartitionLog

    config = LogConfig(max_message_bytes=64 << 20, flush_messages=1)
    directory = root / f"local-{in_flight}" / "bench-0"
    plog = PartitionLog.open(directory, config, now_ms=0, recover=True)
    partition = LocalPartition("bench", 0, plog, config, state_dir=directory)
    try:
        figures = await _drive(partition, batch, in_flight, seconds)
    finally:
        partition.close()
        plog.close()
    figures.path = "local"
    return figures


async def _measure(args: argparse.Namespace, root: Path) -> tuple[list[Figures], str | None]:
    batch = _batch(args.records_per_batch, args.record_bytes)
    windows = [int(x) for x in args.in_flight.split(",")]
    results: list[Figures] = []
    cluster = _Cluster(root / "cluster")
    await cluster.start()
    profile_text = None
    try:
        leader = await cluster.leader()
        await _drive(leader, batch, 1, 0.3)  # warm up (connections, the leader's no-op)
        for in_flight in windows:
            results.append(await _local(root, batch, in_flight, args.seconds))
            figures = await _drive(leader, batch, in_flight, args.seconds)
            figures.path = "replicated"
            results.append(figures)
            if args.write_caching:
                cluster.set_write_caching(True)
                figures = await _drive(leader, batch, in_flight, args.seconds)
                cluster.set_write_caching(False)
                figures.path = "repl+wcache"
                results.append(figures)
        if args.profile:
            profiler = cProfile.Profile()
            profiler.enable()
            await _drive(leader, batch, max(windows), args.seconds)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile_top)
            profile_text = out.getvalue()
    finally:
        await cluster.close()
    return results, profile_text


def run(args: argparse.Namespace) -> int:
    try:
        with tempfile.TemporaryDirectory(prefix="rilke-bench-rp-") as tmp:
            results, profile_text = asyncio.run(_measure(args, Path(tmp)))
    except Exception as e:
        print(f"rilke bench replicated-partition: {e}", file=sys.stderr)
        return 1
    print(
        f"acks=all, {args.records_per_batch} records x {args.record_bytes} B per batch, "
        f"{args.seconds:g} s each"
    )
    print(
        f"{'path':11} {'in flight':>9} {'batches':>8} {'batches/s':>10} {'wall us/b':>10} "
        f"{'cpu us/b':>9} {'cpu vs local':>12}"
    )
    local_cpu: dict[int, float] = {}
    for r in results:
        if r.path == "local":
            local_cpu[r.in_flight] = r.cpu_us_per_batch
        base = local_cpu.get(r.in_flight)
        ratio = f"{r.cpu_us_per_batch / base:.2f}x" if base else "-"
        print(
            f"{r.path:11} {r.in_flight:9d} {r.batches:8d} {r.batches_per_s:10.0f} "
            f"{r.wall_us_per_batch:10.0f} {r.cpu_us_per_batch:9.0f} {ratio:>12}"
        )
    if profile_text is not None:
        print(profile_text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 0
