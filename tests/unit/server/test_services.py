import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from inproc import InProcessBroker, running_broker
from produce_batches import batch_values, make_batch

from rilke import errors
from rilke.proto import rilke_pb2 as pb

TIMEOUT = 10


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[InProcessBroker]:
    with running_broker(tmp_path) as b:
        create(b, "t", 2)
        yield b


def create(b: InProcessBroker, name: str, partitions: int = 1, **configs: str) -> pb.TopicResult:
    response = b.admin.CreateTopics(
        pb.CreateTopicsRequest(
            topics=[pb.NewTopic(name=name, num_partitions=partitions, configs=configs)]
        ),
        timeout=TIMEOUT,
    )
    return response.results[0]


def produce(
    b: InProcessBroker, records: bytes, topic: str = "t", partition: int = 0, acks: int = 1
) -> pb.ProducePartitionResponse:
    request = pb.ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        partitions=[pb.ProducePartitionData(topic=topic, partition=partition, records=records)],
    )
    return b.broker.Produce(request, timeout=TIMEOUT).partitions[0]


def fetch(
    b: InProcessBroker, offset: int, topic: str = "t", partition: int = 0, **kw: int
) -> pb.FetchPartitionResponse:
    request = pb.FetchRequest(
        partitions=[pb.FetchPartition(topic=topic, partition=partition, fetch_offset=offset)], **kw
    )
    return b.broker.Fetch(request, timeout=TIMEOUT).partitions[0]


def end_offset(b: InProcessBroker, topic: str = "t", partition: int = 0) -> int:
    response = b.broker.ListOffsets(
        pb.ListOffsetsRequest(
            partitions=[pb.ListOffsetsPartition(topic=topic, partition=partition, timestamp=-1)]
        ),
        timeout=TIMEOUT,
    )
    return response.partitions[0].offset


def test_produce_then_fetch(broker: InProcessBroker) -> None:
    first = produce(broker, make_batch([b"a", b"b"]))
    second = produce(broker, make_batch([b"c"]))
    assert first.error.code == 0 and first.base_offset == 0
    assert second.base_offset == 2
    assert first.log_append_time_ms == -1
    got = fetch(broker, 1)
    assert got.error.code == 0
    assert got.high_watermark == 3
    assert [v for o, v in batch_values(got.records) if o >= 1] == [b"b", b"c"]


def test_list_offsets(broker: InProcessBroker) -> None:
    produce(broker, make_batch([b"old"], timestamp_ms=1000))
    produce(broker, make_batch([b"new"], timestamp_ms=5000))
    wanted = [
        pb.ListOffsetsPartition(topic="t", partition=0, timestamp=-2),
        pb.ListOffsetsPartition(topic="t", partition=0, timestamp=-1),
        pb.ListOffsetsPartition(topic="t", partition=0, timestamp=2000),
        pb.ListOffsetsPartition(topic="t", partition=0, timestamp=9000),
        pb.ListOffsetsPartition(topic="t", partition=0, timestamp=-7),
        pb.ListOffsetsPartition(topic="nope", partition=0, timestamp=-1),
    ]
    response = broker.broker.ListOffsets(pb.ListOffsetsRequest(partitions=wanted), timeout=TIMEOUT)
    got = [(p.error.code, p.offset) for p in response.partitions]
    assert got == [
        (0, 0),
        (0, 2),
        (0, 1),
        (0, -1),
        (errors.InvalidRequestError.code, -1),
        (errors.UnknownTopicOrPartitionError.code, -1),
    ]
    assert response.partitions[2].timestamp == 5000


