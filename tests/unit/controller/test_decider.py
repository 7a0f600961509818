"""The controller leader's decisions: requests to records, validated against the state, and
the records applying cleanly (each test applies what it decides)."""

from __future__ import annotations

from collections import Counter

import pytest

from rilke.errors import (
    BrokerNotRegisteredError,
    DuplicateBrokerRegistrationError,
    InvalidMetadataRecordError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidRequestError,
    InvalidTopicError,
    StaleBrokerEpochError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from rilke.replication.controller.decider import (
    ControllerDecider,
    DeciderSettings,
    LeadershipReport,
)
from rilke.replication.controller.records import (
    NO_LEADER,
    BrokerFenced,
    BrokerRegistered,
    BrokerUnfenced,
    PartitionChanged,
)
from rilke.replication.controller.state import BrokerState, MetadataState
from tests.unit.controller.helpers import Log, cluster, decide_and_apply, decider_for

SESSION = DeciderSettings().session_timeout_ms


def test_bootstrap_once() -> None:
    log = Log()
    decider = ControllerDecider(log.state)
    decide_and_apply(log, decider.bootstrap("c-9", [3, 1, 2]))
    assert (log.state.cluster_id, log.state.voters) == ("c-9", (1, 2, 3))
    assert decider.bootstrap("c-9", [1]) == []
    with pytest.raises(InvalidRequestError, match="empty"):
        ControllerDecider(MetadataState()).bootstrap("", [1])


def test_create_topic_places_and_applies() -> None:
    log = cluster(3)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("orders", 6, 3, {"a": "b"}, "id-1"))
    topic = log.state.topics["orders"]
    assert len(topic.partitions) == 6 and topic.topic_id == "id-1"
    assert Counter(p.leader for p in topic.partitions) == {1: 2, 2: 2, 3: 2}
    assert all(p.isr == p.replicas and p.leader_epoch == 0 for p in topic.partitions)
    with pytest.raises(TopicAlreadyExistsError, match="'orders' already exists"):
        decider.create_topic("orders", 1, 1, {}, "id-2")
    with pytest.raises(InvalidRequestError, match="'id-1' is empty or taken"):
        decider.create_topic("other", 1, 1, {}, "id-1")
    with pytest.raises(InvalidTopicError, match="empty"):
        decider.create_topic("", 1, 1, {}, "id-3")
    with pytest.raises(InvalidReplicationFactorError, match="4 is larger than the number of live"):
        decider.create_topic("big", 1, 4, {}, "id-4")
    with pytest.raises(InvalidPartitionsError):
        decider.create_topic("none", 0, 1, {}, "id-5")


def test_the_servers_name_rules_are_used_when_given() -> None:
    def refuse(name: str, partitions: int) -> None:
        raise InvalidTopicError(f"no {name} with {partitions}")

    log = cluster(1)
    decider = ControllerDecider(log.state, validate_topic=refuse)
    with pytest.raises(InvalidTopicError, match="no x with 2"):
        decider.create_topic("x", 2, 1, {}, "i")


def test_fenced_brokers_get_no_replicas() -> None:
    log = cluster(3)
    decider = decider_for(log)
    decide_and_apply(log, decider.fence_expired(SESSION))  # all three expire
    assert log.state.live_brokers() == []
    with pytest.raises(InvalidReplicationFactorError, match=r"\(0: \[\]\)"):
        decider.create_topic("t", 1, 1, {}, "i")


def test_create_partitions_keeps_the_factor_and_balances() -> None:
    log = cluster(3)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("t", 2, 2, {}, "i"))
    decide_and_apply(log, decider.create_partitions("t", 6))
    parts = log.state.topics["t"].partitions
    assert len(parts) == 6 and all(len(p.replicas) == 2 for p in parts)
    assert Counter(p.leader for p in parts) == {1: 2, 2: 2, 3: 2}
    with pytest.raises(InvalidPartitionsError, match="has 6 partitions; the new count"):
        decider.create_partitions("t", 6)
    with pytest.raises(UnknownTopicOrPartitionError, match="'u' does not exist"):
        decider.create_partitions("u", 6)


def test_delete_and_alter_configs() -> None:
    log = cluster(1)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("t", 1, 1, {}, "i"))
    assert decider.alter_configs("t", {}) == []
    decide_and_apply(log, decider.alter_configs("t", {"retention.ms": "1"}))
    assert dict(log.state.topics["t"].configs) == {"retention.ms": "1"}
    decide_and_apply(log, decider.delete_topic("t"))
    assert "t" not in log.state.topics
    with pytest.raises(UnknownTopicOrPartitionError):
        decider.delete_topic("t")


