"""Each test is tied to a sentence of the Raft paper (section numbers of the extended version)
or of Ongaro's thesis, in the spirit of etcd's raft_paper_test.go."""

from __future__ import annotations

import random

import pytest

from rilke.errors import InvalidConfigError, NotLeaderError, ProposalDroppedError
from rilke.replication.raft import (
    CAMPAIGN_TRANSFER,
    NO_NODE,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    MessageType,
    RaftNode,
    Role,
)
from tests.unit.raft.harness import Cluster, config, msg

MT = MessageType


def lone_node(node_id: int = 1, voters: tuple[int, ...] = (1, 2, 3), **kw: object) -> RaftNode:
    return RaftNode(config(node_id, voters, **kw), MemoryStorage(), random.Random(node_id))


def node_with_log(
    terms: list[int], term: int, node_id: int = 1, voters: tuple[int, ...] = (1, 2, 3), **kw: object
) -> RaftNode:
    store = MemoryStorage()
    store.append([Entry(t, i + 1) for i, t in enumerate(terms)])
    store.set_hard_state(HardState(term, NO_NODE, 0))
    return RaftNode(config(node_id, voters, **kw), store, random.Random(node_id))


def drain(node: RaftNode) -> list:  # type: ignore[type-arg]
    """Handle one Ready in the I/O order; return what it sends."""
    rd = node.ready()
    node._log.storage.persist_ready(rd)  # type: ignore[attr-defined]
    node.advance(rd)
    return list(rd.messages) + list(rd.heartbeats)


def make_leader(node: RaftNode) -> None:
    """Elect ``node`` (of voters 1,2,3) with a vote from node 2."""
    node.campaign()
    drain(node)
    node.step(msg(MT.VOTE_RESP, 2, node.id, node.term))
    assert node.role is Role.LEADER


# --- 5.1 -----------------------------------------------------------------------------------------


def test_5_1_a_server_with_a_smaller_term_updates_it_and_a_leader_reverts_to_follower() -> None:
    """'If a candidate or leader discovers that its term is out of date, it immediately reverts
    to follower state.'"""
    node = lone_node()
    make_leader(node)
    node.step(msg(MT.APPEND, 3, 1, node.term + 1, log_term=0, index=0))
    assert node.role is Role.FOLLOWER
    assert node.term == 2
    assert node.leader_id == 3


def test_5_1_a_request_with_a_stale_term_is_rejected() -> None:
    """'If a server receives a request with a stale term number, it rejects the request.'"""
    node = lone_node()
    node.step(msg(MT.HEARTBEAT, 2, 1, 5))
    drain(node)
    node.step(msg(MT.APPEND, 3, 1, 4, log_term=0, index=0, entries=[Entry(4, 1)]))
    assert node.last_index == 0
    assert node.leader_id == 2


def test_5_1_with_prevote_a_stale_leader_is_told_the_newer_term() -> None:
    node = lone_node(pre_vote=True)
    node.step(msg(MT.HEARTBEAT, 2, 1, 5))
    drain(node)
    node.step(msg(MT.HEARTBEAT, 3, 1, 4))
    out = drain(node)
    assert [(m.type, m.to, m.term) for m in out] == [(MT.APPEND_RESP, 3, 5)]


# --- 5.2 -----------------------------------------------------------------------------------------


def test_5_2_a_follower_that_hears_nothing_starts_an_election() -> None:
    """'To begin an election, a follower increments its current term and transitions to
    candidate state. It then votes for itself and issues RequestVote RPCs in parallel.'"""
    node = lone_node()
    for _ in range(20):
        node.tick()
    assert node.role is Role.CANDIDATE
    assert node.term == 1 and node.vote == 1
    rd = node.ready()
    assert rd.hard_state == HardState(1, 1, 0)  # the self-vote is persisted with the requests
    assert sorted((m.type, m.to, m.term) for m in rd.messages) == [
        (MT.VOTE, 2, 1),
        (MT.VOTE, 3, 1),
    ]


def test_5_2_valid_rpcs_from_a_leader_keep_a_follower_a_follower() -> None:
    node = lone_node()
    for _ in range(50):
        node.tick()
        node.step(msg(MT.HEARTBEAT, 2, 1, 1))
    assert node.role is Role.FOLLOWER and node.leader_id == 2


