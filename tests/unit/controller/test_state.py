"""The metadata state machine, directly: what each record does, what it refuses (changing
nothing), batches applied whole or not at all, and the same records giving the same state."""

from __future__ import annotations

import random

import pytest

from rilke.errors import InvalidMetadataRecordError
from rilke.replication.controller.records import (
    NO_LEADER,
    BrokerDecommissioned,
    BrokerFenced,
    BrokerRegistered,
    BrokerUnfenced,
    ClusterCreated,
    MetadataRecord,
    PartitionChanged,
    PartitionsAdded,
    ProducerIdsAllocated,
    TopicConfigsChanged,
    TopicCreated,
    TopicDeleted,
    VotersChanged,
)
from rilke.replication.controller.snapshot import encode_snapshot
from rilke.replication.controller.state import BrokerState, MetadataState, PartitionInfo
from tests.unit.controller.helpers import Log, cluster


def with_topic(partitions: int = 2) -> Log:
    log = cluster(3)
    log.append(
        [
            TopicCreated("orders", "t1", {"cleanup.policy": "compact"}),
            PartitionsAdded("t1", 0, tuple(((1, 2, 3), (2, 3, 1), (3, 1, 2))[:partitions])),
        ]
    )
    return log


def test_records_before_the_cluster_id_are_refused() -> None:
    log = Log()
    with pytest.raises(InvalidMetadataRecordError, match="must start with the cluster id"):
        log.append([BrokerRegistered(1, "h", 1)])
    assert log.state.brokers == {}
    assert log.state.applied_offset == 1  # the entry was consumed all the same
    log.append([ClusterCreated("c")])
    assert log.state.cluster_id == "c"
    with pytest.raises(InvalidMetadataRecordError, match="already has id 'c'"):
        log.append([ClusterCreated("d")])


def test_a_broker_registers_fenced_with_its_offset_as_epoch_and_unfences() -> None:
    log = cluster(0)
    epoch = log.append([BrokerRegistered(7, "h", 9000, "r1")])
    info = log.state.brokers[7]
    assert (info.state, info.epoch, info.rack) == (BrokerState.FENCED, epoch, "r1")
    with pytest.raises(InvalidMetadataRecordError, match="epoch is"):
        log.append([BrokerUnfenced(7, epoch - 1)])
    log.append([BrokerUnfenced(7, epoch)])
    assert log.state.brokers[7].state is BrokerState.ALIVE
    assert [b.broker_id for b in log.state.live_brokers()] == [7]
    with pytest.raises(InvalidMetadataRecordError, match="not fenced"):
        log.append([BrokerUnfenced(7, epoch)])
    log.append([BrokerFenced(7, epoch)])
    assert log.state.brokers[7].state is BrokerState.FENCED
    with pytest.raises(InvalidMetadataRecordError, match="not alive"):
        log.append([BrokerFenced(7, epoch)])
    log.append([BrokerDecommissioned(7)])
    assert log.state.brokers[7].state is BrokerState.DECOMMISSIONING
    with pytest.raises(InvalidMetadataRecordError, match="already decommissioning"):
        log.append([BrokerDecommissioned(7)])
    # A decommissioning broker that registers again stays decommissioning.
    log.append([BrokerRegistered(7, "h", 9001)])
    assert log.state.brokers[7].state is BrokerState.DECOMMISSIONING


@pytest.mark.parametrize(
    "record",
    [
        BrokerRegistered(-1, "h", 1),
        BrokerRegistered(1, "", 1),
        BrokerRegistered(1, "h", 0),
        BrokerRegistered(1, "h", 65536),
        BrokerFenced(99, 1),
        BrokerDecommissioned(99),
    ],
)
def test_bad_broker_records_are_refused(record: MetadataRecord) -> None:
    log = cluster(1)
    before = encode_snapshot(log.state)
    with pytest.raises(InvalidMetadataRecordError):
        log.append([record])
    log.state.applied_offset -= 1  # compare the rest
    assert encode_snapshot(log.state) == before


def test_a_topic_and_its_partitions() -> None:
    log = with_topic(2)
    topic = log.state.topics["orders"]
    assert topic.topic_id == "t1"
    assert dict(topic.configs) == {"cleanup.policy": "compact"}
    assert topic.partitions == (
        PartitionInfo((1, 2, 3), 1, 0, (1, 2, 3)),
        PartitionInfo((2, 3, 1), 2, 0, (2, 3, 1)),
    )
    assert log.state.replica_counts == {1: 2, 2: 2, 3: 2}
    assert log.state.leader_counts == {1: 1, 2: 1}
    log.append([PartitionsAdded("t1", 2, ((3, 1, 2),))])
    assert len(log.state.topics["orders"].partitions) == 3
    assert log.state.leader_counts == {1: 1, 2: 1, 3: 1}
    log.append([TopicConfigsChanged("t1", {"retention.ms": "5"})])
    assert dict(log.state.topics["orders"].configs) == {"retention.ms": "5"}


