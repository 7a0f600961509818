"""The node's entry points: errors, the Ready contract, snapshots reported by the transport."""

from __future__ import annotations

import pytest

from rilke.errors import InvalidRequestError, NotLeaderError, ProposalDroppedError
from rilke.replication.raft import Entry, Message, MessageType, ProgressState, Role
from tests.unit.raft.harness import Cluster


def test_ready_must_be_advanced_before_the_next_one() -> None:
    c = Cluster(1)
    node = c.nodes[1]
    node.campaign()
    rd = node.ready()
    with pytest.raises(AssertionError):
        node.ready()
    node.advance(rd)


def test_inputs_between_ready_and_advance_are_kept_for_the_next_ready() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"a")
    rd = leader.ready()
    leader.propose(b"b")  # while the first Ready is being persisted
    c.stores[1].persist_ready(rd)
    leader.advance(rd)
    rd2 = leader.ready()
    assert [e.data for e in rd.entries] == [b"a"]
    assert [e.data for e in rd2.entries] == [b"b"]
    c.stores[1].persist_ready(rd2)
    c.pending.extend(list(rd.messages) + list(rd2.messages))
    leader.advance(rd2)
    c.stabilize()
    assert leader.commit_index == leader.last_index == 3


def test_read_index_errors() -> None:
    c = Cluster(3)
    with pytest.raises(NotLeaderError):
        c.nodes[2].read_index(b"r")
    leader = c.elect(1)
    with pytest.raises(InvalidRequestError):
        leader.read_index(b"")
    assert not leader.has_lease()


def test_read_index_pending_reads_are_bounded() -> None:
    c = Cluster(3, max_pending_reads=2)
    leader = c.elect(1)
    leader.read_index(b"a")
    leader.read_index(b"b")
    with pytest.raises(ProposalDroppedError):
        leader.read_index(b"c")
    c.stabilize()
    leader.read_index(b"c")


def test_transfer_leadership_errors() -> None:
    c = Cluster(3)
    with pytest.raises(NotLeaderError):
        c.nodes[2].transfer_leadership(3)
    c.elect(1)
    with pytest.raises(InvalidRequestError):
        c.nodes[1].transfer_leadership(9)


def test_a_failed_snapshot_report_puts_the_peer_back_to_probing() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    for i in range(5):
        leader.propose(b"%d" % i)
        c.process(1)
        c.deliver_all(drop={3})
        c.stabilize(drop={3})
    c.stores[1].compact(leader.commit_index - 1, leader.conf)
    c.pending.clear()
    # Node 3 answers a heartbeat: the leader finds it behind its log start.
    snaps = []
    for _ in range(10):
        leader.tick()
        for i in (1, 2, 3):
            c.process(i)
        snaps = [m for m in c.pending if m.type is MessageType.SNAPSHOT]
        if snaps:
            break
        c.deliver_all()
    assert snaps and leader.peer_status()[3].state is ProgressState.SNAPSHOT
    c.pending.clear()  # the snapshot is lost
    leader.report_snapshot(3, success=False)
    assert leader.peer_status()[3].state is ProgressState.PROBE
    for _ in range(3):
        leader.tick()
        c.stabilize()
    assert c.nodes[3].commit_index == leader.commit_index
    assert c.nodes[3].first_index == c.stores[1].first_index()


def test_a_lost_snapshot_is_retried_after_an_election_timeout() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"x")
    c.stabilize(drop={3})
    leader.propose(b"y")
    c.stabilize(drop={3})
    c.stores[1].compact(leader.commit_index, leader.conf)
    lost: set[int] = set()

    def keep(m: Message) -> bool:
        if m.type is not MessageType.SNAPSHOT or m.to in lost:
            return True
        lost.add(m.to)  # every snapshot is lost the first time
        return False

    for _ in range(30):
        leader.tick()
        for i in (1, 2, 3):
            c.process(i)
        c.pending = [m for m in c.pending if keep(m)]
        c.deliver_all()
    c.stabilize()
    assert c.nodes[3].commit_index == leader.commit_index
    assert c.nodes[3].role is Role.FOLLOWER
    assert lost == {3}


def test_a_full_window_of_lost_appends_past_the_log_start_is_recovered_by_a_snapshot() -> None:
    """Found by the simulation (seed 7015, lease): the leader's window to a follower filled
    with lost APPENDs, then retention dropped those entries; the empty probe the heartbeat
    answer triggers had no prev term to name, so nothing was ever sent again."""
    c = Cluster(3, max_inflight_msgs=2)
    leader = c.elect(1)
    for i in range(4):
        leader.propose(b"%d" % i)
        c.process(1)
        c.deliver_all(drop={3})  # every APPEND to node 3 is lost
        c.stabilize(drop={3})
    status = leader.peer_status()[3]
    assert status.state is ProgressState.REPLICATE and status.inflight_msgs == 2
    c.stores[1].compact(leader.commit_index, leader.conf)
    for _ in range(3):
        leader.tick()
        c.stabilize()
    assert c.nodes[3].commit_index == leader.commit_index
    assert c.nodes[3].first_index == c.stores[1].first_index()


def test_must_sync_only_for_entries_snapshots_and_term_or_vote() -> None:
    c = Cluster(3)
    node = c.nodes[2]
    node.step(Message(MessageType.VOTE, 2, 1, 1))
    rd = node.ready()
    assert rd.must_sync and rd.hard_state is not None and rd.hard_state.vote == 1
    node.advance(rd)
    node.step(Message(MessageType.APPEND, 2, 1, 1, entries=[Entry(1, 1)]))
    rd = node.ready()
    assert rd.must_sync and rd.entries
    c.stores[2].persist_ready(rd)
    node.advance(rd)
    node.step(Message(MessageType.HEARTBEAT, 2, 1, 1, commit=1))
    rd = node.ready()
    assert rd.hard_state is not None and rd.hard_state.commit == 1
    assert not rd.must_sync  # only the commit index moved
    node.advance(rd)


def test_a_snapshot_written_without_its_hard_state_is_the_commit_on_restart() -> None:
    """A crash between writing a Ready's snapshot and its hard state (the contract's order:
    snapshot first, hard state last) leaves a hard state whose commit is behind the snapshot.
    A snapshot holds only committed state, so the node restarts with the snapshot's index as
    its commit index instead of refusing the store (sim CORE_BUGS.md #2)."""
    import random

    from rilke.replication.raft import Config, ConfState, HardState, RaftNode, Snapshot
    from rilke.replication.raft.storage import MemoryStorage

    conf = ConfState(frozenset({1, 2, 3}))
    storage = MemoryStorage(conf)
    storage.apply_snapshot(Snapshot(791, 4, conf))
    storage.set_hard_state(HardState(term=5, vote=0, commit=767))
    node = RaftNode(Config(node_id=1, voters=(1, 2, 3)), storage, random.Random(1))
    assert node.commit_index == 791
    assert node.applied_index == 791
    assert node.term == 5