def test_metadata_and_admin(broker: InProcessBroker) -> None:
    meta = broker.broker.Metadata(pb.MetadataRequest(), timeout=TIMEOUT)
    assert [(b.node_id, b.port) for b in meta.brokers] == [(0, broker.port)]
    assert [(t.name, len(t.partitions)) for t in meta.topics] == [("t", 2)]
    missing = broker.broker.Metadata(pb.MetadataRequest(topics=["zz"]), timeout=TIMEOUT)
    assert missing.topics[0].error.code == errors.UnknownTopicOrPartitionError.code
    assert create(broker, "t").error.code == errors.TopicAlreadyExistsError.code
    assert create(broker, "bad name").error.code == errors.InvalidTopicError.code
    assert create(broker, "c", 1, **{"retention.mss": "1"}).error.code == (
        errors.InvalidConfigError.code
    )
    assert create(broker, "c", 1, **{"retention.ms": "60000"}).error.code == 0
    listed = broker.admin.ListTopics(pb.ListTopicsRequest(), timeout=TIMEOUT)
    assert [(t.name, t.num_partitions) for t in listed.topics] == [("c", 1), ("t", 2)]
    described = broker.admin.DescribeTopics(
        pb.DescribeTopicsRequest(names=["c", "x"]), timeout=TIMEOUT
    )
    assert described.topics[0].configs["retention.ms"] == "60000"
    assert described.topics[1].error.code == errors.UnknownTopicOrPartitionError.code
    configs = broker.admin.DescribeConfigs(
        pb.DescribeConfigsRequest(topics=["c"], include_defaults=True), timeout=TIMEOUT
    )
    entries = {e.name: (e.value, e.is_default) for e in configs.results[0].entries}
    assert entries["retention.ms"] == ("60000", False)
    assert entries["segment.bytes"][1] is True
    altered = broker.admin.AlterConfigs(
        pb.AlterConfigsRequest(
            topics=[
                pb.AlterTopicConfigs(
                    topic="c", set={"cleanup.policy": "compact"}, delete=["retention.ms"]
                )
            ]
        ),
        timeout=TIMEOUT,
    )
    assert altered.results[0].error.code == 0
    bad = broker.admin.AlterConfigs(
        pb.AlterConfigsRequest(topics=[pb.AlterTopicConfigs(topic="c", set={"flush.ms": "x"})]),
        timeout=TIMEOUT,
    )
    assert bad.results[0].error.code == errors.InvalidConfigError.code
    configs = broker.admin.DescribeConfigs(pb.DescribeConfigsRequest(topics=["c"]), timeout=TIMEOUT)
    assert [(e.name, e.value) for e in configs.results[0].entries] == [
        ("cleanup.policy", "compact")
    ]
    deleted = broker.admin.DeleteTopics(pb.DeleteTopicsRequest(names=["c", "c"]), timeout=TIMEOUT)
    assert [r.error.code for r in deleted.results] == [0, errors.UnknownTopicOrPartitionError.code]


def test_bad_produce_input_is_refused_and_nothing_written(broker: InProcessBroker) -> None:
    good = make_batch([b"x"])
    corrupt = bytearray(good)
    corrupt[-1] ^= 1
    magic = bytearray(good)
    magic[16] = 0
    lying = bytearray(good)  # claims 5 records in 1 offset: count and delta disagree
    lying[57:61] = (5).to_bytes(4, "big")
    cases = [
        ("nope", 0, good, errors.UnknownTopicOrPartitionError),
        ("t", 9, good, errors.UnknownTopicOrPartitionError),
        ("bad/name", 0, good, errors.InvalidTopicError),
        ("t", 0, bytes(corrupt), errors.CorruptRecordError),
        ("t", 0, bytes(magic), errors.CorruptRecordError),
        ("t", 0, b"\x00" * 10, errors.CorruptRecordError),
        ("t", 0, b"", errors.InvalidRequestError),
    ]
    for topic, partition, records, error in cases:
        result = produce(broker, records, topic=topic, partition=partition)
        assert result.error.code == error.code, (topic, partition, result.error.message)
        assert result.error.message
        assert result.base_offset == -1
    # lying about the count without fixing the CRC is a CRC failure; with a fixed CRC it is
    # an invalid batch
    from rilke.records.header import CRC_POS, compute_crc

    lying[CRC_POS : CRC_POS + 4] = compute_crc(lying, 0, len(lying)).to_bytes(4, "big")
    assert produce(broker, bytes(lying)).error.code == errors.InvalidRecordError.code
    assert produce(broker, good, acks=5).error.code == errors.InvalidRequestError.code
    assert end_offset(broker) == 0
    assert fetch(broker, -1).error.code == errors.OffsetOutOfRangeError.code
    out_of_range = fetch(broker, 99)
    assert out_of_range.error.code == errors.OffsetOutOfRangeError.code
    assert (out_of_range.log_start_offset, out_of_range.high_watermark) == (0, 0)
    assert fetch(broker, 0, topic="nope").error.code == errors.UnknownTopicOrPartitionError.code


