"""ReplicatedPartition across failures, three in-process nodes on 127.0.0.1: the leader dies
and the new one carries on with nothing acknowledged lost and retries deduplicated; a
restarted follower catches up; an old leader's uncommitted tail is cut when it rejoins; a
follower behind the leader's log start (retention) or with a wiped data dir is reset to it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rilke.errors import NotLeaderError
from rilke.partition.interface import ACKS_ALL, ACKS_LEADER
from rilke.records.reader import read_records
from rilke.storage.config import LogConfig

from .cluster import wait_until
from .partition_cluster import Node, PartitionCluster, data_values, records_batch

PID = 9


def idempotent(i: int, epoch: int = 0) -> bytes:
    return records_batch([b"r%d" % i], producer_id=PID, epoch=epoch, sequence=i)


def assert_monotonic(node: Node) -> None:
    marks = node.high_watermarks
    assert marks == sorted(marks), f"node {node.node_id}'s high watermark went back: {marks}"


async def caught_up(cluster: PartitionCluster, want: list[bytes]) -> None:
    await wait_until(
        lambda: all(data_values(n) == want for n in cluster.nodes.values()),
        what="every replica to hold exactly the acknowledged records",
    )


def test_leader_dies_new_leader_carries_on_and_dedups_retries(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            old = await cluster.wait_leader()
            acked = [await old.partition.append(idempotent(i), ACKS_ALL) for i in range(10)]
            want = [b"r%d" % i for i in range(10)]
            await caught_up(cluster, want)

            await cluster.stop_node(old.node_id)  # the leader's process dies
            new = await cluster.wait_leader(not_=old.node_id)
            # The producer retries its last batch (it never saw the answer): the original
            # offset, written once.
            retry = await new.partition.append(idempotent(9), ACKS_ALL)
            assert retry.duplicate and retry.base_offset == acked[9].base_offset
            after = await new.partition.append(idempotent(10), ACKS_ALL)
            assert after.base_offset > acked[9].last_offset
            assert new.partition.leader_epoch > old.partition.leader_epoch
            want.append(b"r10")
            await caught_up(cluster, want)

            # The old leader comes back from its disk: a follower that catches up.
            back = await cluster.restart_node(old.node_id)
            await caught_up(cluster, want)
            assert not back.partition.is_leader
            with pytest.raises(NotLeaderError):
                back.partition.append(idempotent(11), ACKS_ALL)
            for node in cluster.nodes.values():
                assert_monotonic(node)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_restarted_follower_catches_up(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            follower = cluster.followers()[0]
            await leader.partition.append(records_batch([b"a"]), ACKS_ALL)
            await cluster.stop_node(follower.node_id)
            # Two of three commit on their own.
            for i in range(20):
                await leader.partition.append(records_batch([b"b%d" % i]), ACKS_ALL)
            back = await cluster.restart_node(follower.node_id)
            want = [b"a"] + [b"b%d" % i for i in range(20)]
            await caught_up(cluster, want)
            assert back.log.log_end_offset == leader.log.log_end_offset
            for node in cluster.nodes.values():
                assert_monotonic(node)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_old_leaders_uncommitted_tail_is_cut_when_it_rejoins(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            old = await cluster.wait_leader()
            await old.partition.append(records_batch([b"committed"]), ACKS_ALL)
            await caught_up(cluster, [b"committed"])
            followers = [n.node_id for n in cluster.followers()]
            for node_id in followers:
                await cluster.stop_node(node_id)
            # Alone, the leader still writes (acks=1) but can commit nothing.
            lost = await old.partition.append(records_batch([b"uncommitted"]), ACKS_LEADER)
            waiting = old.partition.append(records_batch([b"never"]), ACKS_ALL)
            await wait_until(
                lambda: old.log.log_end_offset > lost.last_offset + 1, what="the tail written"
            )
            # It steps down (CheckQuorum): what waits for a commit fails, never acknowledged.
            with pytest.raises(NotLeaderError):
                await asyncio.wait_for(waiting, 20)
            assert old.partition.high_watermark <= lost.base_offset
            # Written but not committed: not readable, and not an error either.
            assert old.partition.read(lost.base_offset, 1 << 20).records == b""
            await cluster.stop_node(old.node_id)

            for node_id in followers:
                await cluster.restart_node(node_id)
            new = await cluster.wait_leader()
            await new.partition.append(records_batch([b"after"]), ACKS_ALL)
            back = await cluster.restart_node(old.node_id)
            await caught_up(cluster, [b"committed", b"after"])
            stored = {n.log.read(0, 1 << 20).records for n in cluster.nodes.values()}
            assert len(stored) == 1  # the old leader's tail was replaced, byte for byte
            assert back.log.log_end_offset == new.log.log_end_offset
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_follower_behind_log_start_and_wiped_follower_are_reset(tmp_path: Path) -> None:
    # Small segments and a byte bound: retention removes the oldest segments on every replica.
    config = LogConfig(segment_bytes=1024, retention_bytes=2048)

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path, config=config)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            lagging = cluster.followers()[0]
            await cluster.stop_node(lagging.node_id)
            value = b"x" * 200
            for _ in range(40):
                await leader.partition.append(records_batch([value]), ACKS_ALL)
            now_ms = int(time.time() * 1000)
            for node in cluster.nodes.values():
                await node.partition.maintain(now_ms)
            start = leader.log.log_start_offset
            assert start > 0, "retention removed nothing"
            # The lagging follower's log ends before the leader's log start: it is reset to
            # start there, then catches up.
            back = await cluster.restart_node(lagging.node_id)
            end = leader.log.log_end_offset
            await wait_until(
                lambda: back.partition.high_watermark == end, what="the reset follower to catch up"
            )
            assert back.log.log_start_offset >= start
            assert data_values(back) == data_values(leader, back.log.log_start_offset)

            # A replica whose data dir was wiped is rebuilt the same way.
            wiped = cluster.followers()[0]
            await cluster.stop_node(wiped.node_id)
            await leader.partition.append(records_batch([b"last"]), ACKS_ALL)
            rebuilt = await cluster.restart_node(wiped.node_id, wipe=True)
            end = leader.log.log_end_offset
            await wait_until(
                lambda: rebuilt.partition.high_watermark == end, what="the wiped one rebuilt"
            )
            assert rebuilt.log.log_start_offset == leader.log.log_start_offset
            assert data_values(rebuilt)[-1] == b"last"
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_idempotent_producer_under_load_across_a_leader_kill(tmp_path: Path) -> None:
    """A producer keeps 4 batches in flight; the leader dies while a window is in flight. The
    producer retries whatever was not acknowledged, in order, at the new leader: every batch
    ends up in the log exactly once, in sequence order, at the offset it was acknowledged
    with."""
    total = 120
    window = 4

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            acked: dict[int, int] = {}  # sequence -> base offset acknowledged
            failed: list[BaseException] = []

            async def send(seq: int) -> None:
                leader = await cluster.wait_leader()
                result = await asyncio.wait_for(
                    leader.partition.append(idempotent(seq), ACKS_ALL), 20
                )
                acked[seq] = result.base_offset

            async def retry_in_order(first: int, stop: int) -> None:
                # Not acknowledged: resent one by one, as an idempotent producer does after
                # NOT_LEADER (a batch the new leader already holds gets its original offset).
                for seq in range(first, stop):
                    for _attempt in range(100):
                        try:
                            await send(seq)
                            break
                        except Exception:
                            await asyncio.sleep(0.05)
                    else:
                        raise AssertionError(f"sequence {seq} never acknowledged")

            seq = 0
            killed = None
            while seq < total:
                batch = range(seq, min(seq + window, total))
                sends = [asyncio.ensure_future(send(s)) for s in batch]
                if killed is None and seq >= 40:
                    await asyncio.sleep(0)  # the window is proposed, not yet committed
                    leader = cluster.leader()
                    assert leader is not None
                    killed = leader.node_id
                    await cluster.stop_node(killed)
                outcomes = await asyncio.gather(*sends, return_exceptions=True)
                for s, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        failed.append(outcome)
                        await retry_in_order(s, batch.stop)
                        break
                seq = batch.stop
            assert killed is not None
            assert failed, "the leader's death failed no append in flight"
            assert all(isinstance(e, NotLeaderError) for e in failed), failed
            assert sorted(acked) == list(range(total))
            want = [b"r%d" % i for i in range(total)]
            await wait_until(
                lambda: all(data_values(n) == want for n in cluster.nodes.values()),
                what="the surviving replicas to hold every batch exactly once, in order",
            )
            leader = await cluster.wait_leader()
            # Each acknowledged offset holds the batch it was acknowledged for.
            for s, offset in acked.items():
                records = leader.partition.read(offset, 1).records
                assert record_value_at(records, offset) == b"r%d" % s
            for node in cluster.nodes.values():
                assert_monotonic(node)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def record_value_at(records: bytes, offset: int) -> bytes:
    for record in read_records(records, skip_control=True):
        if record.offset == offset:
            return bytes(record.value or b"")
    raise AssertionError(f"no record at offset {offset}")
