"""Scripted fault scenarios on the simulated cluster, each checked by the safety checker.

Every step of every test runs under the :class:`SafetyChecker` (a violation raises), and each
test asserts the behaviour the fault is about: PreVote and CheckQuorum keep a returning node
from disrupting a healthy leader, a minority cannot elect or commit, a split without a majority
stops and then recovers, an asymmetric link does not wedge the group, a crash loses exactly
the unsynced writes, and membership changes and leader transfers work under faults.
"""

from __future__ import annotations

import random

import pytest

from rilke.errors import RilkeError
from rilke.replication.raft import ConfChange, ConfChangeType, Role
from tests.sim.simulator.checker import SafetyViolation
from tests.sim.simulator.cluster import Cluster, SimNode
from tests.sim.simulator.faults import FaultKnobs
from tests.sim.simulator.network import LinkKnobs

ELECTION_MS = 10 * 10  # election_timeout_ticks * tick_ms


def _cluster(
    seed: str,
    voters: int = 3,
    spares: int = 0,
    link: LinkKnobs | None = None,
    compact_every: int = 0,
    config: dict[str, object] | None = None,
    **knobs: object,
) -> Cluster:
    settings = FaultKnobs(
        voters=voters,
        spares=spares,
        link=link or LinkKnobs(delay_min_ms=1, delay_max_ms=5),
        fsync_min_ms=0,
        fsync_max_ms=2,
        client_interval_ms=10,
    )
    if knobs:
        settings = FaultKnobs(**{**settings.__dict__, **knobs})
    cluster = Cluster(
        settings,
        lambda name: random.Random(f"{seed}/{name}"),
        compact_every=compact_every,
        config_overrides=config,
    )
    assert cluster.run_until(lambda: cluster.leader() is not None, 20 * ELECTION_MS)
    return cluster


def _leader(cluster: Cluster) -> SimNode:
    leader = cluster.leader()
    assert leader is not None and leader.raft is not None
    return leader


def _term(node: SimNode) -> int:
    assert node.raft is not None
    return node.raft.term


def _commit(node: SimNode) -> int:
    assert node.raft is not None
    return node.raft.commit_index


def _settle(cluster: Cluster, timeout_ms: int = 30 * ELECTION_MS) -> None:
    """Heal everything; wait until every proposal made so far is committed; then stop new
    proposals and wait until every member has the leader's commit index."""
    cluster.heal()
    assert cluster.run_until(
        lambda: cluster.leader() is not None and not cluster._pending_required, timeout_ms
    ), "proposals made before healing did not commit after it"
    cluster.max_pending = 0

    def caught_up() -> bool:
        leader = cluster.leader()
        if leader is None or leader.raft is None:
            return False
        members = leader.raft.conf.voters | leader.raft.conf.learners
        return all(
            _commit(n) == _commit(leader) for n in cluster.up_nodes() if n.node_id in members
        )

    assert cluster.run_until(caught_up, timeout_ms), "members did not catch up after healing"


def test_an_isolated_follower_returns_without_disrupting_the_leader() -> None:
    """PreVote: a cut-off follower cannot win a pre-vote, so its term does not grow, and when
    it comes back the leader keeps its term."""
    cluster = _cluster("isolated-follower")
    cluster.start_clients()
    leader = _leader(cluster)
    term = _term(leader)
    follower = next(n for n in cluster.up_nodes() if n is not leader)
    cluster.network.isolate(follower.node_id, cluster.nodes)
    cluster.run_for(20 * ELECTION_MS)
    assert _term(follower) == term, "an isolated node raised its term despite PreVote"
    assert follower.raft is not None and follower.raft.role is not Role.LEADER
    assert cluster.leader() is leader and _term(leader) == term
    _settle(cluster)
    assert cluster.leader() is leader and _term(leader) == term
    assert cluster.client.committed > 0


def test_without_prevote_and_check_quorum_the_returning_node_disrupts() -> None:
    """The control for the test above: with PreVote and CheckQuorum off, the same isolation
    raises the follower's term and its return deposes the leader (so the test above can fail)."""
    cluster = _cluster("isolated-follower", config={"pre_vote": False, "check_quorum": False})
    leader = _leader(cluster)
    term = _term(leader)
    follower = next(n for n in cluster.up_nodes() if n is not leader)
    cluster.network.isolate(follower.node_id, cluster.nodes)
    cluster.run_for(20 * ELECTION_MS)
    assert _term(follower) > term
    cluster.network.heal()
    cluster.run_for(10 * ELECTION_MS)
    new = cluster.leader()
    assert new is not None and _term(new) > term