def test_oversized_batch_and_request(tmp_path: Path) -> None:
    with running_broker(tmp_path, max_request_bytes=4096) as b:
        create(b, "t", 1, **{"max.message.bytes": "1000"})
        assert produce(b, make_batch([b"x" * 2000])).error.code == errors.RecordTooLargeError.code
        big = b"".join(make_batch([b"y" * 900]) for _ in range(5))
        result = produce(b, big)
        assert result.error.code == errors.MessageSizeTooLargeError.code
        assert "max_request_bytes" in result.error.message
        assert end_offset(b) == 0


def test_auto_create_is_a_setting(tmp_path: Path) -> None:
    with running_broker(tmp_path, auto_create_topics=True, default_partitions=3) as b:
        assert produce(b, make_batch([b"x"]), topic="fresh").error.code == 0
        meta = b.broker.Metadata(
            pb.MetadataRequest(topics=["other"], allow_auto_topic_creation=True), timeout=TIMEOUT
        )
        assert len(meta.topics[0].partitions) == 3


def test_long_poll_is_woken_by_an_append(broker: InProcessBroker) -> None:
    result: list[pb.FetchPartitionResponse] = []

    def poll() -> None:
        result.append(fetch(broker, 0, max_wait_ms=30_000, min_bytes=1))

    poller = threading.Thread(target=poll)
    poller.start()
    deadline = time.monotonic() + TIMEOUT
    # wait until the poll is parked on the broker, then append
    while not broker.server._service._waiters and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)
    produce(broker, make_batch([b"wake"]))
    poller.join(TIMEOUT)
    assert not poller.is_alive()
    assert batch_values(result[0].records) == [(0, b"wake")]


def test_long_poll_on_a_deleted_topic_answers_unknown_topic(broker: InProcessBroker) -> None:
    result: list[pb.FetchPartitionResponse] = []

    def poll() -> None:
        result.append(fetch(broker, 0, max_wait_ms=60_000, min_bytes=1))

    poller = threading.Thread(target=poll)
    poller.start()
    deadline = time.monotonic() + TIMEOUT
    while not broker.server._service._waiters and time.monotonic() < deadline:  # type: ignore[union-attr]
        time.sleep(0.01)
    deleted = broker.admin.DeleteTopics(pb.DeleteTopicsRequest(names=["t"]), timeout=TIMEOUT)
    assert deleted.results[0].error.code == 0
    poller.join(TIMEOUT)  # the delete wakes the poll: it does not wait its 60 s
    assert not poller.is_alive()
    assert result[0].error.code == errors.UnknownTopicOrPartitionError.code, result[0].error


def test_long_poll_times_out_empty(broker: InProcessBroker) -> None:
    got = fetch(broker, 0, max_wait_ms=50, min_bytes=1)
    assert got.error.code == 0 and got.records == b""


def test_fetch_respects_byte_limits(broker: InProcessBroker) -> None:
    for i in range(5):
        produce(broker, make_batch([bytes([65 + i]) * 100]))
    one = broker.broker.Fetch(
        pb.FetchRequest(
            partitions=[
                pb.FetchPartition(topic="t", partition=0, fetch_offset=0, partition_max_bytes=200)
            ]
        ),
        timeout=TIMEOUT,
    )
    assert len(batch_values(one.partitions[0].records)) == 1
    tiny = fetch(broker, 2, max_bytes=1)  # always at least one whole batch
    assert batch_values(tiny.records) == [(2, b"C" * 100)]


