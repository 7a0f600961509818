"""Compaction and retention of a replicated partition, three in-process nodes on 127.0.0.1.

Every replica compacts its own log by the same rule, below its high watermark and below the
active segment, keeping a batch whose records all went as an empty batch: the offsets stay
contiguous batch by batch, so every Raft entry keeps its index and term and a follower that
needs entries from a compacted region is sent the compacted batches. Retention never moves
a replica's log start past its high watermark."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from rilke.partition.interface import ACKS_ALL, ACKS_LEADER
from rilke.records.builder import BatchBuilder
from rilke.records.header import iter_headers
from rilke.records.reader import read_records
from rilke.replication import offsets
from rilke.storage.config import LogConfig

from .cluster import wait_until
from .partition_cluster import Node, PartitionCluster, records_batch

KEYS = 8


def keyed(i: int) -> bytes:
    builder = BatchBuilder()
    builder.append(b"key%d" % (i % KEYS), b"value%d" % i, None, 1_000 + i)
    return builder.build()


def latest_per_key(node: Node) -> dict[bytes, bytes]:
    return dict(records(node))


def records(node: Node) -> list[tuple[bytes, bytes]]:
    """Every data record readable on ``node`` (up to its high watermark), as (key, value)."""
    out: list[tuple[bytes, bytes]] = []
    offset = node.log.log_start_offset
    while offset < node.partition.high_watermark:
        fetched = node.partition.read(offset, 1 << 20)
        if not fetched.records:
            break
        for record in read_records(fetched.records, skip_control=True):
            out.append((bytes(record.key or b""), bytes(record.value or b"")))
        for _pos, header in iter_headers(fetched.records, check=True):
            assert header.base_offset == offset, f"a gap before {header.base_offset}"
            offset = header.next_offset
    return out


def assert_raft_view_matches_the_log(node: Node) -> None:
    """Every batch of the log is an entry whose index and term Raft's storage agrees on."""
    storage = node.partition._storage
    offset = node.log.log_start_offset
    while offset < node.log.log_end_offset:
        data = node.log.read(offset, 1 << 20).records
        assert data
        for _pos, header in iter_headers(data, check=True):
            assert header.base_offset == offset, f"node {node.node_id}: a gap at {offset}"
            index = offsets.raft_index(header.last_offset)
            assert storage.term(index) == header.partition_leader_epoch, (node.node_id, index)
            offset = header.next_offset
    assert storage.last_index() == offsets.last_index(node.log.log_end_offset)


async def maintain_all(cluster: PartitionCluster) -> None:
    now_ms = int(time.time() * 1000)
    for node in cluster.nodes.values():
        await node.partition.maintain(now_ms)