def test_an_isolated_leader_steps_down_and_returns_as_a_follower() -> None:
    """CheckQuorum: the cut-off leader steps down; the others elect a new leader; the old one
    comes back as a follower without disrupting the new leader's term."""
    cluster = _cluster("isolated-leader")
    cluster.start_clients()
    old = _leader(cluster)
    term = _term(old)
    cluster.network.isolate(old.node_id, cluster.nodes)
    assert cluster.run_until(
        lambda: old.raft is not None and old.raft.role is not Role.LEADER, 5 * ELECTION_MS
    ), "the isolated leader did not step down (CheckQuorum)"
    assert cluster.run_until(lambda: cluster.leader() not in (None, old), 20 * ELECTION_MS), (
        "the majority did not elect a new leader"
    )
    new = _leader(cluster)
    new_term = _term(new)
    assert new_term > term
    cluster.run_for(10 * ELECTION_MS)
    _settle(cluster)
    assert cluster.leader() is new and _term(new) == new_term
    assert old.raft is not None and old.raft.leader_id == new.node_id


def test_a_minority_partition_cannot_elect_or_commit_while_the_majority_goes_on() -> None:
    cluster = _cluster("minority", voters=5)
    cluster.start_clients()
    leader = _leader(cluster)
    others = [n for n in sorted(cluster.nodes) if n != leader.node_id]
    minority = set(others[:2])
    majority = set(cluster.nodes) - minority
    cluster.network.partition([minority, majority])
    commit_before = max(_commit(cluster.nodes[m]) for m in minority)
    committed_before = cluster.client.committed
    cluster.run_for(20 * ELECTION_MS)
    for m in minority:
        node = cluster.nodes[m]
        assert node.raft is not None and node.raft.role is not Role.LEADER
        assert _term(node) == _term(leader), "a minority node raised its term despite PreVote"
        assert _commit(node) <= max(commit_before, _commit(leader))
    assert cluster.leader() is leader
    assert cluster.client.committed > committed_before, "the majority stopped committing"
    _settle(cluster)
    assert cluster.leader() is leader


def test_a_split_without_a_majority_stops_and_recovers_after_healing() -> None:
    cluster = _cluster("split", voters=5)
    cluster.start_clients()
    ids = sorted(cluster.nodes)
    cluster.network.partition([set(ids[:2]), set(ids[2:4]), {ids[4]}])
    # CheckQuorum: whoever led steps down; nobody can win an election in any group.
    assert cluster.run_until(lambda: cluster.leader() is None, 5 * ELECTION_MS)
    committed = cluster.client.committed
    cluster.run_for(20 * ELECTION_MS)
    assert cluster.leader() is None
    assert cluster.client.committed == committed
    _settle(cluster)
    assert cluster.client.committed > committed


def test_a_leader_that_cannot_hear_its_followers_is_replaced() -> None:
    """Asymmetric links: the leader's messages go out, nothing comes back. CheckQuorum makes it
    step down; the others elect a leader among themselves and keep committing."""
    cluster = _cluster("asymmetric", voters=3)
    cluster.start_clients()
    old = _leader(cluster)
    for other in cluster.nodes:
        cluster.network.block(other, old.node_id)
    assert cluster.run_until(lambda: cluster.leader() not in (None, old), 30 * ELECTION_MS), (
        "no new leader while the old one could not hear anyone"
    )
    committed = cluster.client.committed
    cluster.run_for(10 * ELECTION_MS)
    assert cluster.client.committed > committed
    _settle(cluster)


def test_one_lossy_direction_does_not_stop_commits() -> None:
    cluster = _cluster("lossy-link", voters=3)
    cluster.start_clients()
    leader = _leader(cluster)
    follower = next(n for n in sorted(cluster.nodes) if n != leader.node_id)
    cluster.network.set_link(
        leader.node_id, follower, LinkKnobs(delay_min_ms=1, delay_max_ms=5, loss_probability=0.7)
    )
    committed = cluster.client.committed
    cluster.run_for(20 * ELECTION_MS)
    assert cluster.client.committed > committed
    _settle(cluster)


