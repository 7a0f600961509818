"""The metadata group's snapshots, in process over the real transport: every node trims its
log below its own snapshot, a node restarted after the trim rebuilds the same state from its
snapshot plus the tail, and a node far behind (restarted after the leader trimmed past it,
or a new learner with an empty log) gets the leader's snapshot and the same state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

from rilke.errors import RilkeError
from rilke.replication.controller.snapshot import encode_snapshot
from rilke.replication.host import ReplicationHost
from rilke.replication.raft.types import Role
from rilke.replication.transport import TransportConfig
from rilke.server.cluster.controller import METADATA_GROUP, ClusterController, open_metadata_log
from rilke.storage.log import PartitionLog

TICK_S = 0.05
SNAPSHOT_BYTES = 4096
VOTERS = (1, 2, 3)


async def wait_until(condition: Callable[[], object], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.02)


@dataclass
class MetaNode:
    node_id: int
    server: grpc.aio.Server
    host: ReplicationHost
    plog: PartitionLog
    controller: ClusterController
    restored_at: int
    """The applied index right after start: the snapshot's, before any entry applies."""

    async def close(self) -> None:
        await self.controller.stop()
        await self.host.close()
        await self.server.stop(None)
        self.plog.close()


class MetaCluster:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.addrs: dict[int, str] = {}
        self.nodes: dict[int, MetaNode] = {}

    async def start_node(self, node_id: int) -> MetaNode:
        server = grpc.aio.server()
        port = server.add_insecure_port(self.addrs.get(node_id, "127.0.0.1:0"))
        self.addrs[node_id] = addr = f"127.0.0.1:{port}"
        peers = {n: a for n, a in self.addrs.items() if n != node_id}
        host = ReplicationHost(
            TransportConfig("c1", node_id, addr, liveness_timeout_s=TICK_S * 10),
            peers,
            server=server,
            tick_s=TICK_S,
        )
        plog, storage = open_metadata_log(self.root / f"n{node_id}")
        controller = ClusterController(
            node_id,
            host.runtime,
            storage,
            cluster_id="c1",
            bootstrap_voters=VOTERS,
            validate_topic=lambda name, n: None,
            snapshot_bytes=SNAPSHOT_BYTES,
        )
        await server.start()
        controller.start()
        restored_at = controller.applied_index
        await host.start()
        for other in self.nodes.values():
            other.host.add_peer(node_id, addr)
        node = self.nodes[node_id] = MetaNode(node_id, server, host, plog, controller, restored_at)
        return node

    async def stop_node(self, node_id: int) -> None:
        await self.nodes.pop(node_id).close()

    async def close(self) -> None:
        for node_id in list(self.nodes):
            await self.stop_node(node_id)

    def leader(self) -> MetaNode | None:
        for node in self.nodes.values():
            if node.controller.is_leader and node.controller.view().cluster_id:
                return node
        return None

    async def wait_leader(self) -> MetaNode:
        await wait_until(lambda: self.leader() is not None, "a bootstrapped controller leader")
        leader = self.leader()
        assert leader is not None
        return leader

    async def create_topics(self, prefix: str, count: int) -> None:
        for i in range(count):
            leader = await self.wait_leader()
            await leader.controller.decide(
                lambda d, i=i: d.create_topic(
                    f"{prefix}{i}", 2, 1, {"k": "v" * 100}, f"{prefix}-{i}"
                )
            )

    def states(self) -> dict[int, bytes]:
        return {n: node.controller.applier.snapshot()[1] for n, node in self.nodes.items()}

    async def wait_same_state(self) -> bytes:
        def same() -> bool:
            leader = self.leader()
            if leader is None:
                return False
            index = leader.controller.applied_index
            return all(n.controller.applied_index == index for n in self.nodes.values()) and (
                len(set(self.states().values())) == 1
            )

        await wait_until(same, "every node to apply the same metadata")
        return next(iter(self.states().values()))


async def register_brokers(leader: MetaNode) -> None:
    now = leader.controller.now_ms()
    for b in VOTERS:
        await leader.controller.decide(
            lambda d, b=b: d.register_broker(b, "127.0.0.1", 9000 + b, None, now)
        )
        await leader.controller.decide(lambda d, b=b: d.heartbeat(b, d.state.brokers[b].epoch, now))


