"""A replica whose state was lost (data dir wiped) while its group lived on: it must not vote
until a leader has caught it up (Config.storage_lost, HardState.recovering).

The scenario: node 1 leads term 1 with node 2's vote and commits "x" on nodes 1 and 2 (node 3
cut off, still at term 0). Node 2 loses its storage and restarts; node 1 is cut off; node 3
campaigns in term 1. Without the rule node 2, empty and at term 0, grants: two leaders in term
1, and the new one lacks the committed "x".
"""

from __future__ import annotations

import random

from rilke.replication.raft import ConfState, MemoryStorage, MessageType, RaftNode, Role
from tests.unit.raft.harness import Cluster, config, msg

MT = MessageType


def _cluster_with_x_committed_on_1_and_2() -> Cluster:
    c = Cluster(3)
    c.nodes[1].campaign()  # term 1, node 3 cut off: node 2's vote elects it
    c.stabilize(drop={3})
    leader = c.nodes[1]
    assert leader.role is Role.LEADER and leader.term == 1
    assert c.stores[2].hard_state.vote == 1
    leader.propose(b"x")
    c.stabilize(drop={3})
    assert leader.commit_index == leader.last_index
    assert [e.data for e in c.stores[2].all_entries() if e.data] == [b"x"]
    return c


def _wipe_and_restart(c: Cluster, node_id: int, *, storage_lost: bool) -> None:
    c.stores[node_id] = MemoryStorage(ConfState(frozenset(c.bootstrap)))
    cfg = config(node_id, c.bootstrap, storage_lost=storage_lost)
    c.nodes[node_id] = RaftNode(cfg, c.stores[node_id], random.Random(node_id))
    c.applied[node_id] = []


def _node_3_campaigns_without_node_1(c: Cluster) -> None:
    c.pending = []
    c.nodes[3].campaign()
    c.stabilize(drop={1})


def test_without_the_rule_a_wiped_voter_elects_a_second_leader_in_the_term() -> None:
    """What the rule prevents (the core's behaviour for a replica not told of its loss)."""
    c = _cluster_with_x_committed_on_1_and_2()
    _wipe_and_restart(c, 2, storage_lost=False)
    _node_3_campaigns_without_node_1(c)
    assert c.nodes[3].role is Role.LEADER and c.nodes[3].term == 1
    assert c.nodes[1].role is Role.LEADER and c.nodes[1].term == 1  # two leaders of term 1
    assert b"x" not in [e.data for e in c.nodes[3].log_entries(1, c.nodes[3].last_index)]


def test_a_recovering_voter_grants_nothing_and_does_not_campaign() -> None:
    c = _cluster_with_x_committed_on_1_and_2()
    _wipe_and_restart(c, 2, storage_lost=True)
    node2 = c.nodes[2]
    assert node2.recovering
    _node_3_campaigns_without_node_1(c)
    assert c.nodes[3].role is not Role.LEADER
    assert c.leaders() == [1]
    assert node2.vote == 0 and node2.recovering
    # Its recovery is durable: a restart before it caught up still recovers.
    assert c.stores[2].hard_state.recovering
    c.start(2)
    node2 = c.nodes[2]
    assert node2.recovering
    # Pre-votes are refused too, and its own timeouts start nothing.
    node2.step(msg(MT.PRE_VOTE, 3, 2, node2.term + 1, index=10, log_term=9))
    answers = c.take(2)
    assert [(m.type, m.reject) for m in answers] == [(MT.PRE_VOTE_RESP, True)]
    for _ in range(100):
        node2.tick()
    assert node2.role is Role.FOLLOWER
    assert all(m.type not in (MT.VOTE, MT.PRE_VOTE) for m in c.take(2))


def test_a_recovering_voter_votes_again_once_a_leader_caught_it_up() -> None:
    c = _cluster_with_x_committed_on_1_and_2()
    _wipe_and_restart(c, 2, storage_lost=True)
    _node_3_campaigns_without_node_1(c)
    c.pending = []
    # The network heals: leader 1 (term 1) is heard again and catches node 2 up.
    c.nodes[1].tick()
    c.stabilize()
    node2 = c.nodes[2]
    assert not node2.recovering
    assert (node2.term, node2.vote) == (1, 1)  # the leader it followed is its vote in term 1
    assert c.stores[2].hard_state.recovering is False
    assert c.stores[2].hard_state.vote == 1
    assert [e.data for e in c.stores[2].all_entries() if e.data] == [b"x"]
    assert c.leaders() == [1]
    # From the next term on it votes as usual: node 3 (now holding "x") can be elected.
    c.stabilize()
    c.nodes[3].campaign()
    c.stabilize(drop={1})
    assert c.nodes[3].role is Role.LEADER and c.nodes[3].term == 2
    assert b"x" in [e.data for e in c.nodes[3].log_entries(1, c.nodes[3].last_index)]


def test_a_stale_leader_does_not_end_the_recovery() -> None:
    """A leader of an older term than one the recovering node has heard of is refused."""
    c = _cluster_with_x_committed_on_1_and_2()
    _wipe_and_restart(c, 2, storage_lost=True)
    node2 = c.nodes[2]
    node2.step(msg(MT.VOTE, 3, 2, 5, index=1, log_term=1))  # term 5 heard of, refused
    assert node2.term == 5 and node2.vote == 0
    c.take(2)
    c.pending = []
    c.nodes[1].tick()  # leader 1 of term 1 heartbeats
    c.process(1)
    c.deliver_all()
    c.process(2)
    assert node2.recovering and node2.term == 5


def test_the_only_voter_of_its_group_does_not_wait_for_anyone() -> None:
    node = RaftNode(config(1, (1,), storage_lost=True), MemoryStorage(), random.Random(1))
    assert not node.recovering
    node.campaign()
    assert node.role is Role.LEADER
