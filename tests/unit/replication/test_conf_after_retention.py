"""A partition group's configuration survives retention: after a membership change, retention
removes the segments holding its CONFIG entry on every replica (there is no snapshot file for
a partition: the log is its own state machine), and a restarted replica still has the
changed configuration, not the bootstrap replicas again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rilke.partition.interface import ACKS_ALL
from rilke.replication import offsets
from rilke.replication.raft.types import ConfState
from rilke.storage.config import LogConfig

from .cluster import wait_until
from .partition_cluster import GROUP, PartitionCluster, records_batch


def test_membership_change_survives_retention_and_restart(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1024, retention_bytes=2048)

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=config)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            removed, kept = cluster.followers()
            await leader.partition.append(records_batch([b"before"]), ACKS_ALL)
            index = await leader.host.runtime.remove_member(GROUP, removed.node_id)
            await cluster.stop_node(removed.node_id)
            want = ConfState(frozenset({leader.node_id, kept.node_id}))
            for _ in range(40):
                await leader.partition.append(records_batch([b"x" * 200]), ACKS_ALL)
            now_ms = int(time.time() * 1000)
            for node in (leader, kept):
                await node.partition.maintain(now_ms)
                # The CONFIG entry is gone from the log on both.
                assert node.log.log_start_offset > offsets.base_offset(index)
                assert node.host.runtime.node(GROUP).conf == want

            # Both restart; the second with the replicas of before (a metadata view that
            # lags the move): the log start's configuration holds the change either way.
            await cluster.stop_node(kept.node_id)
            back = await cluster.restart_node(kept.node_id)
            assert back.host.runtime.node(GROUP).conf == want
            await cluster.stop_node(leader.node_id)
            cluster.replicas = tuple(sorted(want.voters))
            old = await cluster.restart_node(leader.node_id)
            assert old.host.runtime.node(GROUP).conf == want
            # Two voters of two: a leader, and writes commit with both.
            new = await cluster.wait_leader()
            await new.partition.append(records_batch([b"after"]), ACKS_ALL)
            end = new.log.log_end_offset
            await wait_until(
                lambda: all(n.partition.high_watermark == end for n in (back, old)),
                what="both replicas to commit",
            )
        finally:
            await cluster.close()

    asyncio.run(scenario())
