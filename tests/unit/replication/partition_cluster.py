"""Three in-process nodes on 127.0.0.1, each with a ReplicatedPartition of one partition.

Each node is a gRPC server on an OS-assigned port, a ReplicationHost, its own data dir and a
PartitionLog under it; the partition is built through ReplicatedPartitionFactory, as a broker
builds it. A node can be stopped (its host closed: the process "dies"), restarted from its
disk, or restarted with its data dir wiped.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from rilke.partition.interface import PartitionSpec
from rilke.records.builder import BatchBuilder
from rilke.records.header import iter_headers
from rilke.records.reader import read_records
from rilke.replication.held_groups import HELD_DIR, HeldGroups
from rilke.replication.host import ReplicationHost
from rilke.replication.partition import ReplicatedPartition, ReplicatedPartitionFactory
from rilke.replication.raft.types import Config
from rilke.replication.transport import TransportConfig
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

from .cluster import wait_until

TICK_S = 0.05
TOPIC = "t"
GROUP = "topic-id-1/0"


def records_batch(
    values: Sequence[bytes], *, producer_id: int = -1, epoch: int = -1, sequence: int = -1
) -> bytes:
    """A produced batch (unstamped) of ``values``; idempotent when ``producer_id`` >= 0."""
    builder = BatchBuilder(producer_id=producer_id, producer_epoch=epoch, base_sequence=sequence)
    for i, value in enumerate(values):
        builder.append(None, value, None, 1_000 + i)
    return builder.build()


@dataclass
class Node:
    node_id: int
    data_dir: Path
    server: grpc.aio.Server
    host: ReplicationHost
    log: PartitionLog
    partition: ReplicatedPartition
    high_watermarks: list[int] = field(default_factory=list)


class PartitionCluster:
    """``size`` nodes sharing one replicated partition (replicas 1..size)."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        config: LogConfig | None = None,
        cluster_id: str = "c",
        *,
        held: bool = False,
    ) -> None:
        """``held``: every node keeps its record of held groups (HeldGroups, as a broker)."""
        self.root = root
        self.held = held
        self.size = size
        self.config = config or LogConfig()
        self.cluster_id = cluster_id
        self.replicas = tuple(range(1, size + 1))
        self.addrs: dict[int, str] = {}
        self.nodes: dict[int, Node] = {}

    async def start(self) -> None:
        servers = {}
        for node_id in self.replicas:
            server = grpc.aio.server()
            port = server.add_insecure_port("127.0.0.1:0")
            servers[node_id] = server
            self.addrs[node_id] = f"127.0.0.1:{port}"
        for node_id, server in servers.items():
            await self._start_node(node_id, server)

    async def _start_node(
        self, node_id: int, server: grpc.aio.Server, known_epoch: int = 0
    ) -> Node:
        peers = {n: a for n, a in self.addrs.items() if n != node_id}
        transport = TransportConfig(
            self.cluster_id, node_id, self.addrs[node_id], liveness_timeout_s=TICK_S * 10
        )
        host = ReplicationHost(transport, peers, server=server, tick_s=TICK_S)
        await server.start()
        data_dir = self.root / f"n{node_id}"
        log_dir = data_dir / f"{TOPIC}-0"
        plog = PartitionLog.open(log_dir, self.config, now_ms=0, recover=True)
        factory = ReplicatedPartitionFactory(
            host,
            node_id,
            raft_config=Config(node_id, election_timeout_ticks=10),
            held=HeldGroups(data_dir / HELD_DIR) if self.held else None,
        )
        spec = PartitionSpec(
            TOPIC,
            0,
            plog,
            self.config,
            log_dir,
            replicas=self.replicas,
            group=GROUP,
            leader_epoch=known_epoch,
        )
        partition = factory(spec)
        assert isinstance(partition, ReplicatedPartition)
        node = Node(node_id, data_dir, server, host, plog, partition)
        partition.subscribe(lambda: node.high_watermarks.append(partition.high_watermark))
        await host.start()
        self.nodes[node_id] = node
        return node

    async def stop_node(self, node_id: int) -> Node:
        """The node goes away: its host closes first (the group stops, nothing more is sent),
        then its partition, server and log."""
        node = self.nodes.pop(node_id)
        await node.host.close()
        node.partition.close()
        await node.server.stop(None)
        node.log.close()
        return node

    async def restart_node(
        self,
        node_id: int,
        *,
        wipe: bool = False,
        wipe_partition: bool = False,
        known_epoch: int = 0,
    ) -> Node:
        """Start a stopped node again (from an empty data dir with ``wipe``, with only its
        partition's folder gone with ``wipe_partition``); ``known_epoch`` is the leader epoch
        the metadata would give its partition (as a broker's does)."""
        if wipe:
            shutil.rmtree(self.root / f"n{node_id}")
        if wipe_partition:
            shutil.rmtree(self.root / f"n{node_id}" / f"{TOPIC}-0")
        server = grpc.aio.server()
        server.add_insecure_port(self.addrs[node_id])
        return await self._start_node(node_id, server, known_epoch)

    async def close(self) -> None:
        for node_id in list(self.nodes):
            await self.stop_node(node_id)

    def leader(self) -> Node | None:
        leaders = [n for n in self.nodes.values() if n.partition.is_leader]
        return leaders[0] if len(leaders) == 1 else None

    async def wait_leader(self, timeout_s: float = 20.0, *, not_: int | None = None) -> Node:
        def found() -> bool:
            leader = self.leader()
            return leader is not None and leader.node_id != not_

        await wait_until(found, timeout_s, "one leader of the partition")
        leader = self.leader()
        assert leader is not None
        return leader

    def followers(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.partition.is_leader]


def data_values(node: Node, start: int = 0) -> list[bytes]:
    """Every data record's value readable on ``node`` (up to its high watermark), in order;
    Raft's control batches (no-ops) are skipped as consumers skip them."""
    out: list[bytes] = []
    offset = max(start, node.log.log_start_offset)
    while offset < node.partition.high_watermark:
        fetched = node.partition.read(offset, 1 << 20)
        if not fetched.records:
            break
        for record in read_records(fetched.records, skip_control=True):
            if record.offset >= offset:
                out.append(bytes(record.value or b""))
        for _pos, header in iter_headers(fetched.records, check=False):
            offset = header.next_offset
    return out
