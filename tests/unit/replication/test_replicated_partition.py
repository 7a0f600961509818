"""ReplicatedPartition on three in-process nodes over the real transport (127.0.0.1): produce
with each acks, reads on followers up to the high watermark, refusals off the leader."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rilke.errors import (
    CorruptRecordError,
    FencedLeaderEpochError,
    InvalidRequestError,
    NotLeaderError,
    OutOfOrderSequenceError,
    UnknownLeaderEpochError,
)
from rilke.partition.interface import ACKS_ALL, ACKS_LEADER, ACKS_NONE, Leadership
from rilke.records.header import iter_headers
from rilke.storage.config import LogConfig

from .cluster import wait_until
from .partition_cluster import GROUP, PartitionCluster, data_values, records_batch


def test_produce_each_acks_and_read_on_every_replica(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            part = leader.partition
            # Offset 0 holds the leader's no-op (a control batch consumers skip).
            done = await part.append(records_batch([b"a0", b"a1"]), ACKS_ALL)
            assert (done.base_offset, done.last_offset) == (1, 2)
            assert part.high_watermark >= 3  # acks=all: committed before the answer
            one = await part.append(records_batch([b"b0"]), ACKS_LEADER)
            assert one.base_offset == 3
            assert leader.log.log_end_offset >= 4  # acks=1: the leader wrote it
            zero = await part.append(records_batch([b"c0"]), ACKS_NONE)
            assert zero.base_offset == 4
            last = await part.append(records_batch([b"d0"]), ACKS_ALL)
            assert last.base_offset == 5

            # Every replica reads the same records, up to its own high watermark.
            want = [b"a0", b"a1", b"b0", b"c0", b"d0"]
            await wait_until(
                lambda: all(n.partition.high_watermark >= 6 for n in cluster.nodes.values()),
                what="every replica to learn the commit",
            )
            for node in cluster.nodes.values():
                assert data_values(node) == want
                offsets = node.partition.offsets()
                assert offsets.high_watermark == 6 <= offsets.log_end_offset
                # Stamped on every replica alike: base offsets and epoch = the leader's term.
                stored = node.log.read(1, 1 << 20).records
                epochs = {h.partition_leader_epoch for _p, h in iter_headers(stored)}
                assert epochs == {part.leader_epoch}
            stored_bytes = {n.log.read(0, 1 << 20).records for n in cluster.nodes.values()}
            assert len(stored_bytes) == 1  # the same bytes on every replica

            # Leadership as every replica sees it: one leader, epoch = its term, all in sync.
            for node in cluster.nodes.values():
                seen = node.partition.leadership
                assert seen.leader_id == leader.node_id
                assert seen.leader_epoch == part.leader_epoch
                assert seen.replicas == (1, 2, 3)
            await wait_until(
                lambda: part.leadership.in_sync_replicas == (1, 2, 3), what="all in sync"
            )
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_followers_refuse_writes_naming_the_leader_and_bad_input_changes_nothing(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await wait_until(
                lambda: all(
                    n.partition.leadership.leader_id == leader.node_id
                    for n in cluster.nodes.values()
                ),
                what="every replica to know the leader",
            )
            for follower in cluster.followers():
                with pytest.raises(NotLeaderError) as refused:
                    follower.partition.append(records_batch([b"x"]), ACKS_ALL)
                assert refused.value.leader_id == leader.node_id
            part = leader.partition
            end = leader.log.log_end_offset
            bad = bytearray(records_batch([b"x"]))
            bad[-1] ^= 0xFF  # breaks the CRC
            with pytest.raises(CorruptRecordError):
                part.append(bytes(bad), ACKS_ALL)
            with pytest.raises(InvalidRequestError):
                part.append(records_batch([b"x"]), 2)
            await part.append(records_batch([b"s0"], producer_id=7, epoch=0, sequence=0), ACKS_ALL)
            end = leader.log.log_end_offset
            with pytest.raises(OutOfOrderSequenceError):
                part.append(records_batch([b"x"], producer_id=7, epoch=0, sequence=3), ACKS_ALL)
            await asyncio.sleep(0.05)
            assert leader.log.log_end_offset == end  # nothing was proposed

            # KIP-320: an older epoch is fenced, a newer one unknown, the current one passes.
            epoch = part.leader_epoch
            part.check_leader_epoch(epoch)
            part.check_leader_epoch(-1)
            with pytest.raises(FencedLeaderEpochError):
                part.check_leader_epoch(epoch - 1)
            with pytest.raises(UnknownLeaderEpochError):
                part.check_leader_epoch(epoch + 1)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_pipelined_idempotent_batches_and_retries(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            part = leader.partition
            # 16 in flight from one producer: each follows the previous one's sequence, though
            # none is written yet when the next is proposed.
            futures = [
                part.append(
                    records_batch([b"p%d" % i], producer_id=5, epoch=0, sequence=i), ACKS_ALL
                )
                for i in range(16)
            ]
            results = await asyncio.gather(*futures)
            assert [r.base_offset for r in results] == list(range(1, 17))
            # A retry of the last one is answered with its original offset, not written again.
            end = leader.log.log_end_offset
            retry = await part.append(
                records_batch([b"p15"], producer_id=5, epoch=0, sequence=15), ACKS_ALL
            )
            assert retry.duplicate and retry.base_offset == 16
            assert leader.log.log_end_offset == end
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_leadership_follows_raft_and_the_isr_follows_the_followers(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await leader.partition.append(records_batch([b"a"]), ACKS_ALL)
            seen: dict[int, list[Leadership]] = {n: [] for n in cluster.nodes}
            for node in cluster.nodes.values():
                node.partition.subscribe_leadership(seen[node.node_id].append)
            await wait_until(
                lambda: leader.partition.leadership.in_sync_replicas == (1, 2, 3),
                what="every replica in sync",
            )
            # A follower goes away: the leader drops it from the in-sync replicas, and tells
            # its subscribers at its next maintenance pass.
            gone = cluster.followers()[0]
            await cluster.stop_node(gone.node_id)
            await wait_until(
                lambda: gone.node_id not in leader.partition.leadership.in_sync_replicas,
                what="the stopped follower to leave the ISR",
            )
            await leader.partition.maintain(0)
            last = seen[leader.node_id][-1]
            assert last.leader_id == leader.node_id
            assert gone.node_id not in last.in_sync_replicas
            assert leader.node_id in last.in_sync_replicas
            await cluster.restart_node(gone.node_id)

            # The leader goes away: the others see a new leader at a higher epoch.
            epoch = leader.partition.leader_epoch
            await cluster.stop_node(leader.node_id)
            new = await cluster.wait_leader(not_=leader.node_id)
            await wait_until(
                lambda: all(
                    s and s[-1].leader_id == new.node_id
                    for n, s in seen.items()
                    if n in cluster.nodes and n != gone.node_id
                ),
                what="the subscribers to hear of the new leader",
            )
            assert new.partition.leadership.leader_epoch > epoch
            assert new.partition.leader_epoch == new.host.runtime.status(GROUP).term
        finally:
            await cluster.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("write_caching", [False, True])
def test_acks_all_waits_for_fsyncs_on_a_quorum_unless_write_caching(
    tmp_path: Path, write_caching: bool
) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=LogConfig(write_caching=write_caching))
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            done = await leader.partition.append(records_batch([b"a"]), ACKS_ALL)
            end = done.last_offset + 1
            synced = [n.node_id for n in cluster.nodes.values() if n.log.flushed_offset >= end]
            if write_caching:
                # Acknowledged once written on a quorum; nothing waited for an fsync.
                assert leader.log.flushed_offset < end
                assert leader.partition.high_watermark >= end
            else:
                assert len(synced) >= 2, synced  # a quorum fsynced it before the answer
        finally:
            await cluster.close()

    asyncio.run(scenario())