def test_5_2_election_timeouts_are_randomized_in_t_to_2t() -> None:
    """'Raft uses randomized election timeouts ... chosen randomly from a fixed interval.'"""
    seen = set()
    for seed in range(40):
        node = RaftNode(config(1, (1, 2, 3)), MemoryStorage(), random.Random(seed))
        ticks = 0
        while node.role is Role.FOLLOWER:
            node.tick()
            ticks += 1
        assert 10 <= ticks < 20
        seen.add(ticks)
    assert len(seen) > 3


def test_5_2_each_server_votes_for_at_most_one_candidate_per_term() -> None:
    """'Each server will vote for at most one candidate in a given term, on a first-come-first-
    served basis.'"""
    node = lone_node()
    node.step(msg(MT.VOTE, 2, 1, 1, log_term=0, index=0))
    node.step(msg(MT.VOTE, 3, 1, 1, log_term=0, index=0))
    node.step(msg(MT.VOTE, 2, 1, 1, log_term=0, index=0))  # a retry is granted again
    out = drain(node)
    assert [(m.to, m.reject) for m in out] == [(2, False), (3, True), (2, False)]
    assert node.vote == 2


def test_5_2_a_candidate_with_a_majority_becomes_leader_and_appends_a_no_op() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    assert leader.term == 1
    entries = leader.log_entries(1, 1)
    assert entries[0].kind is EntryKind.NO_OP and entries[0].term == 1
    assert all(c.nodes[i].leader_id == 1 for i in (1, 2, 3))
    assert all(c.nodes[i].commit_index == 1 for i in (1, 2, 3))


def test_5_2_a_candidate_that_hears_from_a_leader_of_its_term_steps_down() -> None:
    node = lone_node()
    node.campaign()
    node.step(msg(MT.APPEND, 2, 1, 1, log_term=0, index=0))
    assert node.role is Role.FOLLOWER and node.leader_id == 2


def test_5_2_a_split_vote_leads_to_a_new_election_with_a_higher_term() -> None:
    node = lone_node()
    node.campaign()
    node.step(msg(MT.VOTE_RESP, 2, 1, 1, reject=True))
    node.step(msg(MT.VOTE_RESP, 3, 1, 1, reject=True))
    assert node.role is Role.FOLLOWER and node.term == 1
    for _ in range(20):
        node.tick()
    assert node.role is Role.CANDIDATE and node.term == 2


# --- 5.3 -----------------------------------------------------------------------------------------


def test_5_3_the_leader_commits_once_a_majority_stored_the_entry_and_followers_apply() -> None:
    """'Once the leader that created the entry has replicated it on a majority of the servers,
    the entry is committed ... the follower applies the entry to its local state machine.'"""
    c = Cluster(3)
    leader = c.elect(1)
    index = leader.propose(b"x")
    c.process(1)
    c.deliver_all(drop={3})
    c.process(2)
    c.deliver_all()
    c.process(1)
    assert leader.commit_index == index
    assert [e.data for e in c.applied[1]][-1] == b"x"
    c.stabilize()
    assert all(c.applied[i][-1].data == b"x" for i in (1, 2, 3))


def test_5_3_a_follower_rejects_an_append_whose_prev_entry_does_not_match() -> None:
    node = node_with_log([1, 1, 2], term=3)
    node.step(msg(MT.APPEND, 2, 1, 3, log_term=3, index=3, entries=[Entry(3, 4)]))
    out = drain(node)
    assert out[0].reject and out[0].index == 3
    # The hint: our last index of a term <= the leader's prev term.
    assert (out[0].reject_hint, out[0].hint_term) == (3, 2)
    assert node.last_index == 3


def test_5_3_a_follower_deletes_conflicting_entries_and_appends_the_new_ones() -> None:
    """'If an existing entry conflicts with a new one (same index but different terms), delete
    the existing entry and all that follow it.'"""
    node = node_with_log([1, 1, 2, 2], term=3)
    node.step(msg(MT.APPEND, 2, 1, 3, log_term=1, index=2, entries=[Entry(3, 3)], commit=3))
    rd = node.ready()
    assert rd.truncate_from == 3
    assert [(e.term, e.index) for e in rd.entries] == [(3, 3)]
    assert rd.messages[0].index == 3 and not rd.messages[0].reject
    assert node.commit_index == 3


