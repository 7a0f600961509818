"""HeldGroups: a node's record of the Raft groups whose state it held, which tells a replica
that lost its state from a new one when the metadata view cannot (not caught up at open)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rilke.errors import KafkaStorageError
from rilke.partition.interface import ACKS_ALL
from rilke.replication.held_groups import HELD_DIR, HeldGroups
from rilke.replication.raft.types import Role

from .cluster import wait_until
from .partition_cluster import GROUP, PartitionCluster, data_values, records_batch


def test_a_group_is_held_once_recorded_until_forgotten(tmp_path: Path) -> None:
    held = HeldGroups(tmp_path / HELD_DIR)
    assert not held.holds("abc/0")
    held.record("abc/0")
    held.record("abc/0")  # idempotent
    assert held.holds("abc/0")
    assert not held.holds("abc/1")
    assert HeldGroups(tmp_path / HELD_DIR).holds("abc/0")  # durable: a new reader sees it
    held.forget("abc/0")
    held.forget("abc/0")  # nothing to forget: no error
    assert not held.holds("abc/0")


def test_an_unreadable_record_is_a_storage_error(tmp_path: Path) -> None:
    held = HeldGroups(tmp_path / HELD_DIR)
    held.record("g/0")
    (path,) = (tmp_path / HELD_DIR).glob("*.group")
    path.unlink()
    path.mkdir()  # reading it fails with IsADirectoryError
    with pytest.raises(KafkaStorageError, match="cannot read the replica group record"):
        held.holds("g/0")


def test_a_record_naming_another_group_is_a_storage_error(tmp_path: Path) -> None:
    # A damaged record must not read as "not held": that would let a replica that lost its
    # state vote as if it were new to its group.
    held = HeldGroups(tmp_path / HELD_DIR)
    held.record("g/0")
    (path,) = (tmp_path / HELD_DIR).glob("*.group")
    path.write_bytes(b"g/\x00")
    with pytest.raises(KafkaStorageError, match="is damaged: it names"):
        held.holds("g/0")
    assert not held.holds("g/1")  # another group's missing record is still just "not held"


def test_every_replica_records_its_group_once_its_state_is_synced(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, held=True)
        await cluster.start()
        try:
            await cluster.wait_leader()
            for node in cluster.nodes.values():
                await wait_until(
                    lambda node=node: HeldGroups(node.data_dir / HELD_DIR).holds(GROUP),
                    what=f"node {node.node_id} to record its group",
                )
                assert (node.log.directory / "raft.state").exists()
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_wiped_partition_waits_for_a_leader_though_the_metadata_says_nothing(
    tmp_path: Path,
) -> None:
    """The metadata view a restarted node opens with may not be caught up (leader epoch 0
    here): the node's own record still tells it its partition's state was lost, so it does
    not vote until a leader caught it up (without the record it voted at once, and could
    elect a replica lacking entries committed with its help)."""

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, held=True)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            lagging, helper = cluster.followers()
            await cluster.stop_node(lagging.node_id)
            await leader.partition.append(records_batch([b"x"]), ACKS_ALL)
            await cluster.stop_node(leader.node_id)
            await cluster.stop_node(helper.node_id)

            wiped = await cluster.restart_node(helper.node_id, wipe_partition=True)
            core = wiped.host.runtime.node(GROUP)
            assert core.recovering and core.vote == 0
            back = await cluster.restart_node(lagging.node_id)
            assert not back.host.runtime.node(GROUP).recovering
            await wait_until(
                lambda: back.host.runtime.node(GROUP).role is not Role.FOLLOWER,
                what="the lagging replica to campaign",
            )
            assert cluster.leader() is None  # the wiped replica refused it
            assert core.recovering and core.vote == 0

            await cluster.restart_node(leader.node_id)
            new = await cluster.wait_leader()
            assert new.node_id != lagging.node_id
            await new.partition.append(records_batch([b"y"]), ACKS_ALL)
            end = new.log.log_end_offset
            await wait_until(
                lambda: all(n.partition.high_watermark == end for n in cluster.nodes.values()),
                what="every replica to catch up",
            )
            await wait_until(lambda: not core.recovering, what="the wiped replica to recover")
            for node in cluster.nodes.values():
                assert data_values(node) == [b"x", b"y"]
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_state_file_without_a_record_is_recorded_at_open(tmp_path: Path) -> None:
    """A crash between the first state file and its record: the next open records it."""

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, held=True)
        await cluster.start()
        try:
            await cluster.wait_leader()
            node = next(iter(cluster.nodes.values()))
            await cluster.stop_node(node.node_id)
            held = HeldGroups(node.data_dir / HELD_DIR)
            held.forget(GROUP)
            back = await cluster.restart_node(node.node_id)
            assert held.holds(GROUP)
            assert not back.host.runtime.node(GROUP).recovering
        finally:
            await cluster.close()

    asyncio.run(scenario())
