"""Group coordinators over a replicated ``__consumer_offsets`` partition (three in-process
nodes on 127.0.0.1, one GroupManager each): only the partition's leader coordinates; a
commit is answered once committed on a quorum; when the leader dies the new leader rebuilds
the groups (members and offsets) from the committed log and serves; a deposed leader stops
serving at once; a restarted node is a follower that answers NotCoordinator."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from rilke.errors import (
    CoordinatorLoadInProgressError,
    NotCoordinatorError,
    for_code,
)
from rilke.proto import rilke_pb2 as pb
from rilke.replication.raft.types import Role
from rilke.server.coordinator import CoordinatorConfig, TopicPartition
from rilke.server.group_service import GroupManager
from rilke.server.offsets_log import LedPartitionOffsetsLog
from rilke.storage.config import LogConfig

from .cluster import wait_until
from .partition_cluster import GROUP, Node, PartitionCluster, data_values


class OneOffsetsPartition:
    """A node's broker view: one partition of ``__consumer_offsets``, the node's replicated
    partition (looked up at every call: a restarted node has a new one)."""

    def __init__(self, cluster: PartitionCluster, node_id: int) -> None:
        self.cluster = cluster
        self.node_id = node_id

    def topic_partitions(self) -> dict[str, int]:
        return {"orders": 2}

    def high_watermark(self, tp: TopicPartition) -> int | None:
        return 1_000 if tp.topic == "orders" and 0 <= tp.partition < 2 else None

    def offsets_partition_count(self) -> int | None:
        return 1

    def offsets_log(self, partition_count: int, partition: int) -> LedPartitionOffsetsLog:
        return LedPartitionOffsetsLog(self.cluster.nodes[self.node_id].partition, self.node_id)


async def manager(cluster: PartitionCluster, node_id: int) -> GroupManager:
    m = GroupManager(
        OneOffsetsPartition(cluster, node_id),
        config=CoordinatorConfig(),
        partitions=1,
        node_id=node_id,
    )
    await m.start()
    return m


def error_of(resp: Any) -> type | None:
    return for_code(resp.error.code) if resp.HasField("error") and resp.error.code else None


async def fetch(m: GroupManager) -> dict[tuple[str, int], int]:
    resp = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
    assert error_of(resp) is None, resp.error.message
    return {(p.topic, p.partition): p.offset for p in resp.partitions}


async def serving(m: GroupManager, timeout_s: float = 20.0) -> dict[tuple[str, int], int]:
    """The group's offsets once ``m`` coordinates (waits while it loads or does not lead)."""
    found: dict[tuple[str, int], int] | None = None

    async def attempt() -> bool:
        nonlocal found
        try:
            found = await fetch(m)
        except (CoordinatorLoadInProgressError, NotCoordinatorError):
            return False
        return True

    loop_deadline = asyncio.get_running_loop().time() + timeout_s
    while not await attempt():
        assert asyncio.get_running_loop().time() < loop_deadline, f"node {m.node_id} never served"
        await asyncio.sleep(0.02)
    assert found is not None
    return found


def join() -> pb.ConsumerGroupHeartbeatRequest:
    return pb.ConsumerGroupHeartbeatRequest(
        group_id="g", member_epoch=0, subscribed_topic_names=["orders"], session_timeout_ms=30_000
    )


