"""Partition moves in the metadata: the reassignment records, the checks of a requested
replica set, and the rebalance and decommission planners (pure, deterministic: each test
applies what is decided, as the controller does)."""

from __future__ import annotations

from collections import Counter

import pytest

from rilke.errors import (
    BrokerNotRegisteredError,
    InvalidMetadataRecordError,
    InvalidReplicaAssignmentError,
    InvalidRequestError,
    ReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)
from rilke.replication.controller.moves import plan_decommission, plan_rebalance
from rilke.replication.controller.records import (
    NO_LEADER,
    BrokerFenced,
    BrokerRegistered,
    BrokerUnfenced,
    PartitionChanged,
    ReassignmentCompleted,
    ReassignmentStarted,
)
from rilke.replication.controller.snapshot import decode_snapshot, encode_snapshot
from rilke.replication.controller.state import BrokerState, MetadataState
from tests.unit.controller.helpers import Log, cluster, decide_and_apply, decider_for


def one_partition(brokers: int = 4, replicas: tuple[int, ...] = (1, 2, 3)) -> Log:
    log = cluster(brokers)
    decide_and_apply(log, decider_for(log).create_topic("t", 1, len(replicas), {}, "tid"))
    # Placement is deterministic; set the replicas the test names by a move's records.
    part = log.state.topics["t"].partitions[0]
    if part.replicas != replicas:
        log.append([ReassignmentStarted("tid", 0, replicas)])
        log.append([ReassignmentCompleted("tid", 0, replicas, replicas[0])])
    return log


def test_a_move_is_visible_while_it_runs_and_completes() -> None:
    log = one_partition()
    decider = decider_for(log)
    decide_and_apply(log, decider.reassign_partition("t", 0, [1, 2, 4]))
    part = log.state.topics["t"].partitions[0]
    assert (part.replicas, part.target) == ((1, 2, 3), (1, 2, 4))
    assert (part.adding, part.removing, part.members) == ((4,), (3,), (1, 2, 3, 4))
    # The leader's reports may name the new replica (a voter once promoted) meanwhile.
    log.append([PartitionChanged("tid", 0, 4, part.leader_epoch + 1, (1, 4))])
    part = log.state.topics["t"].partitions[0]
    assert (part.leader, part.target) == (4, (1, 2, 4))
    with pytest.raises(
        ReassignmentInProgressError, match=r"moving from \[1, 2, 3\] to \[1, 2, 4\]"
    ):
        decider.reassign_partition("t", 0, [1, 3, 4])
    decide_and_apply(log, decider.complete_reassignment("t", 0, [1, 2, 4], 4))
    part = log.state.topics["t"].partitions[0]
    assert (part.replicas, part.target, part.leader) == ((1, 2, 4), (), 4)
    assert set(part.isr) == {1, 4}  # 2 was out of sync; 4 joined in sync
    assert log.state.replica_counts[3] == 0 and log.state.replica_counts[4] == 1
    # A retried report changes nothing; a report of another move is refused.
    assert decider.complete_reassignment("t", 0, [1, 2, 4], 4) == []
    with pytest.raises(InvalidRequestError, match=r"no move to \[1, 2, 3\] runs"):
        decider.complete_reassignment("t", 0, [1, 2, 3], 1)


def test_completing_without_the_old_leader_leaves_no_leader_until_reported() -> None:
    log = one_partition()
    part = log.state.topics["t"].partitions[0]
    log.append([PartitionChanged("tid", 0, 3, part.leader_epoch + 1, (1, 2, 3))])
    log.append([ReassignmentStarted("tid", 0, (1, 2, 4))])
    log.append([ReassignmentCompleted("tid", 0, (1, 2, 4), 1)])
    part = log.state.topics["t"].partitions[0]
    assert part.leader == NO_LEADER and part.isr == (1, 2, 4)


@pytest.mark.parametrize(
    ("replicas", "force", "error", "match"),
    [
        ([], False, InvalidReplicaAssignmentError, "empty"),
        ([1, 1, 2], False, InvalidReplicaAssignmentError, "twice"),
        ([1, 2, 9], False, InvalidReplicaAssignmentError, r"\[9\] are not registered"),
        ([1, 2], False, InvalidReplicaAssignmentError, "pass --force"),
        ([1, 2, 3, 4], False, InvalidReplicaAssignmentError, "has 3 replicas"),
    ],
)
def test_bad_targets_are_refused_and_change_nothing(
    replicas: list[int], force: bool, error: type[Exception], match: str
) -> None:
    log = one_partition()
    before = encode_snapshot(log.state)
    with pytest.raises(error, match=match):
        decider_for(log).reassign_partition("t", 0, replicas, force=force)
    assert encode_snapshot(log.state) == before