def test_register_then_heartbeat_unfences() -> None:
    log = cluster(0)
    decider = decider_for(log)
    records = decider.register_broker(4, "10.0.0.4", 9292, "r", now_ms=0)
    assert records == [BrokerRegistered(4, "10.0.0.4", 9292, "r")]
    epoch = decide_and_apply(log, records) and log.next_offset - 1
    assert log.state.brokers[4].state is BrokerState.FENCED
    with pytest.raises(StaleBrokerEpochError, match="register again"):
        decider.heartbeat(4, epoch - 1, 10)
    with pytest.raises(BrokerNotRegisteredError):
        decider.heartbeat(5, 1, 10)
    assert decider.heartbeat(4, epoch, 10) == [BrokerUnfenced(4, epoch)]
    decide_and_apply(log, decider.heartbeat(4, epoch, 10))
    assert log.state.brokers[4].state is BrokerState.ALIVE
    assert decider.heartbeat(4, epoch, 20) == []


def test_a_live_broker_id_cannot_be_taken_from_another_address() -> None:
    log = cluster(1)
    decider = decider_for(log, now_ms=0)
    with pytest.raises(DuplicateBrokerRegistrationError, match=r"127\.0\.0\.1:9001"):
        decider.register_broker(1, "10.9.9.9", 1, None, now_ms=100)
    # Once its session has expired, the id may be taken over.
    records = decider.register_broker(1, "10.9.9.9", 1, None, now_ms=SESSION)
    decide_and_apply(log, records)
    assert log.state.brokers[1].host == "10.9.9.9"


def test_a_restarting_broker_gives_up_its_leaderships() -> None:
    log = cluster(2)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("t", 2, 2, {}, "i"))
    before = log.state.topics["t"].partitions
    decide_and_apply(log, decider.register_broker(1, "127.0.0.1", 9001, None, now_ms=5))
    for old, new in zip(before, log.state.topics["t"].partitions, strict=True):
        assert new.isr == (2,) and new.leader_epoch == old.leader_epoch
        assert new.leader == (NO_LEADER if old.leader == 1 else 2)
    assert log.state.brokers[1].state is BrokerState.FENCED


def test_fencing_takes_the_broker_out_and_leaves_electing_to_raft() -> None:
    log = cluster(3)
    decider = decider_for(log, now_ms=0)
    decide_and_apply(log, decider.create_topic("t", 3, 2, {}, "i"))
    before = log.state.topics["t"].partitions
    epochs = {b: log.state.brokers[b].epoch for b in (1, 2, 3)}
    for b in (2, 3):
        decider.heartbeat(b, epochs[b], SESSION - 1)
    assert decider.fence_expired(SESSION - 1) == []
    records = decider.fence_expired(SESSION)
    assert records[0] == BrokerFenced(1, epochs[1])
    decide_and_apply(log, records)
    after = log.state.topics["t"].partitions
    for old, new in zip(before, after, strict=True):
        if 1 in old.replicas:
            assert new.leader_epoch == old.leader_epoch  # no leader is made up here
            assert 1 not in new.isr and new.isr
            assert new.leader == (NO_LEADER if old.leader == 1 else old.leader)
        else:
            assert new == old
    assert log.state.leader_counts.get(1, 0) == 0
    # The partitions' Raft groups elected leaders at term 1: their reports are recorded.
    led = [p for p, part in enumerate(after) if part.leader == NO_LEADER]
    assert led
    survivor = next(r for r in after[led[0]].replicas if r != 1)
    report = LeadershipReport("t", led[0], 1, (1, 2, 3))
    records = decider.heartbeat(survivor, epochs[survivor], SESSION, [report])
    assert records == [PartitionChanged("i", led[0], survivor, 1, (survivor,))]  # 1 is fenced
    decide_and_apply(log, records)
    assert decider.fence_expired(SESSION * 5) != []  # 2 and 3 are silent now too


def test_the_last_in_sync_replica_keeps_its_place_and_leads_again_when_it_reports() -> None:
    log = cluster(1)
    decider = decider_for(log, now_ms=0)
    decide_and_apply(log, decider.create_topic("t", 2, 1, {}, "i"))
    decide_and_apply(log, decider.fence_expired(SESSION))
    parts = log.state.topics["t"].partitions
    assert all(p.leader == NO_LEADER and p.isr == (1,) and p.leader_epoch == 0 for p in parts)
    epoch = log.state.brokers[1].epoch
    assert decider.heartbeat(1, epoch, SESSION + 1) == [BrokerUnfenced(1, epoch)]
    reports = [LeadershipReport("t", p, 2, (1,)) for p in range(2)]
    records = decider.heartbeat(1, epoch, SESSION + 1, reports)
    assert records == [
        BrokerUnfenced(1, epoch),
        *(PartitionChanged("i", p, 1, 2, (1,)) for p in range(2)),
    ]
    decide_and_apply(log, records)
    assert all(p.leader == 1 for p in log.state.topics["t"].partitions)