def test_a_crash_loses_exactly_the_unsynced_writes() -> None:
    cluster = _cluster("crash", voters=3, slow_fsync_ms=200)
    leader = _leader(cluster)
    follower = next(n for n in cluster.up_nodes() if n is not leader)
    follower.slow_disk = True
    cluster.run_for(ELECTION_MS)
    assert follower.raft is not None
    cluster.propose_on(leader.node_id, [b"a", b"b", b"c"])
    # Wait until the follower holds the entries in memory but its disk has not caught up.
    assert cluster.run_until(
        lambda: (
            follower.raft is not None and follower.raft.last_index > follower.storage.last_index()
        ),
        5 * ELECTION_MS,
    )
    durable_last = follower.storage.last_index()
    durable_hard = follower.storage.hard_state
    cluster.crash(follower.node_id)
    assert follower.storage.last_index() == durable_last
    assert follower.storage.hard_state == durable_hard
    follower.slow_disk = False
    cluster.start(follower.node_id)
    assert follower.raft is not None and follower.raft.last_index == durable_last
    _settle(cluster)
    assert {b"a", b"b", b"c"} <= cluster.committed_payloads()


def test_the_leader_crashing_mid_write_loses_nothing_committed() -> None:
    cluster = _cluster("crash-leader", voters=5, compact_every=20)
    cluster.start_clients()
    for _ in range(6):
        cluster.run_for(5 * ELECTION_MS)
        leader = cluster.leader()
        if leader is not None:
            leader.slow_disk = True
            cluster.run_for(30)
            cluster.crash(leader.node_id)
            cluster.run_for(3 * ELECTION_MS)
            leader.slow_disk = False
            cluster.start(leader.node_id)
    _settle(cluster)
    assert cluster.checker.stats.restarts >= 3
    assert cluster.client.committed > 0


def test_membership_changes_and_leader_transfer_under_faults() -> None:
    """Add a learner while a follower is cut off and links lose messages, promote it once it
    caught up, hand it the leadership, remove a voter: one server at a time, all under the
    checker."""
    cluster = _cluster(
        "membership",
        voters=3,
        spares=2,
        link=LinkKnobs(delay_min_ms=1, delay_max_ms=8, loss_probability=0.05),
        compact_every=20,
    )
    cluster.start_clients()
    cluster.run_for(5 * ELECTION_MS)
    leader = _leader(cluster)
    cut = next(n for n in sorted(cluster.nodes) if n not in (leader.node_id, 4, 5))
    cluster.network.isolate(cut, cluster.nodes)

    def change(kind: ConfChangeType, node_id: int) -> None:
        def done() -> bool:
            lead = cluster.leader()
            if lead is None or lead.raft is None:
                return False
            conf = lead.raft.conf
            if kind is ConfChangeType.ADD_LEARNER:
                return node_id in conf.learners
            if kind is ConfChangeType.ADD_VOTER:
                return node_id in conf.voters
            return node_id not in conf.voters | conf.learners

        for _ in range(100):
            if done():
                return
            lead = cluster.leader()
            if lead is not None and lead.raft is not None:
                try:
                    lead.raft.propose_conf_change(ConfChange(kind, node_id))
                    cluster.after_input(lead)
                except Exception:  # refused for now (pending change, not caught up): retry
                    pass
            cluster.run_for(ELECTION_MS)
        raise AssertionError(f"{kind.value} {node_id} did not take effect")

    cluster.start(4)
    change(ConfChangeType.ADD_LEARNER, 4)
    change(ConfChangeType.ADD_VOTER, 4)
    cluster.network.heal()
    cluster.start(5)
    change(ConfChangeType.ADD_LEARNER, 5)
    # Leader transfer to the new voter, with message loss still on.
    for _ in range(50):
        lead = cluster.leader()
        if lead is not None and lead.node_id == 4:
            break
        if lead is not None and lead.raft is not None:
            try:
                lead.raft.transfer_leadership(4)
                cluster.after_input(lead)
            except Exception:
                pass
        cluster.run_for(ELECTION_MS)
    assert _leader(cluster).node_id == 4, "leadership did not move to the promoted learner"
    change(ConfChangeType.ADD_VOTER, 5)
    change(ConfChangeType.REMOVE_NODE, cut)
    conf = _leader(cluster).raft.conf  # type: ignore[union-attr]
    assert cut not in conf.voters and {4, 5} <= conf.voters and len(conf.voters) == 4
    _settle(cluster)
    assert cluster.faults.compactions > 0