def test_unknown_topic_partition_and_unavailable_brokers() -> None:
    log = one_partition(brokers=5)
    decider = decider_for(log)
    with pytest.raises(UnknownTopicOrPartitionError, match="'nope' does not exist"):
        decider.reassign_partition("nope", 0, [1, 2, 3])
    with pytest.raises(UnknownTopicOrPartitionError, match=r"no partition 3 \(it has 1: 0..0\)"):
        decider.reassign_partition("t", 3, [1, 2, 3])
    epoch = log.state.brokers[4].epoch
    log.append([BrokerFenced(4, epoch)])
    with pytest.raises(InvalidReplicaAssignmentError, match="broker 4 is fenced"):
        decider.reassign_partition("t", 0, [1, 2, 4])
    decide_and_apply(log, decider.decommission_broker(5))
    with pytest.raises(InvalidReplicaAssignmentError, match="broker 5 is decommissioning"):
        decider.reassign_partition("t", 0, [1, 2, 5])
    # A replica that is fenced may stay; the factor may change with force.
    log.append([BrokerUnfenced(4, epoch)])
    decide_and_apply(log, decider.reassign_partition("t", 0, [3, 4], force=True))
    assert log.state.topics["t"].partitions[0].target == (3, 4)


def test_reordering_only_is_a_move_and_the_same_list_is_nothing() -> None:
    log = one_partition()
    decider = decider_for(log)
    assert decider.reassign_partition("t", 0, [1, 2, 3]) == []
    decide_and_apply(log, decider.reassign_partition("t", 0, [3, 1, 2]))
    assert log.state.topics["t"].partitions[0].target == (3, 1, 2)


@pytest.mark.parametrize(
    ("record", "match"),
    [
        (ReassignmentStarted("tid", 0, (1, 2, 3)), "already"),
        (ReassignmentStarted("tid", 0, ()), "empty"),
        (ReassignmentStarted("tid", 0, (1, 7)), "broker 7 is not registered"),
        (ReassignmentStarted("tid", 5, (1, 2, 4)), "no partition 5"),
        (ReassignmentStarted("other", 0, (1, 2, 4)), "no topic has id"),
        (ReassignmentCompleted("tid", 0, (1, 2, 4), 1), r"running move is to \[\]"),
    ],
)
def test_the_state_machine_rejects_records_that_do_not_fit(
    record: ReassignmentStarted | ReassignmentCompleted, match: str
) -> None:
    log = one_partition()
    before = dict(log.state.topics), dict(log.state.replica_counts)
    with pytest.raises(InvalidMetadataRecordError, match=match):
        log.append([record])
    assert (dict(log.state.topics), dict(log.state.replica_counts)) == before


def test_the_state_machine_rejects_a_second_move_and_a_stranger_reporter() -> None:
    log = one_partition()
    log.append([ReassignmentStarted("tid", 0, (1, 2, 4))])
    with pytest.raises(InvalidMetadataRecordError, match="is running"):
        log.append([ReassignmentStarted("tid", 0, (1, 3, 4))])
    with pytest.raises(InvalidMetadataRecordError, match="reporter 3 is not"):
        log.append([ReassignmentCompleted("tid", 0, (1, 2, 4), 3)])


def test_a_running_move_survives_a_snapshot() -> None:
    log = one_partition()
    log.append([ReassignmentStarted("tid", 0, (4, 2, 1))])
    restored = decode_snapshot(encode_snapshot(log.state))
    assert restored.topics["t"].partitions[0].target == (4, 2, 1)
    assert encode_snapshot(restored) == encode_snapshot(log.state)
    restored.apply_batch(
        [ReassignmentCompleted("tid", 0, (4, 2, 1), 1)], restored.applied_offset + 1
    )
    assert restored.topics["t"].partitions[0].replicas == (4, 2, 1)


# --- rebalance ---------------------------------------------------------------------------


def add_broker(log: Log, broker: int) -> None:
    epoch = log.append([BrokerRegistered(broker, "127.0.0.1", 9000 + broker)])
    log.append([BrokerUnfenced(broker, epoch)])


def complete_all(log: Log) -> None:
    for topic in log.state.topics.values():
        for p, part in enumerate(topic.partitions):
            if part.target:
                log.append([ReassignmentCompleted(topic.topic_id, p, part.target, part.target[0])])


def spread(state: MetadataState) -> tuple[Counter[int], Counter[int]]:
    replicas: Counter[int] = Counter()
    leaders: Counter[int] = Counter()
    for topic in state.topics.values():
        for part in topic.partitions:
            replicas.update(part.replicas)
            leaders[part.replicas[0]] += 1
    return replicas, leaders


def test_rebalance_spreads_replicas_and_preferred_leaders_onto_a_new_broker() -> None:
    log = cluster(3)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("a", 6, 3, {}, "ia"))
    decide_and_apply(log, decider.create_topic("b", 4, 2, {}, "ib"))
    add_broker(log, 4)
    assert decider.rebalance() != []
    plan = plan_rebalance(log.state)
    assert plan == plan_rebalance(log.state)  # deterministic
    before = {
        (n, p): part.replicas
        for n, t in log.state.topics.items()
        for p, part in enumerate(t.partitions)
    }
    # Each move keeps the factor and changes at most one broker of the set.
    for name, p, target in plan:
        assert len(target) == len(before[(name, p)])
        assert len(set(target) - set(before[(name, p)])) <= 1
    decide_and_apply(log, decider.rebalance())
    assert decider.rebalance() == []  # nothing more while the moves run
    complete_all(log)
    replicas, leaders = spread(log.state)
    assert max(replicas.values()) - min(replicas.values()) <= 1 and replicas[4] >= 6
    assert set(leaders) == {1, 2, 3, 4}
    assert max(leaders.values()) - min(leaders.values()) <= 1
    assert decider.rebalance() == []  # balanced