def test_5_3_fast_backoff_reaches_figure_7_f_in_one_round_trip() -> None:
    """The leader of Figure 7 with follower (f): the follower's hint skips its terms 2 and 3."""
    c = Cluster(2)
    c.stores[1] = MemoryStorage()
    c.stores[1].append([Entry(t, i + 1) for i, t in enumerate([1, 1, 1, 4, 4, 5, 5, 6, 6, 6])])
    c.stores[1].set_hard_state(HardState(7, 0, 0))
    c.stores[2] = MemoryStorage()
    c.stores[2].append([Entry(t, i + 1) for i, t in enumerate([1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3])])
    c.stores[2].set_hard_state(HardState(7, 0, 0))
    c.start(1)
    c.start(2)
    leader = c.nodes[1]
    leader.campaign()
    rejections = 0
    for _ in range(10):
        c.process(1)
        c.process(2)
        rejections += sum(1 for m in c.pending if m.type is MT.APPEND_RESP and m.reject)
        c.deliver_all()
    assert leader.role is Role.LEADER
    assert rejections == 1
    assert c.nodes[2].log_entries(1, 11) == leader.log_entries(1, 11)


# --- 5.4 -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cand_term", "cand_index", "granted"),
    [(1, 5, False), (2, 2, False), (2, 3, True), (2, 4, True), (3, 1, True)],
)
def test_5_4_1_a_voter_denies_a_candidate_whose_log_is_less_up_to_date(
    cand_term: int, cand_index: int, granted: bool
) -> None:
    """'The voter denies its vote if its own log is more up-to-date than that of the
    candidate.'"""
    node = node_with_log([1, 2, 2], term=2)
    node.step(msg(MT.VOTE, 2, 1, 5, log_term=cand_term, index=cand_index))
    out = drain(node)
    assert out[0].reject is (not granted)


def test_5_4_2_a_leader_does_not_commit_an_entry_of_an_earlier_term_by_counting() -> None:
    """Figure 8: 'Raft never commits log entries from previous terms by counting replicas.'"""
    node = node_with_log([1, 2], term=3)
    node.campaign()
    drain(node)
    node.step(msg(MT.VOTE_RESP, 2, 1, 4))
    assert node.role is Role.LEADER and node.last_index == 3  # its no-op of term 4
    drain(node)  # the no-op is now durable on the leader
    node.step(msg(MT.APPEND_RESP, 2, 1, 4, index=2))
    node.step(msg(MT.APPEND_RESP, 3, 1, 4, index=2))
    assert node.commit_index == 0  # index 2 is on all three, but of term 2
    node.step(msg(MT.APPEND_RESP, 2, 1, 4, index=3))
    assert node.commit_index == 3  # committing the no-op commits index 2 too


def test_5_4_a_restarted_node_keeps_its_term_and_vote() -> None:
    c = Cluster(3)
    c.nodes[2].step(msg(MT.VOTE, 1, 2, 1, log_term=0, index=0))
    c.process(2)
    c.start(2)  # crash and restart from storage
    node = c.nodes[2]
    assert (node.term, node.vote) == (1, 1)
    node.step(msg(MT.VOTE, 3, 2, 1, log_term=0, index=0))
    assert drain(node)[0].reject


def test_a_leader_counts_its_own_entry_only_once_it_is_durable() -> None:
    """Messages are sent after persisting; a leader's own acknowledgement follows advance()."""
    c = Cluster(1)
    leader = c.elect(1)
    index = leader.propose(b"x")
    assert leader.commit_index < index
    rd = leader.ready()
    assert [e.data for e in rd.entries] == [b"x"] and not rd.committed_entries
    c.stores[1].persist_ready(rd)
    leader.advance(rd)
    assert leader.commit_index == index
    rd = leader.ready()
    assert [e.data for e in rd.committed_entries] == [b"x"]
    leader.advance(rd)


# --- thesis: PreVote, CheckQuorum, transfer, membership -------------------------------------------


def test_thesis_9_6_prevote_does_not_raise_the_term() -> None:
    node = lone_node(pre_vote=True)
    node.campaign()
    assert node.role is Role.PRE_CANDIDATE and node.term == 0
    out = drain(node)
    assert {(m.type, m.term) for m in out} == {(MT.PRE_VOTE, 1)}
    node.step(msg(MT.PRE_VOTE_RESP, 2, 1, 1))
    assert node.role is Role.CANDIDATE and node.term == 1