@pytest.mark.parametrize(
    ("record", "words"),
    [
        (TopicCreated("orders", "t2", {}), "topic 'orders' exists"),
        (TopicCreated("other", "t1", {}), "id 't1' is taken by 'orders'"),
        (TopicCreated("", "t9", {}), "empty topic name"),
        (PartitionsAdded("t1", 1, ((1,),)), "has 2 partitions, not 1"),
        (PartitionsAdded("t9", 0, ((1,),)), "no topic has id 't9'"),
        (PartitionsAdded("t1", 2, ()), "no partitions"),
        (PartitionsAdded("t1", 2, ((1, 1),)), "repeat a broker"),
        (PartitionsAdded("t1", 2, ((1,), (4,))), "replica 4 is not a registered broker"),
        (PartitionChanged("t1", 2, 1, 1, (1,)), "has no partition 2"),
        (PartitionChanged("t1", 0, 2, 0, (2,)), r"leader epoch is 0 \(leader 1\)"),
        (PartitionChanged("t1", 0, 1, -1, (1,)), "leader epoch is 0"),
        (PartitionChanged("t1", 0, 1, 1, ()), "not a non-empty subset"),
        (PartitionChanged("t1", 0, 1, 1, (1, 4)), "not a non-empty subset"),
        (PartitionChanged("t1", 0, 2, 1, (1,)), "leader 2 is not in the isr"),
        (TopicDeleted("t9"), "no topic has id"),
        (TopicConfigsChanged("t9", {}), "no topic has id"),
        (ProducerIdsAllocated(1, 5, 10), "next free producer id is 0"),
        (ProducerIdsAllocated(1, 0, 0), "count must be >= 1"),
        (ProducerIdsAllocated(9, 0, 10), "broker 9 is not registered"),
        (VotersChanged(()), "at least one"),
        (VotersChanged((1, 1)), "distinct"),
    ],
)
def test_records_that_do_not_fit_are_refused_and_change_nothing(
    record: MetadataRecord, words: str
) -> None:
    log = with_topic(2)
    before = encode_snapshot(log.state)
    version = log.state.version
    with pytest.raises(InvalidMetadataRecordError, match=words):
        log.append([record])
    assert log.state.version == version
    log.state.applied_offset -= 1
    assert encode_snapshot(log.state) == before


def test_the_leader_epoch_is_the_raft_term_one_leader_in_each() -> None:
    log = with_topic(1)
    log.append([PartitionChanged("t1", 0, 3, 4, (3, 1))])  # any higher term, any replica
    log.append([PartitionChanged("t1", 0, 3, 4, (1, 2, 3))])  # same leader: the isr changes
    log.append([PartitionChanged("t1", 0, NO_LEADER, 4, (1, 2))])  # fenced: leader unknown
    log.append([PartitionChanged("t1", 0, 3, 4, (1, 2, 3))])  # the same one is back
    with pytest.raises(InvalidMetadataRecordError, match="leader epoch is 4"):
        log.append([PartitionChanged("t1", 0, 2, 4, (2,))])
    with pytest.raises(InvalidMetadataRecordError, match="leader epoch is 4"):
        log.append([PartitionChanged("t1", 0, 2, 3, (2,))])
    part = log.state.topics["orders"].partitions[0]
    assert (part.leader, part.leader_epoch, part.isr) == (3, 4, (1, 2, 3))
    assert log.state.leader_counts == {1: 0, 3: 1}


def test_a_batch_applies_whole_or_not_at_all() -> None:
    log = with_topic(2)
    before = encode_snapshot(log.state)
    counts = dict(log.state.replica_counts), dict(log.state.leader_counts)
    bad = [
        PartitionChanged("t1", 0, 2, 1, (2, 3)),
        TopicCreated("new", "t2", {}),
        PartitionsAdded("t2", 0, ((1,), (2,))),
        ProducerIdsAllocated(1, 0, 100),
        PartitionChanged("t1", 0, 3, 1, (3,)),  # epoch 1 again: refused, all undone
    ]
    with pytest.raises(InvalidMetadataRecordError, match="leader epoch is 1"):
        log.append(bad)
    log.state.applied_offset -= len(bad)
    assert encode_snapshot(log.state) == before
    assert (log.state.replica_counts, log.state.leader_counts) == counts
    assert log.state.next_producer_id == 0