async def add_learner(cluster: MetaCluster, node_id: int) -> None:
    """Add ``node_id`` as a learner at the leader, again while it is refused retriably (a
    new leader that has not committed an entry of its term yet)."""
    deadline = time.monotonic() + 20.0
    while True:
        leader = await cluster.wait_leader()
        leader.host.add_peer(node_id, cluster.addrs[node_id])
        try:
            await leader.host.runtime.add_learner(METADATA_GROUP, node_id)
            return
        except RilkeError as e:
            if not e.retriable or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


def test_nodes_trim_restart_from_snapshots_and_catch_up_by_snapshot(tmp_path: Path) -> None:
    async def main() -> None:
        cluster = MetaCluster(tmp_path)
        try:
            for node_id in VOTERS:
                await cluster.start_node(node_id)
            leader = await cluster.wait_leader()
            await register_brokers(leader)
            await cluster.create_topics("a", 30)
            await cluster.wait_same_state()
            # Every node snapshots on its own and trims its log below the snapshot.
            await wait_until(
                lambda: all(
                    n.controller.snapshots_taken > 0 and n.controller._storage.first_index() > 1
                    for n in cluster.nodes.values()
                ),
                "every node to snapshot and trim",
            )

            # A follower stops; the leader moves on and trims past everything it holds.
            leader = await cluster.wait_leader()
            behind = next(n for n in VOTERS if n != leader.node_id)
            behind_applied = cluster.nodes[behind].controller.applied_index
            await cluster.stop_node(behind)
            await cluster.create_topics("b", 30)
            leader = await cluster.wait_leader()
            start = await leader.controller.snapshot_now()
            assert start > behind_applied
            assert leader.controller._storage.first_index() == start + 1
            # Restarted, it rebuilds from its own snapshot plus tail, then the leader's
            # snapshot brings it past the leader's log start.
            node = await cluster.start_node(behind)
            assert node.restored_at > 1
            await cluster.wait_same_state()
            assert node.controller.snapshots_installed >= 1
            assert node.controller.view().topic("b29") is not None

            # Every node restarts: each state is its snapshot plus its tail, the same.
            for node_id in VOTERS:
                await cluster.stop_node(node_id)
            for node_id in VOTERS:
                restarted = await cluster.start_node(node_id)
                assert restarted.restored_at == restarted.controller._storage.snapshot().index > 1
            await cluster.wait_same_state()
            leader = await cluster.wait_leader()
            assert set(leader.controller.view().topics) >= {"a0", "a29", "b0", "b29"}

            # A new node, an empty log: a learner that gets the leader's snapshot.
            await leader.controller.snapshot_now()
            fourth = await cluster.start_node(4)
            await add_learner(cluster, 4)
            await cluster.wait_same_state()
            assert fourth.controller.snapshots_installed == 1
            assert fourth.host.runtime.status(METADATA_GROUP).role is Role.FOLLOWER
            assert fourth.controller.view().topic("b29") is not None
            assert encode_snapshot(fourth.controller.applier.state) == (
                encode_snapshot(leader.controller.applier.state)
            )
        finally:
            await cluster.close()

    asyncio.run(main())


def test_read_index_on_any_node_holds_every_committed_change(tmp_path: Path) -> None:
    async def main() -> None:
        cluster = MetaCluster(tmp_path)
        try:
            for node_id in VOTERS:
                await cluster.start_node(node_id)
            leader = await cluster.wait_leader()
            await register_brokers(leader)
            followers = [n for n in cluster.nodes.values() if n is not leader]
            for i in range(5):
                index = await leader.controller.decide(
                    lambda d, i=i: d.create_topic(f"r{i}", 1, 1, {}, f"r-{i}")
                )
                for node in followers:
                    # No waiting on the follower's own apply: the read index does it.
                    read = await node.controller.read_index(5.0)
                    assert read >= index
                    assert node.controller.applied_index >= index
                    assert node.controller.view().topic(f"r{i}") is not None

            # Alone, a follower cannot confirm any leader: a retriable error within the bound.
            lone = followers[0]
            for node_id in [n for n in VOTERS if n != lone.node_id]:
                await cluster.stop_node(node_id)
            started = time.monotonic()
            try:
                await lone.controller.read_index(1.0)
            except (RilkeError, TimeoutError) as e:
                assert not isinstance(e, RilkeError) or e.retriable
            else:
                raise AssertionError("a read index without a quorum")
            assert time.monotonic() - started < 3.0
        finally:
            await cluster.close()

    asyncio.run(main())