async def refuses_naming(m: GroupManager, leader: int, timeout_s: float = 10.0) -> None:
    """``m`` answers NotCoordinator naming ``leader`` (a follower learns who leads from the
    leader's first append or heartbeat: until then it says no leader is known)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        with pytest.raises(NotCoordinatorError) as refused:
            await fetch(m)
        if f"node {leader} leads" in str(refused.value):
            return
        assert asyncio.get_running_loop().time() < deadline, f"still: {refused.value}"
        await asyncio.sleep(0.02)


def test_coordinator_moves_with_the_partition_leader(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        managers: dict[int, GroupManager] = {}
        try:
            for node_id in cluster.replicas:
                managers[node_id] = await manager(cluster, node_id)
            old = await cluster.wait_leader()
            coordinator = managers[old.node_id]
            assert await serving(coordinator) == {}
            for node_id, m in managers.items():
                if node_id != old.node_id:
                    await refuses_naming(m, old.node_id)

            member = await coordinator.heartbeat(join(), "ipv4:127.0.0.1:1")
            assert error_of(member) is None and member.member_epoch == 1
            commit = pb.OffsetCommitRequest(
                group_id="g", member_id=member.member_id, member_epoch=member.member_epoch
            )
            commit.partitions.add(topic="orders", partition=0, offset=10)
            commit.partitions.add(topic="orders", partition=1, offset=20)
            answer = await coordinator.offset_commit(commit)
            assert error_of(answer) is None
            # Answered once committed: on a quorum, so a majority holds it right now.
            end = old.partition.high_watermark
            holders = [n for n in cluster.nodes.values() if n.log.log_end_offset >= end]
            assert len(holders) >= 2

            # The coordinator's node dies; the new leader rebuilds the group from the log.
            await coordinator.stop()
            del managers[old.node_id]
            await cluster.stop_node(old.node_id)
            new = await cluster.wait_leader(not_=old.node_id)
            successor = managers[new.node_id]
            assert await serving(successor) == {("orders", 0): 10, ("orders", 1): 20}
            # The member is still there, at its epoch: it heartbeats on as before.
            again = await successor.heartbeat(
                pb.ConsumerGroupHeartbeatRequest(
                    group_id="g", member_id=member.member_id, member_epoch=member.member_epoch
                ),
                "ipv4:127.0.0.1:1",
            )
            assert error_of(again) is None, again.error.message
            assert again.member_epoch == member.member_epoch

            # The old node comes back: a follower, not a coordinator.
            await cluster.restart_node(old.node_id)
            managers[old.node_id] = await manager(cluster, old.node_id)
            await wait_until(
                lambda: (
                    data_values(cluster.nodes[old.node_id])
                    == data_values(cluster.nodes[new.node_id])
                ),
                what="the old leader to catch up",
            )
            with pytest.raises(NotCoordinatorError):
                await fetch(managers[old.node_id])

            # Leadership handed back: the deposed leader refuses at once, the old one serves.
            successor_node = cluster.nodes[new.node_id]

            def handed_over() -> bool:
                runtime = successor_node.host.runtime
                if runtime.status(GROUP).role is not Role.LEADER:
                    return True
                runtime.transfer_leadership(GROUP, old.node_id)  # again, if abandoned
                return False

            await wait_until(handed_over, 30.0, what=f"node {new.node_id} to step down")
            with pytest.raises(NotCoordinatorError):
                await fetch(successor)
            offsets = await serving(managers[old.node_id])
            assert offsets == {("orders", 0): 10, ("orders", 1): 20}
        finally:
            for m in managers.values():
                await m.stop()
            await cluster.close()

    asyncio.run(scenario())


async def settled_coordinator(cluster: PartitionCluster, managers: dict[int, GroupManager]) -> Node:
    """The node that leads and serves the (empty) group: whoever leads once the group settles
    (on a loaded machine the first leader may lose the leadership before it serves)."""
    deadline = asyncio.get_running_loop().time() + 60.0
    while True:
        leader = await cluster.wait_leader()
        try:
            if await fetch(managers[leader.node_id]) == {}:
                return leader
        except (CoordinatorLoadInProgressError, NotCoordinatorError):
            pass
        assert asyncio.get_running_loop().time() < deadline, "no coordinator served"
        await asyncio.sleep(0.02)


def test_compacted_offsets_partition_is_replayed_bounded_after_a_failover(
    tmp_path: Path,
) -> None:
    # __consumer_offsets is compacted on every replica (small segments here, so that the
    # commits fill several sealed ones): a new coordinator replays only the newest record per
    # key, and rebuilds the same offsets and member.
    config = LogConfig(segment_bytes=2048, cleanup_policy="compact")
    commits = 150

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=config)
        await cluster.start()
        managers: dict[int, GroupManager] = {}
        try:
            for node_id in cluster.replicas:
                managers[node_id] = await manager(cluster, node_id)
            old = await settled_coordinator(cluster, managers)
            coordinator = managers[old.node_id]
            member = await coordinator.heartbeat(join(), "ipv4:127.0.0.1:1")
            assert error_of(member) is None
            for i in range(commits):
                commit = pb.OffsetCommitRequest(
                    group_id="g", member_id=member.member_id, member_epoch=member.member_epoch
                )
                commit.partitions.add(topic="orders", partition=0, offset=i)
                commit.partitions.add(topic="orders", partition=1, offset=2 * i)
                answer = await coordinator.offset_commit(commit)
                assert error_of(answer) is None, answer.error.message
            want = {("orders", 0): commits - 1, ("orders", 1): 2 * (commits - 1)}
            assert await fetch(coordinator) == want
            written = len(data_values(old))
            assert written >= 2 * commits
            now_ms = int(time.time() * 1000)
            for node in cluster.nodes.values():
                await node.partition.maintain(now_ms)
                # Bounded: the sealed segments keep one record per key; only the active
                # segment's records (at most a segment's worth) are more.
                assert len(data_values(node)) < written / 3, f"node {node.node_id}"

            await coordinator.stop()
            del managers[old.node_id]
            await cluster.stop_node(old.node_id)
            new = await cluster.wait_leader(not_=old.node_id)
            successor = managers[new.node_id]
            assert await serving(successor) == want
            again = await successor.heartbeat(
                pb.ConsumerGroupHeartbeatRequest(
                    group_id="g", member_id=member.member_id, member_epoch=member.member_epoch
                ),
                "ipv4:127.0.0.1:1",
            )
            assert error_of(again) is None, again.error.message
            assert again.member_epoch == member.member_epoch
        finally:
            for m in managers.values():
                await m.stop()
            await cluster.close()

    asyncio.run(scenario())