def test_many_changes_to_one_partition_in_one_batch() -> None:
    log = with_topic(2)
    log.append(
        [
            PartitionChanged("t1", 0, 2, 1, (2, 3)),
            PartitionChanged("t1", 0, NO_LEADER, 2, (3,)),
            PartitionChanged("t1", 0, 3, 3, (3,)),
            PartitionChanged("t1", 1, 3, 1, (3, 1)),
        ]
    )
    parts = log.state.topics["orders"].partitions
    assert parts[0] == PartitionInfo((1, 2, 3), 3, 3, (3,))
    assert parts[1] == PartitionInfo((2, 3, 1), 3, 1, (3, 1))
    assert log.state.leader_counts == {1: 0, 2: 0, 3: 2}


def test_deleting_a_topic_frees_its_name_id_and_counts() -> None:
    log = with_topic(2)
    log.append([PartitionChanged("t1", 0, 2, 1, (2,)), TopicDeleted("t1")])
    assert log.state.topics == {} and log.state.topic_names == {}
    assert set(log.state.replica_counts.values()) == {0}
    log.append([TopicCreated("orders", "t1", {}), PartitionsAdded("t1", 0, ((1,),))])
    assert log.state.topics["orders"].partitions == (PartitionInfo((1,), 1, 0, (1,)),)


def test_producer_id_blocks_are_handed_out_in_order() -> None:
    log = cluster(2)
    log.append([ProducerIdsAllocated(1, 0, 1000)])
    log.append([ProducerIdsAllocated(2, 1000, 1000)])
    with pytest.raises(InvalidMetadataRecordError):
        log.append([ProducerIdsAllocated(1, 1000, 1000)])  # overlaps broker 2's block
    assert log.state.next_producer_id == 2000
    assert log.state.producer_id_blocks == {1: (0, 1000), 2: (1000, 1000)}


def test_offsets_must_move_forward() -> None:
    log = cluster(1)
    with pytest.raises(InvalidMetadataRecordError, match="not after the last applied"):
        log.state.apply_batch([VotersChanged((1,))], log.state.applied_offset)


def _random_records(rng: random.Random, n: int) -> list[list[MetadataRecord]]:
    batches: list[list[MetadataRecord]] = [[ClusterCreated("c")]]
    for i in range(n):
        b = rng.randint(1, 4)
        choice = rng.randrange(7)
        record: MetadataRecord
        if choice == 0:
            record = BrokerRegistered(b, "h", 9000 + b)
        elif choice == 1:
            record = BrokerUnfenced(b, rng.randint(1, i + 2))
        elif choice == 2:
            record = TopicCreated(f"t{rng.randrange(5)}", f"id{rng.randrange(8)}", {})
        elif choice == 3:
            record = PartitionsAdded(f"id{rng.randrange(8)}", rng.randrange(3), ((b,),))
        elif choice == 4:
            record = PartitionChanged(f"id{rng.randrange(8)}", 0, b, rng.randrange(3), (b,))
        elif choice == 5:
            record = TopicDeleted(f"id{rng.randrange(8)}")
        else:
            record = ProducerIdsAllocated(b, rng.randrange(3) * 10, 10)
        if len(batches) > 1 and rng.random() < 0.3:
            batches[-1].append(record)
        else:
            batches.append([record])
    return batches


@pytest.mark.parametrize("seed", range(20))
def test_the_same_records_give_the_same_state(seed: int) -> None:
    """Determinism, refusals included: two states fed the same random (mostly invalid)
    batches agree after every batch, every refusal is the same on both, and a refused batch
    leaves the state as it was."""
    batches = _random_records(random.Random(seed), 300)
    a, b = MetadataState(), MetadataState()
    offset = 0
    applied = 0
    for batch in batches:
        offset += len(batch)
        outcomes = []
        for state in (a, b):
            before = encode_snapshot(state)
            try:
                state.apply_batch(batch, offset)
                outcomes.append("ok")
            except InvalidMetadataRecordError as e:
                outcomes.append(str(e))
                state.applied_offset -= len(batch)
                assert encode_snapshot(state) == before  # a refused batch changed nothing
                state.applied_offset += len(batch)
        assert outcomes[0] == outcomes[1]
        applied += outcomes[0] == "ok"
        assert encode_snapshot(a) == encode_snapshot(b)
    assert applied > 20  # the walk does reach states with topics and partitions
    assert a.topics or a.brokers
