"""In-process nodes on 127.0.0.1 over the real transport, for the replication tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from rilke.replication.host import ReplicationHost
from rilke.replication.raft.types import Config, Entry, EntryKind, Role
from rilke.replication.raft_storage import PartitionRaftStorage
from rilke.replication.transport import TransportConfig
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

TICK_S = 0.05


async def wait_until(
    condition: Callable[[], object], timeout_s: float = 15.0, what: str = "the condition"
) -> None:
    """Return once ``condition()`` holds; AssertionError naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@dataclass
class Node:
    node_id: int
    data_dir: Path
    addr: str
    server: grpc.aio.Server
    host: ReplicationHost
    applied: dict[str, list[Entry]] = field(default_factory=dict)
    logs: dict[str, PartitionLog] = field(default_factory=dict)

    def data(self, group: str) -> list[bytes]:
        return [e.data for e in self.applied.get(group, []) if e.kind is EntryKind.NORMAL]


class Cluster:
    """``size`` nodes, each a gRPC server on an OS-assigned port and a ReplicationHost."""

    def __init__(
        self,
        root: Path,
        size: int = 3,
        cluster_id: str = "test-cluster",
        voters: Sequence[int] | None = None,
    ) -> None:
        """``voters``: every group's bootstrap voters (default: all ``size`` nodes); the
        other nodes hold the groups too, as non-members until a change adds them."""
        self.root = root
        self.size = size
        self.voters = tuple(voters) if voters is not None else tuple(range(1, size + 1))
        self.cluster_id = cluster_id
        self.addrs: dict[int, str] = {}
        self.nodes: dict[int, Node] = {}
        self.groups: list[str] = []

    async def start(self, groups: Sequence[str] = ("t-0",)) -> None:
        servers = {}
        for node_id in range(1, self.size + 1):
            server = grpc.aio.server()
            port = server.add_insecure_port("127.0.0.1:0")
            servers[node_id] = server
            self.addrs[node_id] = f"127.0.0.1:{port}"
        self.groups = list(groups)
        for node_id, server in servers.items():
            await self._start_node(node_id, server)

    async def _start_node(self, node_id: int, server: grpc.aio.Server) -> None:
        peers = {n: a for n, a in self.addrs.items() if n != node_id}
        config = TransportConfig(
            self.cluster_id, node_id, self.addrs[node_id], liveness_timeout_s=TICK_S * 10
        )
        host = ReplicationHost(config, peers, server=server, tick_s=TICK_S)
        node = Node(node_id, self.root / f"n{node_id}", self.addrs[node_id], server, host)
        await server.start()
        for name in self.groups:
            self.add_group(node, name)
        await host.start()
        self.nodes[node_id] = node

    def add_group(self, node: Node, name: str) -> None:
        log = PartitionLog.open(node.data_dir / name, LogConfig(), now_ms=0, recover=True)
        node.logs[name] = log
        storage = PartitionRaftStorage.open(log)
        applied = node.applied.setdefault(name, [])
        node.host.runtime.add_group(
            name, storage, Config(node.node_id, voters=self.voters), applied.extend
        )

    async def stop_node(self, node_id: int) -> None:
        node = self.nodes.pop(node_id)
        await node.host.close()
        await node.server.stop(None)
        for log in node.logs.values():
            log.close()

    async def restart_node(self, node_id: int) -> Node:
        server = grpc.aio.server()
        server.add_insecure_port(self.addrs[node_id])
        await self._start_node(node_id, server)
        return self.nodes[node_id]

    async def close(self) -> None:
        for node_id in list(self.nodes):
            await self.stop_node(node_id)

    def leader(self, group: str = "t-0") -> Node | None:
        for node in self.nodes.values():
            if node.host.runtime.status(group).role is Role.LEADER:
                return node
        return None

    async def wait_leader(self, group: str = "t-0", timeout_s: float = 15.0) -> Node:
        await wait_until(lambda: self.leader(group) is not None, timeout_s, f"a leader of {group}")
        leader = self.leader(group)
        assert leader is not None
        return leader