def test_fetch_says_where_the_next_fetch_starts(broker: InProcessBroker) -> None:
    for i in range(5):
        produce(broker, make_batch([bytes([65 + i]) * 100]))
    part = pb.FetchPartition(topic="t", partition=0, fetch_offset=0, partition_max_bytes=200)
    one = broker.broker.Fetch(pb.FetchRequest(partitions=[part]), timeout=TIMEOUT).partitions[0]
    assert len(batch_values(one.records)) == 1 and one.next_offset == 1
    whole = fetch(broker, 0)
    assert len(batch_values(whole.records)) == 5 and whole.next_offset == 5
    at_end = fetch(broker, 5)
    assert at_end.records == b"" and at_end.next_offset == 5
    missing = fetch(broker, 0, topic="nope")
    assert missing.error.code != 0 and not missing.HasField("next_offset")


def test_produce_stream_answers_in_order_with_correlation_ids(broker: InProcessBroker) -> None:
    def requests() -> Iterator[pb.ProduceRequest]:
        for i in range(20):
            yield pb.ProduceRequest(
                acks=1,
                correlation_id=100 + i,
                partitions=[
                    pb.ProducePartitionData(topic="t", partition=i % 2, records=make_batch([b"s"]))
                ],
            )
        yield pb.ProduceRequest(
            acks=1,
            correlation_id=999,
            partitions=[pb.ProducePartitionData(topic="t", partition=0, records=b"junk")],
        )

    responses = list(broker.broker.ProduceStream(requests(), timeout=TIMEOUT))
    assert [r.correlation_id for r in responses] == [*range(100, 120), 999]
    offsets_p0 = [r.partitions[0].base_offset for r in responses[:20:2]]
    assert offsets_p0 == list(range(10))
    assert responses[-1].partitions[0].error.code == errors.CorruptRecordError.code


def test_idempotent_producer_over_the_wire(broker: InProcessBroker) -> None:
    init = broker.broker.InitProducerId(pb.InitProducerIdRequest(producer_id=-1), timeout=TIMEOUT)
    assert init.error.code == 0
    pid, epoch = init.producer_id, init.producer_epoch
    batch = make_batch([b"once"], producer_id=pid, producer_epoch=epoch, base_sequence=0)
    assert produce(broker, batch).base_offset == 0
    assert produce(broker, batch).base_offset == 0
    gap = make_batch([b"gap"], producer_id=pid, producer_epoch=epoch, base_sequence=5)
    assert produce(broker, gap).error.code == errors.OutOfOrderSequenceError.code
    bumped = broker.broker.InitProducerId(
        pb.InitProducerIdRequest(producer_id=pid, producer_epoch=epoch), timeout=TIMEOUT
    )
    assert (bumped.producer_id, bumped.producer_epoch) == (pid, epoch + 1)
    fresh = make_batch([b"new"], producer_id=pid, producer_epoch=epoch + 1, base_sequence=0)
    assert produce(broker, fresh).base_offset == 1
    assert produce(broker, batch).error.code == errors.InvalidProducerEpochError.code
    assert end_offset(broker) == 2


def test_acks_all_with_flush_per_append(tmp_path: Path) -> None:
    with running_broker(tmp_path) as b:
        create(b, "d", 1, **{"flush.messages": "1"})
        assert produce(b, make_batch([b"x"]), topic="d", acks=-1).base_offset == 0
        log = b.managers[0].logs[("d", 0)]
        assert log.flushed_offset == 1


def test_health_and_reflection(broker: InProcessBroker) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(broker.channel)
    status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(broker.channel)
    answers = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"rilke.v1.Broker", "rilke.v1.Admin"} <= names


def test_restart_keeps_topics_and_a_second_broker_is_refused(tmp_path: Path) -> None:
    with running_broker(tmp_path) as b:
        create(b, "keep", 2)
        with pytest.raises(errors.DataDirLockedError):
            InProcessBroker(tmp_path)
    with running_broker(tmp_path) as b:
        meta = b.broker.Metadata(pb.MetadataRequest(), timeout=TIMEOUT)
        assert [(t.name, len(t.partitions)) for t in meta.topics] == [("keep", 2)]


