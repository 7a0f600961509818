"""A broker's Kafka listener in the metadata: registered with the broker (record, state,
snapshot), absent for a broker without one and in records and snapshots written before the
field existed, and refused when its address is bad."""

from __future__ import annotations

import json

import pytest

from rilke.errors import InvalidMetadataRecordError, InvalidRequestError
from rilke.replication.controller.records import (
    BrokerRegistered,
    decode_batch,
    decode_record,
    encode_batch,
    encode_record,
)
from rilke.replication.controller.snapshot import decode_snapshot, encode_snapshot
from tests.unit.controller.helpers import cluster, decide_and_apply, decider_for


def test_the_kafka_listener_round_trips_in_the_record_and_is_optional() -> None:
    with_kafka = BrokerRegistered(1, "10.0.0.1", 9292, "r1", "kafka-1.example", 9092)
    key, value = encode_record(with_kafka)
    assert decode_record(key, value) == with_kafka
    assert decode_batch(encode_batch([with_kafka], 0)) == [with_kafka]
    # A record from before the field existed (no kafka_* keys) decodes as "no listener".
    old = json.dumps({"v": 1, "broker_id": 2, "host": "h", "port": 1, "rack": None}).encode()
    decoded = decode_record(b"register-broker", old)
    assert isinstance(decoded, BrokerRegistered)
    assert decoded.kafka_host is None and decoded.kafka_port == 0


def test_registration_carries_the_kafka_listener_into_the_state_and_snapshot() -> None:
    log = cluster(2)
    decider = decider_for(log)
    decide_and_apply(
        log, decider.register_broker(3, "10.0.0.3", 9293, None, 0, kafka=("10.0.0.3", 19092))
    )
    info = log.state.brokers[3]
    assert (info.kafka_host, info.kafka_port) == ("10.0.0.3", 19092)
    assert log.state.brokers[1].kafka_host is None  # registered without one
    data = encode_snapshot(log.state)
    restored = decode_snapshot(data)
    assert restored.brokers == log.state.brokers
    assert encode_snapshot(restored) == data
    # A snapshot from before the field existed restores every broker without a listener.
    body = json.loads(data)
    del body["kafka_listeners"]
    old = decode_snapshot(json.dumps(body).encode())
    assert all(b.kafka_host is None for b in old.brokers.values())
    # Registering again without a listener (restarted without --kafka-listen) drops it.
    decide_and_apply(log, decider.register_broker(3, "10.0.0.3", 9293, None, 1))
    assert log.state.brokers[3].kafka_host is None


def test_a_bad_kafka_address_is_refused_and_changes_nothing() -> None:
    log = cluster(1)
    decider = decider_for(log)
    before = dict(log.state.brokers)
    with pytest.raises(InvalidRequestError, match="bad Kafka listener address"):
        decider.register_broker(2, "10.0.0.2", 9292, None, 0, kafka=("10.0.0.2", 0))
    with pytest.raises(InvalidRequestError, match="bad Kafka listener address"):
        decider.register_broker(2, "10.0.0.2", 9292, None, 0, kafka=("", 9092))
    with pytest.raises(InvalidMetadataRecordError, match="bad Kafka address"):
        log.append([BrokerRegistered(2, "10.0.0.2", 9292, None, "h", 70000)])
    assert log.state.brokers == before
