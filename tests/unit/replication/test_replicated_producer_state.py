"""Every replica's producer state follows its own log (tests/faults/FINDINGS.md 3): an old
leader's uncommitted tail, cut when it rejoins, leaves nothing in its producer state, even when
a producer state snapshot written before the cut covered that tail."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rilke.partition.interface import ACKS_ALL, ACKS_LEADER
from rilke.replication import offsets
from rilke.replication.raft.types import Entry, EntryKind, Message, MessageType
from rilke.replication.wire import WireItem

from .cluster import wait_until
from .partition_cluster import GROUP, Node, PartitionCluster, data_values, records_batch

PID = 9


def idempotent(i: int) -> bytes:
    return records_batch([b"r%d" % i], producer_id=PID, epoch=0, sequence=i)


def producer_rows(node: Node) -> list[list[int]]:
    return sorted(node.partition._producers.table.dump())


def test_a_cut_tail_leaves_no_sequence_behind_even_under_a_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            old = await cluster.wait_leader()
            for i in range(3):
                await old.partition.append(idempotent(i), ACKS_ALL)
            want = [b"r0", b"r1", b"r2"]
            await wait_until(
                lambda: all(data_values(n) == want for n in cluster.nodes.values()),
                what="every replica to hold the committed records",
            )
            followers = [n.node_id for n in cluster.followers()]
            for node_id in followers:
                await cluster.stop_node(node_id)
            # Alone, the leader writes the producer's next batch (acks=1), never committed.
            tail = await old.partition.append(idempotent(3), ACKS_LEADER)
            # It stops (its producer state snapshot is written as it closes).
            await cluster.stop_node(old.node_id)

            for node_id in followers:
                await cluster.restart_node(node_id)
            new = await cluster.wait_leader()
            for i in range(3):  # other writes fill the offsets past the cut tail
                await new.partition.append(records_batch([b"x%d" % i]), ACKS_ALL)
            assert new.log.log_end_offset > tail.last_offset + 1
            back = await cluster.restart_node(old.node_id)
            want += [b"x0", b"x1", b"x2"]
            await wait_until(
                lambda: all(data_values(n) == want for n in cluster.nodes.values()),
                what="the old leader's tail replaced",
            )
            # Every replica's producer state is the same (it is its log's).
            await wait_until(
                lambda: producer_rows(back) == producer_rows(new),
                what="the rejoined replica's producer state to be its log's",
            )
            assert producer_rows(back)[-1][3] == 2  # last sequence written: 2, not the cut 3

            # Led by the old leader again, the producer's retry of its batch 3 is written (it
            # is not in the log), never answered as a duplicate at the cut tail's offset.
            new.host.runtime.transfer_leadership(GROUP, back.node_id)
            await cluster.wait_leader(not_=new.node_id)
            assert back.partition.is_leader
            retry = await back.partition.append(idempotent(3), ACKS_ALL)
            assert not retry.duplicate
            want.append(b"r3")
            await wait_until(
                lambda: all(data_values(n) == want for n in cluster.nodes.values()),
                what="the retried batch on every replica",
            )
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_proposals_replaced_before_they_were_written_leave_the_table_with_the_log(
    tmp_path: Path,
) -> None:
    """A leader's proposal not yet written when a newer leader's append replaces it: the core
    reports no truncation (nothing of it was written), and the table, which recorded the
    proposal at once, must follow the log that is written instead: the new leader's batches
    recorded, the replaced one gone (else a retry of the new leader's batch is written
    twice if this node leads again, and the replaced producer is taken to be at sequence 2)."""

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await leader.partition.append(records_batch([b"c"]), ACKS_ALL)
            other = cluster.followers()[0]
            core = leader.host.runtime.node(GROUP)
            term, base = core.term, leader.log.log_end_offset
            commit = core.commit_index
            # No await from here to the receive: the proposal is not written when replaced.
            leader.partition.append(
                records_batch([b"a0", b"a1", b"a2"], producer_id=PID, epoch=0, sequence=0),
                ACKS_LEADER,
            ).add_done_callback(lambda f: f.exception())
            replacing = records_batch(
                [b"q0", b"q1", b"q2"], producer_id=PID + 1, epoch=0, sequence=0
            )
            entries = [
                Entry(term + 1, offsets.raft_index(base), b"", EntryKind.NO_OP, 1),
                Entry(term + 1, offsets.raft_index(base + 3), replacing, EntryKind.NORMAL, 3),
            ]
            append = Message(
                MessageType.APPEND,
                leader.node_id,
                other.node_id,
                term + 1,
                log_term=term,
                index=offsets.last_index(base),
                entries=entries,
                commit=commit,
            )
            leader.host.runtime.receive(other.node_id, [WireItem(GROUP, append)])
            await wait_until(
                lambda: leader.log.log_end_offset == base + 4, what="the replacing entries written"
            )
            rows = producer_rows(leader)
            assert [r for r in rows if r[0] == PID] == []
            assert [PID + 1, 0, 0, 2, base + 1] in rows
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_rebuild_while_leading_keeps_the_proposals_not_yet_written(tmp_path: Path) -> None:
    """The table rebuilt from the log while this leader has proposals the storage has not
    written yet (FINDINGS 3's open part): its next append first puts the core's unwritten
    entries back in, so a retry of one is answered as a duplicate, not written twice."""

    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await leader.partition.append(idempotent(0), ACKS_ALL)
            first = leader.partition.append(idempotent(1), ACKS_ALL)  # proposed, not written
            leader.partition._rebuild_producers()  # e.g. a failed write's rebuild
            retry = await leader.partition.append(idempotent(1), ACKS_ALL)
            original = await first
            assert retry.duplicate and retry.base_offset == original.base_offset
            assert data_values(leader) == [b"r0", b"r1"]
        finally:
            await cluster.close()

    asyncio.run(scenario())