def test_unparseable_request_is_invalid_argument(broker: InProcessBroker) -> None:
    call = broker.channel.unary_unary("/rilke.v1.Broker/Produce")
    with pytest.raises(grpc.RpcError) as info:
        call(b"\xff\xff\xff", timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_unparseable_stream_message_is_invalid_argument(broker: InProcessBroker) -> None:
    call = broker.channel.stream_stream("/rilke.v1.Broker/ProduceStream")
    good = pb.ProduceRequest(acks=1, correlation_id=1).SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        list(call(iter([good, b"\xff\xff\xff"]), timeout=TIMEOUT))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stream_answers_acks_0_requests_too(broker: InProcessBroker) -> None:
    requests = [
        pb.ProduceRequest(
            acks=0,
            correlation_id=i,
            partitions=[
                pb.ProducePartitionData(topic="t", partition=0, records=make_batch([b"z"]))
            ],
        )
        for i in range(3)
    ]
    responses = list(broker.broker.ProduceStream(iter(requests), timeout=TIMEOUT))
    assert [r.correlation_id for r in responses] == [0, 1, 2]
    assert end_offset(broker) == 3


def test_maintenance_runs_periodically(tmp_path: Path) -> None:
    with running_broker(tmp_path, maintenance_interval_ms=20) as b:
        create(b, "t")
        log = b.managers[0].logs[("t", 0)]
        deadline = time.monotonic() + TIMEOUT
        while log.maintenance_runs < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert log.maintenance_runs >= 2


def test_shutdown_flushes_and_closes_storage(tmp_path: Path) -> None:
    b = InProcessBroker(tmp_path)
    try:
        create(b, "t")
        produce(b, make_batch([b"x"]))
    finally:
        b.stop()
    manager = b.managers[0]
    assert manager.closed
    assert manager.logs[("t", 0)].flushed_offset == 1
    assert (tmp_path / "t-0" / "producer-state.json").exists()


def test_clients_cannot_create_write_change_or_delete_internal_topics(
    broker: InProcessBroker,
) -> None:
    name = "__consumer_offsets"
    assert create(broker, name).error.code == errors.InvalidTopicError.code
    assert create(broker, "__mine").error.code == errors.InvalidTopicError.code
    refused = produce(broker, make_batch([b"garbage"]), topic=name)
    assert refused.error.code == errors.InvalidTopicError.code
    assert "internal" in refused.error.message
    deleted = broker.admin.DeleteTopics(pb.DeleteTopicsRequest(names=[name]), timeout=TIMEOUT)
    assert deleted.results[0].error.code == errors.InvalidTopicError.code
    altered = broker.admin.AlterConfigs(
        pb.AlterConfigsRequest(
            topics=[pb.AlterTopicConfigs(topic=name, set={"cleanup.policy": "delete"})]
        ),
        timeout=TIMEOUT,
    )
    assert altered.results[0].error.code == errors.InvalidTopicError.code
    listed = broker.admin.ListTopics(pb.ListTopicsRequest(include_internal=True), timeout=TIMEOUT)
    assert [t.name for t in listed.topics if t.internal] == []


def test_negative_fetch_limits_are_refused(broker: InProcessBroker) -> None:
    produce(broker, make_batch([b"x"]))
    request = pb.FetchRequest(
        partitions=[pb.FetchPartition(topic="t", partition=0, partition_max_bytes=-5)]
    )
    got = broker.broker.Fetch(request, timeout=TIMEOUT).partitions[0]
    assert got.error.code == errors.InvalidRequestError.code and got.records == b""
    request = pb.FetchRequest(max_bytes=-1, partitions=[pb.FetchPartition(topic="t", partition=0)])
    got = broker.broker.Fetch(request, timeout=TIMEOUT).partitions[0]
    assert got.error.code == errors.InvalidRequestError.code and "max_bytes" in got.error.message
