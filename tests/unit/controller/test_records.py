"""Every metadata record round-trips through its encoding and a record batch; bad bytes fail
with CorruptMetadataRecordError naming what is wrong."""

from __future__ import annotations

import json

import pytest

from rilke.errors import CorruptMetadataRecordError
from rilke.records import build_control_batch, read_records
from rilke.records.builder import ControlType
from rilke.replication.controller.records import (
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
    decode_batch,
    decode_record,
    encode_batch,
    encode_record,
)

ONE_OF_EACH: list[MetadataRecord] = [
    ClusterCreated("c-1"),
    BrokerRegistered(1, "10.0.0.1", 9292, "rack-a"),
    BrokerRegistered(2, "10.0.0.2", 9292),
    BrokerFenced(1, 7),
    BrokerUnfenced(1, 7),
    BrokerDecommissioned(2),
    TopicCreated("orders", "t1", {"retention.ms": "1000"}),
    TopicConfigsChanged("t1", {}),
    PartitionsAdded("t1", 0, ((1, 2, 3), (2, 3, 1))),
    PartitionChanged("t1", 1, -1, 4, (2,)),
    TopicDeleted("t1"),
    ProducerIdsAllocated(1, 1000, 1000),
    VotersChanged((1, 2, 3)),
    ReassignmentStarted("t1", 0, (1, 2, 4)),
    ReassignmentCompleted("t1", 0, (1, 2, 4), 2),
]


def test_one_of_each_covers_every_record_type() -> None:
    assert {type(r) for r in ONE_OF_EACH} == set(RECORD_TYPES.values())


@pytest.mark.parametrize("record", ONE_OF_EACH, ids=lambda r: r.TYPE)
def test_record_round_trips(record: MetadataRecord) -> None:
    key, value = encode_record(record)
    assert key == record.TYPE.encode()
    assert json.loads(value)["v"] == 1
    assert decode_record(key, value) == record


def test_batch_round_trips_in_order_and_is_a_kafka_batch() -> None:
    data = encode_batch(ONE_OF_EACH, timestamp_ms=1234)
    assert decode_batch(data) == ONE_OF_EACH
    records = list(read_records(data))
    assert len(records) == len(ONE_OF_EACH)
    assert [r.offset for r in records] == list(range(len(ONE_OF_EACH)))
    assert all(r.timestamp == 1234 for r in records)


def test_a_control_batch_holds_no_records() -> None:
    assert decode_batch(build_control_batch(ControlType.RAFT_NOOP, timestamp_ms=0)) == []


def test_a_missing_rack_decodes_as_none() -> None:
    assert decode_record(
        b"register-broker", b'{"v":1,"broker_id":3,"host":"h","port":1}'
    ) == BrokerRegistered(3, "h", 1, None)


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        (b"nope", b'{"v":1}', "unknown metadata record type 'nope'"),
        (None, b'{"v":1}', "unknown metadata record type None"),
        (b"topic", b"{", "not JSON"),
        (b"topic", b"[1]", "not a JSON object"),
        (b"topic", b'{"v":2,"name":"a","topic_id":"b","configs":{}}', "version 2"),
        (b"topic", b'{"v":1,"name":"a","configs":{}}', "no field 'topic_id'"),
        (b"topic", b'{"v":1,"name":1,"topic_id":"b","configs":{}}', "field 'name' is 1"),
        (b"topic", b'{"v":1,"name":"a","topic_id":"b","configs":{"k":1}}', "field 'configs'"),
        (b"fence-broker", b'{"v":1,"broker_id":true,"broker_epoch":1}', "field 'broker_id'"),
        (b"voters", b'{"v":1,"voters":[1,"2"]}', "field 'voters'"),
        (b"voters", b'{"v":1,"voters":5}', "field 'voters'"),
        (
            b"partitions",
            b'{"v":1,"topic_id":"t","first_partition":0,"replicas":[[1],[null]]}',
            "field 'replicas'",
        ),
    ],
)
def test_bad_records_are_refused_with_a_specific_error(
    key: bytes | None, value: bytes, words: str
) -> None:
    with pytest.raises(CorruptMetadataRecordError, match=words.replace("(", r"\(")):
        decode_record(key, value)


def test_a_corrupt_batch_is_refused() -> None:
    data = bytearray(encode_batch([ClusterCreated("c")], 0))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptMetadataRecordError, match="does not hold"):
        decode_batch(bytes(data))
    with pytest.raises(CorruptMetadataRecordError, match="does not hold"):
        decode_batch(bytes(data[:30]))


def test_a_large_decision_is_split_into_batches_in_order() -> None:
    from rilke.replication.controller.records import encode_batches

    records: list[MetadataRecord] = [BrokerFenced(1, 1)] + [
        PartitionChanged("t", p, 2, 1, (2,)) for p in range(25)
    ]
    batches = encode_batches(records, 0, max_records=10)
    assert [len(decode_batch(b)) for b in batches] == [10, 10, 6]
    assert [r for b in batches for r in decode_batch(b)] == records
    assert len(encode_batches(records[:1], 0)) == 1
