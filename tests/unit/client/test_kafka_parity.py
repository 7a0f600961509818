"""kafka-python and aiokafka habits: their setting names, serializers, partitioner callables,
start()/stop(), subscription()/unsubscribe(), zstd and snappy, and the producer's metrics()."""

from __future__ import annotations

import asyncio
import json

import pytest

from rilke.client.consumer import AIOConsumer, Consumer
from rilke.client.producer import AIOProducer, Producer
from rilke.client.structs import TopicPartition
from rilke.errors import InvalidRecordError, NotLeaderError
from rilke.records import header as hdr
from rilke.serde import JsonDeserializer, JsonSerializer, SerializationError


def stored(fake, topic, partition):
    from rilke.client import codec

    out = []
    for b in fake.broker.topics[topic][partition]:
        h = hdr.read_header(b)
        out.extend((r[2], r[3], h.compression) for r in codec.read_records(b, h, True))
    return out


def test_acks_default_is_all(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address) as p:
        assert p._aio.acks == -1
        p.send("t", b"x").get(5)
    assert fake.broker.produce_requests[-1].acks == -1


def test_kafka_python_names_are_accepted(fake):
    fake.broker.create("t", 1)
    with Producer(
        fake.address, compression_type="gzip", max_in_flight_requests_per_connection=1
    ) as p:
        assert p._aio._settings["max_in_flight"] == 1
        p.send("t", b"x" * 100).get(5)
    assert stored(fake, "t", 0) == [(None, b"x" * 100, 1)]


def test_a_setting_given_twice_with_different_values_is_a_type_error():
    with pytest.raises(TypeError, match=r"compression='lz4' and compression_type='gzip'"):
        Producer("127.0.0.1:1", compression="lz4", compression_type="gzip")
    # The same value under both names is no conflict (checked before anything connects).
    with pytest.raises(TypeError, match="unknown producer settings: lingerms"):
        Producer("127.0.0.1:1", compression="lz4", compression_type="lz4", lingerms=3)


def test_unknown_settings_name_the_closest_known_one():
    with pytest.raises(TypeError, match=r"linger_msec \(did you mean linger_ms\?\)"):
        Producer("127.0.0.1:1", linger_msec=5)
    with pytest.raises(TypeError, match="unknown consumer settings: fetch_min_byte"):
        Consumer(bootstrap_servers="127.0.0.1:1", fetch_min_byte=1)


@pytest.mark.parametrize("codec", ["zstd", "snappy"])
def test_zstd_and_snappy_produce_and_consume(fake, codec):
    fake.broker.create("t", 1)
    values = [json.dumps({"n": i, "pad": "z" * 50}).encode() for i in range(50)]
    with Producer(fake.address, compression=codec, linger_ms=20) as p:
        for f in [p.send("t", v) for v in values]:
            f.get(5)
    ids = {"zstd": 4, "snappy": 2}
    assert {c for _, _, c in stored(fake, "t", 0)} == {ids[codec]}
    with Consumer(
        "t", bootstrap_servers=fake.address, auto_offset_reset="earliest", consumer_timeout_ms=2000
    ) as c:
        got = [r.value for r in c]
    assert got == values


def test_serializers_and_deserializers(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address, key_serializer=str.encode, value_serializer=JsonSerializer()) as p:
        p.send("t", {"id": 1, "name": "ä"}, key="k1").get(5)
        p.send("t", None, key="k2").get(5)  # a tombstone stays a tombstone
    assert stored(fake, "t", 0)[0][:2] == (b"k1", '{"id":1,"name":"ä"}'.encode())
    assert stored(fake, "t", 0)[1][:2] == (b"k2", None)
    with Consumer(
        "t",
        bootstrap_servers=fake.address,
        auto_offset_reset="earliest",
        consumer_timeout_ms=2000,
        key_deserializer=bytes.decode,
        value_deserializer=JsonDeserializer(),
    ) as c:
        got = [(r.key, r.value) for r in c]
    assert got == [("k1", {"id": 1, "name": "ä"}), ("k2", None)]


def test_a_value_that_will_not_serialize_fails_at_send_and_queues_nothing(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address, value_serializer=JsonSerializer()) as p:
        with pytest.raises(SerializationError, match=r"cannot encode .* as JSON"):
            p.send("t", {"when": object()})
        assert p._aio.acc.snapshot_incomplete() == []
        assert p.metrics()["buffer_used_bytes"] == 0
    with (
        Producer(fake.address, key_serializer=lambda k: k.encode()) as p,
        pytest.raises(SerializationError, match=r"key serializer failed .* topic 't'"),
    ):
        p.send("t", b"v", key=7)  # int has no encode(): any failure is wrapped
    assert stored(fake, "t", 0) == []


