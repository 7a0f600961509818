"""A replica whose data dir was wiped while its partition's group lived on does not vote until
a leader has caught it up (Config.storage_lost, set by the partition from the metadata's leader
epoch): otherwise it could elect a replica that lacks entries committed with its own help."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rilke.partition.interface import ACKS_ALL
from rilke.replication.raft.types import Role

from .cluster import wait_until
from .partition_cluster import GROUP, PartitionCluster, data_values, records_batch


def test_a_wiped_replica_waits_for_a_leader_before_it_votes(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            lagging, helper = cluster.followers()
            await cluster.stop_node(lagging.node_id)
            # Committed by the leader and `helper` alone.
            await leader.partition.append(records_batch([b"x"]), ACKS_ALL)
            epoch = leader.partition.leader_epoch
            await cluster.stop_node(leader.node_id)
            await cluster.stop_node(helper.node_id)

            # `helper` comes back wiped, `lagging` (without "x") as it was.
            wiped = await cluster.restart_node(helper.node_id, wipe=True, known_epoch=epoch)
            core = wiped.host.runtime.node(GROUP)
            assert core.recovering and core.vote == 0
            back = await cluster.restart_node(lagging.node_id, known_epoch=epoch)
            assert not back.host.runtime.node(GROUP).recovering  # its state is there
            # `lagging` campaigns: the wiped replica refuses it (and never stands itself).
            await wait_until(
                lambda: back.host.runtime.node(GROUP).role is not Role.FOLLOWER,
                what="the lagging replica to campaign",
            )
            assert cluster.leader() is None
            assert core.recovering and core.vote == 0

            # The old leader returns: it (holding "x") is elected, and catches the wiped up.
            old = await cluster.restart_node(leader.node_id, known_epoch=epoch)
            new = await cluster.wait_leader()
            assert new.node_id != lagging.node_id
            await new.partition.append(records_batch([b"y"]), ACKS_ALL)
            end = new.log.log_end_offset
            await wait_until(
                lambda: all(n.partition.high_watermark == end for n in cluster.nodes.values()),
                what="every replica to catch up",
            )
            await wait_until(lambda: not core.recovering, what="the wiped replica to recover")
            assert (core.term, core.vote) == (new.partition.leader_epoch, new.node_id)
            for node in (old, wiped, back):
                assert data_values(node) == [b"x", b"y"]
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_new_replica_of_a_new_group_votes_at_once(tmp_path: Path) -> None:
    """No state and leader epoch 0 (a group that never had a leader): nothing was lost."""

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            for node in cluster.nodes.values():
                assert not node.host.runtime.node(GROUP).recovering
            await cluster.wait_leader()
        finally:
            await cluster.close()

    asyncio.run(scenario())