def test_every_replica_compacts_and_a_lagging_follower_is_sent_compacted_batches(
    tmp_path: Path,
) -> None:
    config = LogConfig(segment_bytes=1024, cleanup_policy="compact")
    produced = 200
    want = {b"key%d" % (i % KEYS): b"value%d" % i for i in range(produced)}

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=config)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            lagging = cluster.followers()[0]
            await cluster.stop_node(lagging.node_id)
            for i in range(produced):
                await leader.partition.append(keyed(i), ACKS_ALL)
            before = leader.log.size_bytes()
            await maintain_all(cluster)
            # Both running replicas compacted their own logs below their high watermarks.
            for node in cluster.nodes.values():
                assert len(records(node)) < produced / 2, f"node {node.node_id} kept it all"
                assert latest_per_key(node) == want
                assert_raft_view_matches_the_log(node)
            assert leader.log.size_bytes() < before
            # The lagging follower needs entries from the compacted region: it is sent the
            # compacted batches, appends them without a gap, and ends as the leader is.
            back = await cluster.restart_node(lagging.node_id)
            end = leader.log.log_end_offset
            await wait_until(
                lambda: back.partition.high_watermark == end, what="the follower to catch up"
            )
            assert records(back) == records(leader)
            assert_raft_view_matches_the_log(back)
            # It compacts by the same rule; every replica has the same latest value per key.
            await maintain_all(cluster)
            for node in cluster.nodes.values():
                assert latest_per_key(node) == want
            # The compacted replicas go on as a group: a new leader, more writes, all agree.
            await cluster.stop_node(leader.node_id)
            new_leader = await cluster.wait_leader(not_=leader.node_id)
            for i in range(produced, produced + 20):
                await new_leader.partition.append(keyed(i), ACKS_ALL)
                want[b"key%d" % (i % KEYS)] = b"value%d" % i
            old = await cluster.restart_node(leader.node_id)
            end = new_leader.log.log_end_offset
            await wait_until(
                lambda: old.partition.high_watermark == end, what="the old leader to catch up"
            )
            for node in cluster.nodes.values():
                assert latest_per_key(node) == want
                assert_raft_view_matches_the_log(node)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_retention_never_moves_the_log_start_past_the_high_watermark(tmp_path: Path) -> None:
    # Small segments and a byte bound that every segment but the last exceeds.
    config = LogConfig(segment_bytes=1024, retention_bytes=1)

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=config)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            for _ in range(10):
                await leader.partition.append(records_batch([b"c" * 200]), ACKS_ALL)
            # Without its followers the leader writes (acks=1) but commits nothing more.
            for follower in cluster.followers():
                await cluster.stop_node(follower.node_id)
            high_watermark = leader.partition.high_watermark
            for _ in range(30):
                await leader.partition.append(records_batch([b"u" * 200]), ACKS_LEADER)
            assert leader.log.log_end_offset > high_watermark
            assert len(leader.log.segments) > 4
            await leader.partition.maintain(int(time.time() * 1000))
            assert leader.partition.high_watermark == high_watermark
            # Only segments wholly below the high watermark went: what is not committed (and
            # may yet be cut by a new leader's log) stays, and so does Raft's log start.
            start = leader.log.log_start_offset
            assert 0 < start <= high_watermark
            assert leader.log.segments[1].base_offset > high_watermark
            storage = leader.partition._storage
            assert storage.first_index() - 1 <= offsets.last_index(high_watermark)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_retry_of_a_compacted_away_batch_is_still_deduplicated_after_a_rebuild(
    tmp_path: Path,
) -> None:
    # An emptied batch keeps its producer id, epoch and sequence span: a replica that rebuilds
    # its producer state from the compacted log (no snapshot) and then leads answers a retry
    # of a batch whose records compaction removed with its original offset.
    config = LogConfig(segment_bytes=1024, cleanup_policy="compact")
    pid, batches = 7, 40

    def one_key(sequence: int) -> bytes:
        builder = BatchBuilder(producer_id=pid, producer_epoch=0, base_sequence=sequence)
        builder.append(b"the key", b"v%d" % sequence, None, 1_000)
        return builder.build()

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=config)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            offsets_of = [
                (await leader.partition.append(one_key(s), ACKS_ALL)).base_offset
                for s in range(batches)
            ]
            # Every replica holds the whole log, then compacts it.
            end = leader.log.log_end_offset
            await wait_until(
                lambda: all(n.partition.high_watermark == end for n in cluster.nodes.values()),
                30.0,
                what="every replica to commit everything",
            )
            await maintain_all(cluster)
            retried = batches - 5  # in the producer's last five, and its record compacted away
            assert offsets_of[retried] < leader.log.segments[-1].base_offset
            successor = cluster.followers()[0]
            assert (b"the key", b"v%d" % retried) not in records(successor)
            # The successor restarts without its producer state snapshot: it rebuilds from the
            # compacted log. Then it takes the leadership.
            await cluster.stop_node(successor.node_id)
            (successor.data_dir / "t-0" / "producer-state.json").unlink(missing_ok=True)
            back = await cluster.restart_node(successor.node_id)
            await wait_until(
                lambda: back.partition.high_watermark == end,
                30.0,
                what="the restarted node to commit",
            )

            def handed_over() -> bool:
                if back.partition.is_leader:
                    return True
                current = cluster.leader()
                if current is not None:
                    current.host.runtime.transfer_leadership(current.partition.group, back.node_id)
                return False

            await wait_until(handed_over, 30.0, what="the restarted node to lead")
            retry = await back.partition.append(one_key(retried), ACKS_ALL)
            assert retry.duplicate and retry.base_offset == offsets_of[retried]
            # Not written again: after ``end`` the log holds only the new leader's no-op.
            await wait_until(
                lambda: back.partition.high_watermark == back.log.log_end_offset,
                30.0,
                what="the new leader's entries to commit",
            )
            tail = back.log.read(end, 1 << 20).records
            assert tail and not list(read_records(tail, skip_control=True))
            assert (b"the key", b"v%d" % retried) not in records(back)
        finally:
            await cluster.close()

    asyncio.run(scenario())