def test_a_bad_deserializer_names_the_record(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address) as p:
        p.send("t", b"not json").get(5)
    with (
        Consumer(
            "t",
            bootstrap_servers=fake.address,
            auto_offset_reset="earliest",
            value_deserializer=JsonDeserializer(),
        ) as c,
        pytest.raises(SerializationError, match="t-0 offset 0"),
    ):
        for _ in range(50):
            c.poll(100)


def test_a_partitioner_callable_chooses_the_partition(fake):
    fake.broker.create("t", 4)
    seen = []

    def last_partition(key, all_partitions, available):
        seen.append((key, list(all_partitions), list(available)))
        return all_partitions[-1]

    with Producer(fake.address, partitioner=last_partition) as p:
        md = p.send("t", b"v", key="k").get(5)
        assert p.send("t", b"v", partition=1).get(5).partition == 1  # given: not asked
    assert md.partition == 3
    assert seen == [(b"k", [0, 1, 2, 3], [0, 1, 2, 3])]
    with (
        Producer(fake.address, partitioner=lambda k, a, v: 9) as p,
        pytest.raises(ValueError, match=r"partitioner returned 9 .* partitions 0\.\.3"),
    ):
        p.send("t", b"v")
    with pytest.raises(TypeError, match="partitioner must be callable"):
        Producer(fake.address, partitioner="murmur2")


def test_metrics_count_records_batches_and_requests(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address, linger_ms=1) as p:
        for f in [p.send("t", b"x" * 10) for _ in range(20)]:
            f.get(5)
        m = p.metrics()
        assert m["record_send_total"] == 20 and m["record_error_total"] == 0
        assert m["batch_total"] >= 1 and 0 < m["batch_size_avg"] <= m["batch_size_max"]
        assert m["request_total"] >= m["batch_total"] and m["request_error_total"] == 0
        assert m["request_latency_max_ms"] >= m["request_latency_p50_ms"] > 0
        assert m["buffer_total_bytes"] == 32 * 1024 * 1024
        assert m["breaker_state"] == {fake.address: "closed"}


def test_metrics_count_retries_and_failures(fake):
    from test_producer import fail_first

    fake.broker.create("t", 1)
    fake.broker.faults.append(fail_first(2, "Produce", NotLeaderError.code))
    with Producer(fake.address, retry_backoff_ms=1, retry_backoff_max_ms=5) as p:
        p.send("t", b"x").get(5)
        assert p.metrics()["record_retry_total"] == 2
        assert p.metrics()["request_error_total"] == 0  # answered: the errors were per partition
    fake.broker.faults[:] = [
        lambda method, request: InvalidRecordError.code if method == "Produce" else 0
    ]
    with Producer(fake.address) as p:
        fut = p.send("t", b"y" * 5)
        with pytest.raises(InvalidRecordError):
            fut.get(5)
        m = p.metrics()
        assert m["record_error_total"] == 1 and m["record_send_total"] == 0


def test_breaker_state_of_a_dead_broker_opens(fake):
    from rilke.client.backoff import CircuitBreaker
    from rilke.client.metrics import breaker_state

    b = CircuitBreaker("h:1", failure_threshold=2, cooldown_s=1.0)
    assert breaker_state(b, 0.0) == "closed"
    b.record_failure(0.0)
    b.record_failure(0.0)
    assert breaker_state(b, 0.5) == "open"
    assert breaker_state(b, 1.5) == "half-open"


def test_consumer_subscription_and_unsubscribe(fake):
    fake.broker.create("t", 2)
    with Consumer("t", bootstrap_servers=fake.address) as c:
        assert c.subscription() == {"t"}
        assert c.assignment() == {TopicPartition("t", 0), TopicPartition("t", 1)}
        c.unsubscribe()
        assert c.subscription() is None and c.assignment() == set()
        c.assign([TopicPartition("t", 1)])
        assert c.subscription() is None
        c.start()
        c.stop()
        assert c._aio.closed


def test_aiokafka_start_and_stop(fake):
    fake.broker.create("t", 1)

    async def main():
        p = AIOProducer(fake.address, value_serializer=JsonSerializer())
        await p.start()
        md = await p.send_and_wait("t", [1, 2])
        await p.stop()
        c = AIOConsumer(
            "t",
            bootstrap_servers=fake.address,
            auto_offset_reset="earliest",
            value_deserializer=JsonDeserializer(),
        )
        await c.start()
        got = await c.getone()
        assert c.subscription() == {"t"}
        c.unsubscribe()
        assert c.assignment() == set()
        await c.stop()
        return md.offset, got.value

    assert asyncio.run(main()) == (0, [1, 2])
