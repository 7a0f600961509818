"""Snapshots round-trip the whole state (restart = snapshot + tail gives the state of a full
replay); the applier feeds committed entries in, skips Raft's own, reports rejections, and
keeps the view current."""

from __future__ import annotations

import json

import pytest

from rilke.errors import CorruptMetadataRecordError, InvalidMetadataRecordError
from rilke.records import build_control_batch
from rilke.records.builder import ControlType
from rilke.replication.controller.applier import MetadataApplier
from rilke.replication.controller.decider import ControllerDecider
from rilke.replication.controller.records import (
    BrokerRegistered,
    BrokerUnfenced,
    ClusterCreated,
    MetadataRecord,
    ProducerIdsAllocated,
    TopicDeleted,
    encode_batch,
)
from rilke.replication.controller.snapshot import decode_snapshot, encode_snapshot
from rilke.replication.controller.state import MetadataState
from rilke.replication.controller.view import NO_CONTROLLER
from rilke.replication.raft.types import Entry, EntryKind
from tests.unit.controller.helpers import cluster, decide_and_apply, decider_for


def busy_state() -> MetadataState:
    log = cluster(4, racks=["a", "b", None, "a"])
    decider = decider_for(log)
    decide_and_apply(log, decider.create_topic("orders", 5, 3, {"retention.ms": "9"}, "i1"))
    decide_and_apply(log, decider.create_topic("logs", 2, 1, {}, "i2"))
    decide_and_apply(log, decider.create_topic("gone", 2, 1, {}, "i3"))
    decide_and_apply(log, decider.delete_topic("gone"))
    decide_and_apply(log, decider.allocate_producer_ids(2))
    decide_and_apply(log, decider.decommission_broker(4))
    decide_and_apply(log, decider.fence_expired(10**9))
    decide_and_apply(log, decider.change_voters([1, 2, 3]))
    return log.state


def test_snapshot_round_trips_the_whole_state() -> None:
    state = busy_state()
    data = encode_snapshot(state)
    restored = decode_snapshot(data)
    assert encode_snapshot(restored) == data
    assert restored.topics == state.topics
    assert restored.brokers == state.brokers
    assert restored.topic_names == state.topic_names
    assert restored.applied_offset == state.applied_offset
    assert restored.next_producer_id == state.next_producer_id == 1000
    # The counts placement uses are rebuilt from the partitions.
    assert {k: v for k, v in state.replica_counts.items() if v} == restored.replica_counts
    assert {k: v for k, v in state.leader_counts.items() if v} == restored.leader_counts
    # And the restored state decides and applies on.
    decider = ControllerDecider(restored)
    records = decider.allocate_producer_ids(1)
    restored.apply_batch(records, restored.applied_offset + 1)
    assert restored.producer_id_blocks[1] == (1000, 1000)


def test_an_empty_state_round_trips() -> None:
    assert encode_snapshot(decode_snapshot(encode_snapshot(MetadataState()))) == encode_snapshot(
        MetadataState()
    )


def _mutate(body: dict[str, object], path: str, value: object) -> bytes:
    *parents, last = path.split(".")
    node: object = body
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        assert isinstance(node, dict)
        node[last] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("path", "value", "words"),
    [
        ("v", 9, "version 9"),
        ("applied_offset", "1", "not an integer"),
        ("brokers.0.4", "zombie", "not a valid BrokerState"),
        ("topics.0.2", {"a": 1}, "not a string map"),
        ("topics.0.3.0.3", [99], "isr"),
        ("topics.0.3.0.1", 99, "leader 99 not in isr"),
        ("topics.0.1", "i1", "appears twice"),
        ("voters", None, "not a list"),
    ],
)
def test_a_snapshot_that_does_not_hold_is_refused(path: str, value: object, words: str) -> None:
    body = json.loads(encode_snapshot(busy_state()))
    with pytest.raises(CorruptMetadataRecordError, match=words):
        decode_snapshot(_mutate(body, path, value))