def _stale_leader_read(read_lease: bool) -> Cluster:
    """Cut the leader off and pause it (its clock stops), let the others elect and commit,
    resume it still cut off, and ask it for a read."""
    cluster = _cluster("lease", voters=3, config={"read_lease": read_lease})
    cluster.start_clients()
    cluster.run_for(5 * ELECTION_MS)
    old = _leader(cluster)
    cluster.network.isolate(old.node_id, cluster.nodes)
    cluster.pause(old.node_id)
    assert cluster.run_until(lambda: cluster.leader() not in (None, old), 30 * ELECTION_MS)
    cluster.run_for(5 * ELECTION_MS)
    assert cluster.checker.max_committed() > _commit(old)
    cluster.resume(old.node_id)
    cluster._client_target = old.node_id
    cluster._read()
    cluster.run_for(ELECTION_MS // 2)
    return cluster


def test_a_lease_read_on_a_paused_leader_is_caught_as_stale() -> None:
    """The lease assumes clocks run at the same rate; a paused leader's clock stopped, so it
    serves a read from its expired lease and misses newer commits. The checker must see that
    (the core documents the limitation; the sweep runs lease reads without pauses)."""
    with pytest.raises(SafetyViolation, match="Linearizable read"):
        _stale_leader_read(read_lease=True)


def test_without_the_lease_a_paused_leader_serves_no_stale_read() -> None:
    cluster = _stale_leader_read(read_lease=False)
    assert cluster.reads_served > 0


def test_the_log_audit_compares_the_checker_copy_with_the_core() -> None:
    """The checks run on a copy of each log built from the Readies; the audit proves that copy
    is the core's log, and sees it when it is not."""
    cluster = _cluster("audit")
    cluster.start_clients()
    cluster.run_for(5 * ELECTION_MS)
    cluster.max_pending = 0
    cluster.run_for(5 * ELECTION_MS)
    for node in cluster.up_nodes():
        assert node.raft is not None and not node.raft.has_ready()
        cluster.audit_log(node)
    node = cluster.up_nodes()[0]
    assert node.raft is not None
    last = node.raft.last_index
    cluster.checker.on_write(node.node_id, last, [(last + 1, node.raft.term, "forged")])
    with pytest.raises(SafetyViolation, match="Ready contract"):
        cluster.audit_log(node)


def test_a_transfer_to_an_unreachable_node_is_abandoned_and_proposals_resume() -> None:
    """The leader stops taking proposals during a transfer; when the target is cut off, the
    transfer is abandoned after an election timeout and the same leader takes proposals again."""
    cluster = _cluster("transfer-unreachable", voters=3)
    leader = _leader(cluster)
    assert leader.raft is not None
    term = _term(leader)
    target = next(n for n in sorted(cluster.nodes) if n != leader.node_id)
    cluster.network.isolate(target, cluster.nodes)
    cluster.propose_on(leader.node_id, [b"x1"])  # the target now lags
    cluster.run_for(ELECTION_MS // 2)
    leader.raft.transfer_leadership(target)
    cluster.after_input(leader)
    with pytest.raises(RilkeError):
        leader.raft.propose(b"during-transfer")
    assert cluster.run_until(
        lambda: _proposal_accepted(leader, b"after-transfer"), 5 * ELECTION_MS
    ), "the leader never took proposals again after the transfer failed"
    assert cluster.leader() is leader and _term(leader) == term
    _settle(cluster)
    assert {b"x1", b"after-transfer"} <= cluster.committed_payloads()


def _proposal_accepted(node: SimNode, payload: bytes) -> bool:
    assert node.raft is not None
    try:
        node.raft.propose(payload)
    except RilkeError:
        return False
    return True


def test_a_single_voter_restarted_without_its_commit_still_reads_what_it_applied() -> None:
    """A commit-only hard state is written without an fsync (Ready.must_sync False), so a crash
    may take it back after the entries were applied and acknowledged. The restarted leader
    must not answer a read before an entry of its new term commits (thesis 6.4), or the read
    misses writes a client saw done."""
    cluster = _cluster("single-voter-read", voters=1)
    node = _leader(cluster)
    cluster.propose_on(node.node_id, [b"a", b"b"])
    assert cluster.run_until(lambda: cluster.checker.max_applied >= 2, 5 * ELECTION_MS)
    assert node.storage.hard_state.commit > node.synced_hard.commit
    cluster.crash(node.node_id)
    node.storage.set_hard_state(node.synced_hard)  # the crash took the unsynced commit back
    cluster.start(node.node_id)
    assert cluster.run_until(lambda: cluster.leader() is node, 20 * ELECTION_MS)
    cluster._client_target = node.node_id
    cluster._read()
    cluster.run_for(ELECTION_MS)
    assert cluster.reads_served == 1