def test_rebalance_leaves_degraded_partitions_and_a_single_broker_alone() -> None:
    log = cluster(1)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("a", 2, 1, {}, "ia"))
    assert decider.rebalance() == []
    add_broker(log, 2)
    add_broker(log, 3)
    log.append([BrokerFenced(1, log.state.brokers[1].epoch)])
    assert plan_rebalance(log.state) == []  # every partition has its replica on a fenced one


# --- decommission ------------------------------------------------------------------------


def test_decommission_moves_every_replica_off_the_broker() -> None:
    log = cluster(4)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("a", 8, 3, {}, "ia"))
    before = [p.replicas for p in log.state.topics["a"].partitions]
    decide_and_apply(log, decider.decommission_broker(2))
    assert log.state.brokers[2].state is BrokerState.DECOMMISSIONING
    for old, part in zip(before, log.state.topics["a"].partitions, strict=True):
        if 2 not in old:
            assert part.target == ()
            continue
        assert 2 not in part.target and len(part.target) == 3
        # The replicas that stay keep their order, the newcomer goes last.
        assert part.target[:2] == tuple(b for b in old if b != 2)
    complete_all(log)
    assert all(2 not in p.replicas for p in log.state.topics["a"].partitions)
    assert log.state.replica_counts.get(2, 0) == 0
    assert decider.decommission_broker(2) == []


def test_decommission_that_cannot_be_done_changes_nothing() -> None:
    log = cluster(3)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("a", 2, 3, {}, "ia"))
    before = encode_snapshot(log.state)
    with pytest.raises(InvalidReplicaAssignmentError, match="no other live broker is free"):
        decider.decommission_broker(3)
    assert encode_snapshot(log.state) == before
    with pytest.raises(BrokerNotRegisteredError):
        decider.decommission_broker(9)


def test_decommission_waits_for_a_move_that_keeps_the_broker() -> None:
    log = one_partition(brokers=5)
    decider = decider_for(log)
    decide_and_apply(log, decider.reassign_partition("t", 0, [1, 2, 4]))
    with pytest.raises(ReassignmentInProgressError, match="keeps a replica on broker 4"):
        decider.decommission_broker(4)
    # A running move that already takes the replica off is left to do so.
    assert plan_decommission(log.state, 3) == []


def test_rebalance_keeps_a_partitions_replicas_on_distinct_racks() -> None:
    log = cluster(3, racks=["a", "b", "c"])
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("t", 6, 3, {}, "it"))
    epoch = log.append([BrokerRegistered(4, "127.0.0.1", 9004, "a")])
    log.append([BrokerUnfenced(4, epoch)])
    rack = {b.broker_id: b.rack for b in log.state.brokers.values()}
    decide_and_apply(log, decider.rebalance())
    complete_all(log)
    replicas, _leaders = spread(log.state)
    # Broker 4 (rack a) takes replicas from broker 1 (rack a) only, never from b or c.
    assert replicas[4] == 3 and replicas[1] == 3 and replicas[2] == replicas[3] == 6
    for part in log.state.topics["t"].partitions:
        assert len({rack[b] for b in part.replicas}) == 3, part.replicas
    assert decider.rebalance() == []


# --- cancel ------------------------------------------------------------------------------


def test_a_running_move_is_cancelled_back_to_its_replicas() -> None:
    log = one_partition(4, (1, 2, 3))
    decider = decider_for(log)
    with pytest.raises(InvalidRequestError, match="no move runs"):
        decider.cancel_reassignment("t", 0)
    decide_and_apply(log, decider.reassign_partition("t", 0, [1, 2, 4]))
    assert log.state.topics["t"].partitions[0].members == (1, 2, 3, 4)
    decide_and_apply(log, decider.cancel_reassignment("t", 0))
    part = log.state.topics["t"].partitions[0]
    # The target is the replicas again: broker 4 is no longer a member (its replica goes),
    # and the leader's steps remove what the move added (see test_move_steps).
    assert (part.replicas, part.target, part.members) == ((1, 2, 3), (1, 2, 3), (1, 2, 3))
    assert decider.cancel_reassignment("t", 0) == []  # cancelled already
    # A cancelled move survives a snapshot, and completes as any move does.
    restored = decode_snapshot(encode_snapshot(log.state))
    assert restored.topics["t"].partitions[0].target == (1, 2, 3)
    decide_and_apply(log, decider.complete_reassignment("t", 0, [1, 2, 3], 1))
    part = log.state.topics["t"].partitions[0]
    assert (part.replicas, part.target) == ((1, 2, 3), ())
    with pytest.raises(UnknownTopicOrPartitionError):
        decider.cancel_reassignment("t", 5)