def test_garbage_is_not_a_snapshot() -> None:
    for data in (b"", b"{", b"[]", b'{"v":1}'):
        with pytest.raises(CorruptMetadataRecordError):
            decode_snapshot(data)


def entry(index: int, records: list[MetadataRecord], term: int = 1) -> Entry:
    return Entry(term, index, encode_batch(records, 0), EntryKind.NORMAL, len(records))


def bootstrap_entries() -> list[Entry]:
    return [
        Entry(1, 1, b"", EntryKind.NO_OP),
        entry(3, [ClusterCreated("c"), BrokerRegistered(1, "h", 9001)]),
        entry(4, [BrokerUnfenced(1, 3)]),
    ]


def test_the_applier_applies_entries_and_skips_rafts_own() -> None:
    applier = MetadataApplier()
    changes: list[int] = []
    unsubscribe = applier.subscribe(lambda: changes.append(applier.applied_index))
    for e in bootstrap_entries():
        assert applier.apply_entry(e) is None
    assert applier.applied_index == 4
    assert changes == [3, 4]
    assert applier.apply_entry(Entry(1, 5, b"conf", EntryKind.CONFIG)) is None
    noop = build_control_batch(ControlType.RAFT_NOOP, timestamp_ms=0)
    assert applier.apply_batch(6, noop) is None
    assert applier.applied_index == 6
    unsubscribe()
    view = applier.view(controller_id=1)
    assert view.cluster_id == "c" and view.controller_id == 1
    assert view.brokers[1].epoch == 3
    assert applier.view(controller_id=1) is view  # cached while nothing changes
    assert applier.view(NO_CONTROLLER).controller_id == NO_CONTROLLER


def test_a_rejected_entry_is_reported_changes_nothing_and_is_consumed() -> None:
    applier = MetadataApplier()
    for e in bootstrap_entries():
        applier.apply_entry(e)
    view = applier.view()
    error = applier.apply_entry(entry(5, [ProducerIdsAllocated(1, 0, 5), TopicDeleted("x")]))
    assert isinstance(error, InvalidMetadataRecordError)
    assert "no topic has id 'x'" in str(error)
    assert applier.applied_index == 5 and applier.rejected == 1
    assert applier.state.next_producer_id == 0
    assert applier.view() is view
    corrupt = applier.apply_batch(6, b"\x00" * 70)
    assert isinstance(corrupt, CorruptMetadataRecordError)
    assert applier.applied_index == 6
    assert applier.apply_entry(entry(7, [ProducerIdsAllocated(1, 0, 5)])) is None


def test_entries_out_of_order_are_a_programmer_error() -> None:
    applier = MetadataApplier()
    for e in bootstrap_entries():
        applier.apply_entry(e)
    with pytest.raises(AssertionError, match="out of order"):
        applier.apply_entry(entry(4, [BrokerUnfenced(1, 3)]))


def test_restart_is_snapshot_plus_tail() -> None:
    """A node that restores a snapshot taken mid-log and applies the tail ends with the state
    of a node that replayed the whole log."""
    entries = bootstrap_entries()
    index = 4
    source = MetadataApplier()
    for e in entries:
        source.apply_entry(e)
    decider = ControllerDecider(source.state)
    for request in range(12):
        records = (
            decider.create_topic(f"t{request}", 3, 1, {}, f"id{request}")
            if request % 3
            else decider.allocate_producer_ids(1)
        )
        index += len(records)
        e = entry(index, records)
        entries.append(e)
        source.apply_entry(e)
    full = MetadataApplier()
    for e in entries:
        full.apply_entry(e)
    middle = MetadataApplier()
    for e in entries[:8]:
        middle.apply_entry(e)
    snap_index, data = middle.snapshot()
    restarted = MetadataApplier()
    restarted.restore(data)
    assert restarted.applied_index == snap_index
    for e in entries:
        if e.index > snap_index:
            restarted.apply_entry(e)
    assert restarted.snapshot() == full.snapshot() == source.snapshot()
    assert restarted.view().topics == full.view().topics