def test_thesis_9_6_a_prevote_is_granted_without_changing_the_voters_term() -> None:
    node = lone_node(node_id=2)
    node.step(msg(MT.PRE_VOTE, 1, 2, 1, log_term=0, index=0))
    out = drain(node)
    assert not out[0].reject and out[0].term == 1
    assert node.term == 0 and node.vote == NO_NODE


def test_check_quorum_a_follower_in_a_lease_ignores_vote_requests_unless_transferring() -> None:
    node = lone_node(node_id=2, check_quorum=True)
    node.step(msg(MT.HEARTBEAT, 1, 2, 1))
    drain(node)
    node.step(msg(MT.VOTE, 3, 2, 2, log_term=0, index=0))
    assert node.term == 1 and not drain(node)
    node.step(msg(MT.VOTE, 3, 2, 2, log_term=0, index=0, context=CAMPAIGN_TRANSFER))
    assert node.term == 2 and node.vote == 3


def test_check_quorum_an_isolated_leader_steps_down() -> None:
    c = Cluster(3, check_quorum=True)
    leader = c.elect(1)
    for _ in range(25):
        leader.tick()
        c.process(1)
        c.pending.clear()
    assert leader.role is Role.FOLLOWER


def test_leader_transfer_catches_up_the_target_then_it_wins() -> None:
    c = Cluster(3, check_quorum=True, pre_vote=True)
    leader = c.elect(1)
    leader.propose(b"x")
    c.process(1)
    c.deliver_all(drop={3})
    c.stabilize(drop={3})
    leader.transfer_leadership(3)
    with pytest.raises(ProposalDroppedError):
        leader.propose(b"y")
    c.stabilize()
    assert c.leaders() == [3]
    assert c.nodes[3].term == 2


def test_membership_one_change_at_a_time_and_only_after_an_own_term_commit() -> None:
    from rilke.replication.raft import ConfChange, ConfChangeType

    c = Cluster(3)
    leader = c.nodes[1]
    leader.campaign()
    c.process(1)
    c.deliver_all()
    c.process(2)
    c.process(3)
    c.deliver_all()
    assert leader.role is Role.LEADER
    change = ConfChange(ConfChangeType.ADD_LEARNER, 4)
    with pytest.raises(ProposalDroppedError):
        leader.propose_conf_change(change)  # its no-op is not committed yet
    c.stabilize()
    leader.propose_conf_change(change)
    with pytest.raises(ProposalDroppedError):
        leader.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, 3))
    assert 4 not in leader.conf.learners  # takes effect on commit
    c.start(4)  # joins with the group's bootstrap configuration
    c.stabilize()
    assert all(c.nodes[i].conf.learners == frozenset({4}) for i in (1, 2, 3, 4))


# --- proposals and configuration ------------------------------------------------------------------


def test_propose_off_the_leader_raises_not_leader() -> None:
    node = lone_node()
    with pytest.raises(NotLeaderError):
        node.propose(b"x")


def test_uncommitted_bytes_bound_refuses_proposals_with_a_retriable_error() -> None:
    c = Cluster(3, max_uncommitted_bytes=10)
    leader = c.elect(1)
    leader.propose(b"x" * 8)
    with pytest.raises(ProposalDroppedError) as info:
        leader.propose(b"y" * 8)
    assert info.value.retriable
    c.stabilize()
    assert leader.uncommitted_bytes == 0
    leader.propose(b"y" * 8)


def test_propose_a_list_of_batches_spanning_offsets() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    last = leader.propose([b"a", b"b", b"c"], offset_count=[2, 1, 5])
    assert last == 1 + 2 + 1 + 5
    c.stabilize()
    entries = c.nodes[3].log_entries(2, last)
    assert [(e.first_index, e.index) for e in entries] == [(2, 3), (4, 4), (5, 9)]
    assert all(n.commit_index == last for n in c.nodes.values())


def test_invalid_config_is_refused() -> None:
    with pytest.raises(InvalidConfigError):
        RaftNode(
            config(1, (1,), election_timeout_ticks=1, heartbeat_timeout_ticks=1),
            MemoryStorage(),
            random.Random(0),
        )