def test_leadership_reports_record_what_raft_elected_and_ignore_stale_ones() -> None:
    log = cluster(3)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("t", 1, 3, {}, "i"))
    part = log.state.topics["t"].partitions[0]
    other = part.replicas[1]
    epoch = log.state.brokers[other].epoch

    def report(broker: int, term: int, isr: tuple[int, ...]) -> list[object]:
        return list(decider.leadership_changes(broker, [LeadershipReport("t", 0, term, isr)]))

    assert report(other, 3, (other,)) == [PartitionChanged("i", 0, other, 3, (other,))]
    decide_and_apply(
        log, decider.heartbeat(other, epoch, 1, [LeadershipReport("t", 0, 3, (other,))])
    )
    assert report(other, 3, (other,)) == []  # nothing new
    wanted = (1, 2, 3)  # in replica order
    assert report(other, 3, (3, 2, 1)) == [
        PartitionChanged("i", 0, other, 3, tuple(r for r in part.replicas if r in wanted))
    ]
    assert report(part.replicas[0], 3, (1, 2, 3)) == []  # term 3 has its leader
    assert report(part.replicas[0], 2, (1, 2, 3)) == []  # an older term
    assert report(part.replicas[0], 4, (1, 2, 3)) != []  # a newer one
    assert decider.leadership_changes(other, [LeadershipReport("nope", 0, 9, (1,))]) == []
    assert decider.leadership_changes(other, [LeadershipReport("t", 5, 9, (1,))]) == []
    decide_and_apply(log, decider.create_topic("u", 1, 1, {}, "j"))
    only = log.state.topics["u"].partitions[0].replicas[0]
    stranger = next(b for b in (1, 2, 3) if b != only)
    assert decider.leadership_changes(stranger, [LeadershipReport("u", 0, 9, (1,))]) == []


def test_decommissioning_takes_no_new_replicas_and_leaves_leaders_to_raft() -> None:
    log = cluster(4)
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("t", 3, 3, {}, "i"))
    before = log.state.topics["t"].partitions
    decide_and_apply(log, decider.decommission_broker(2))
    assert [p.leader for p in log.state.topics["t"].partitions] == [p.leader for p in before]
    assert log.state.brokers[2].state is BrokerState.DECOMMISSIONING
    # Every partition on broker 2 is moving off it (tests/unit/controller/test_moves.py).
    assert all(2 not in p.target for p in log.state.topics["t"].partitions if p.target)
    assert decider.decommission_broker(2) == []
    decide_and_apply(log, decider.create_topic("u", 4, 2, {}, "j"))
    assert all(2 not in p.replicas for p in log.state.topics["u"].partitions)
    assert decider.fence_expired(SESSION - 1) == []


def test_producer_id_blocks_are_unique_cluster_wide() -> None:
    log = cluster(3)
    decider = decider_for(log)
    blocks = []
    for b in (1, 2, 3, 1):
        records = decider.allocate_producer_ids(b)
        decide_and_apply(log, records)
        blocks.append(log.state.producer_id_blocks[b])
    assert blocks == [(0, 1000), (1000, 1000), (2000, 1000), (3000, 1000)]
    with pytest.raises(BrokerNotRegisteredError):
        decider.allocate_producer_ids(9)


def test_two_decisions_against_the_same_state_the_second_is_rejected_on_apply() -> None:
    log = cluster(1)
    decider = decider_for(log)
    first = decider.allocate_producer_ids(1)
    second = decider.allocate_producer_ids(1)
    decide_and_apply(log, first)
    with pytest.raises(InvalidMetadataRecordError, match="next free producer id is 1000"):
        decide_and_apply(log, second)
    a = decider.create_topic("t", 1, 1, {}, "i")
    b = decider.create_topic("t", 1, 1, {}, "j")
    decide_and_apply(log, a)
    with pytest.raises(InvalidMetadataRecordError, match="exists"):
        decide_and_apply(log, b)


def test_change_voters() -> None:
    log = cluster(1)
    decider = decider_for(log)
    decide_and_apply(log, decider.change_voters([2, 1]))
    assert log.state.voters == (1, 2)
    assert decider.change_voters([1, 2]) == []
    with pytest.raises(InvalidRequestError):
        decider.change_voters([1, 1])
