"""A snapshot keeps what every record type changes: a state built from records of every type
round-trips through the snapshot field by field, and a restored state applies the tail to
the same state as a full replay.

If a new record type is added to ``records.RECORD_TYPES``, this test fails until a record of
it is added below (and, if it changes state the snapshot does not yet carry, snapshot.py).
"""

from __future__ import annotations

from typing import Any

from rilke.replication.controller.records import (
    NO_LEADER,
    RECORD_TYPES,
    BrokerDecommissioned,
    BrokerFenced,
    BrokerRegistered,
    BrokerUnfenced,
    ClusterCreated,
    MetadataRecord,
    PartitionChanged,
    PartitionsAdded,
    ProducerIdsAllocated,
    ReassignmentCompleted,
    ReassignmentStarted,
    TopicConfigsChanged,
    TopicCreated,
    TopicDeleted,
    VotersChanged,
)
from rilke.replication.controller.snapshot import decode_snapshot, encode_snapshot
from rilke.replication.controller.state import MetadataState

# The state's bookkeeping that is not metadata (rebuilt, or only meaningful mid-batch).
_NOT_STATE = {"version", "_undo", "_editing"}


def every_record_type() -> list[list[MetadataRecord]]:
    """Entries (batches) holding at least one record of every type, applied in order."""
    return [
        [ClusterCreated("c-every")],
        [VotersChanged((1, 2, 3))],
        [BrokerRegistered(1, "10.0.0.1", 9292, "r1", "k1.example", 9092)],  # epoch 3, Kafka too
        [BrokerRegistered(2, "10.0.0.2", 9292, "r2")],  # epoch 4
        [BrokerRegistered(3, "10.0.0.3", 9292, None)],  # epoch 5
        [BrokerUnfenced(1, 3), BrokerUnfenced(2, 4), BrokerUnfenced(3, 5)],
        [
            TopicCreated("orders", "id-orders", {"retention.ms": "60000"}),
            PartitionsAdded("id-orders", 0, ((1, 2, 3), (2, 3, 1))),
        ],
        [TopicCreated("gone", "id-gone", {}), PartitionsAdded("id-gone", 0, ((3,),))],
        [PartitionsAdded("id-orders", 2, ((3, 1, 2),))],
        [PartitionChanged("id-orders", 1, 3, 1, (3, 1))],
        [PartitionChanged("id-orders", 2, NO_LEADER, 1, (3,))],
        [ReassignmentStarted("id-orders", 0, (2, 3, 1))],
        [ReassignmentCompleted("id-orders", 0, (2, 3, 1), 1)],
        [ReassignmentStarted("id-orders", 1, (3, 1, 2))],  # still running
        [TopicConfigsChanged("id-orders", {"cleanup.policy": "compact"})],
        [TopicDeleted("id-gone")],
        [ProducerIdsAllocated(2, 0, 1000), ProducerIdsAllocated(1, 1000, 500)],
        [BrokerFenced(3, 5)],
        [BrokerDecommissioned(2)],
        [BrokerRegistered(3, "10.0.0.33", 9393, "r3")],  # a new incarnation
    ]


def fields_of(state: MetadataState) -> dict[str, Any]:
    out = {k: v for k, v in vars(state).items() if k not in _NOT_STATE}
    # Counts of zero are the same as no entry (a snapshot rebuilds only the non-zero ones).
    for name in ("replica_counts", "leader_counts"):
        out[name] = {b: n for b, n in out[name].items() if n}
    return out


def build(entries: list[list[MetadataRecord]]) -> MetadataState:
    state = MetadataState()
    offset = 0
    for records in entries:
        offset += len(records)
        state.apply_batch(records, offset)
    return state


def test_the_entries_hold_every_record_type() -> None:
    used = {type(r) for records in every_record_type() for r in records}
    missing = sorted(name for name, cls in RECORD_TYPES.items() if cls not in used)
    assert not missing, f"add records of {missing} to every_record_type (and to snapshot.py)"


def test_every_record_types_change_survives_the_snapshot() -> None:
    state = build(every_record_type())
    assert state.topics["orders"].partitions[2].leader == NO_LEADER
    assert "gone" not in state.topics
    assert state.brokers[1].kafka_host == "k1.example"
    restored = decode_snapshot(encode_snapshot(state))
    assert fields_of(restored) == fields_of(state)
    assert encode_snapshot(restored) == encode_snapshot(state)


def test_restored_at_every_entry_then_the_tail_gives_the_full_replay() -> None:
    entries = every_record_type()
    full = fields_of(build(entries))
    for cut in range(1, len(entries)):
        state = decode_snapshot(encode_snapshot(build(entries[:cut])))
        offset = state.applied_offset
        for records in entries[cut:]:
            offset += len(records)
            state.apply_batch(records, offset)
        assert fields_of(state) == full, f"restored after entry {cut}"
