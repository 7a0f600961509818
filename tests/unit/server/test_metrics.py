"""The broker's metrics: the hot-path counters (rilke.server.stats), the collector over a Broker
in-process (rilke.server.metrics), the gRPC services' and the Kafka listener's counting, and the
HTTP listener (rilke.server.metrics_http)."""

from __future__ import annotations

import asyncio
import math
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from inproc import running_broker
from produce_batches import make_batch
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rilke import errors
from rilke.proto import rilke_pb2 as pb
from rilke.server.broker import Broker
from rilke.server.config import BrokerConfig
from rilke.server.coordinator.types import TopicPartition
from rilke.server.kafka import schemas as sc
from rilke.server.kafka.counting import KafkaCounters, count_error_codes
from rilke.server.metrics import (
    BrokerCollector,
    MetricsSources,
    RaftGroupMetrics,
    established_connections,
    make_registry,
)
from rilke.server.metrics_http import MetricsServer
from rilke.server.server import open_log_manager
from rilke.server.services import count_errors, error_paths
from rilke.server.stats import (
    RPC_FAILED,
    ApiStats,
    BrokerStats,
    Histogram,
    count_records,
    first_batch_timestamp,
)

TIMEOUT = 10


def scrape(collector: BrokerCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(make_registry(collector, process=False)).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def at(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


# --- stats ------------------------------------------------------------------------------------


def test_histogram_counts_each_observation_in_its_bucket_and_cumulates() -> None:
    hist = Histogram((0.001, 0.01, 0.1))
    for value in (0.0005, 0.001, 0.002, 0.05, 3.0):
        hist.observe(value)
    assert hist.counts == [2, 1, 1, 1]  # a value equal to a bound is in that bound's bucket
    assert list(hist.cumulative()) == [(0.001, 2), (0.01, 3), (0.1, 4), (math.inf, 5)]
    assert hist.count == 5
    assert hist.sum == pytest.approx(3.0535)
    other = Histogram((0.001, 0.01, 0.1))
    other.observe(0.2)
    hist.merge(other)
    assert hist.counts == [2, 1, 1, 2]


def test_count_records_reads_batch_headers_and_skips_a_partial_tail() -> None:
    three, five = make_batch([b"a", b"b", b"c"]), make_batch([b"x"] * 5)
    assert count_records(three + five) == 8
    assert count_records(three + five[:30]) == 3  # a fetch may end in a partial batch
    assert count_records(b"") == 0
    assert first_batch_timestamp(make_batch([b"v"], timestamp_ms=1234)) == 1234
    assert first_batch_timestamp(b"short") is None


def test_topic_counters_and_api_errors() -> None:
    stats = BrokerStats()
    assert stats.api("grpc", "Produce") is stats.api("grpc", "Produce")  # bound once
    topic = stats.topic("t")
    topic.produced(100, 3)
    topic.fetched(make_batch([b"a", b"b"]))
    assert (topic.bytes_in, topic.records_in, topic.records_out) == (100, 3, 2)
    api = ApiStats()
    api.error(30)
    api.error(30)
    assert api.errors == {30: 2}


def test_grpc_error_paths_find_per_item_errors() -> None:
    assert error_paths(pb.ProduceResponse.DESCRIPTOR) == (False, ("partitions",))
    assert error_paths(pb.InitProducerIdResponse.DESCRIPTOR) == (True, ())
    response = pb.ProduceResponse()
    response.partitions.add(topic="a")
    response.partitions.add(topic="b").error.code = 30
    response.partitions.add(topic="c").error.code = 30
    api = ApiStats()
    count_errors(response, error_paths(pb.ProduceResponse.DESCRIPTOR), api)
    assert api.errors == {30: 2}


def test_kafka_counters_count_produce_fetch_and_error_codes() -> None:
    stats = BrokerStats()
    counters = KafkaCounters(stats)
    ok, refused = make_batch([b"1", b"2", b"3"]), make_batch([b"4"])
    request = {
        "acks": 1,
        "topic_data": [
            {"name": "t", "partition_data": [{"index": 0, "records": ok}]},
            {"name": "u", "partition_data": [{"index": 0, "records": refused}]},
        ],
    }
    response = {
        "responses": [
            {"name": "t", "partition_responses": [{"index": 0, "error_code": 0}]},
            {"name": "u", "partition_responses": [{"index": 0, "error_code": 3}]},
        ]
    }
    counters.answered(sc.PRODUCE, request, response, 0.002)
    assert (stats.topic("t").records_in, stats.topic("t").bytes_in) == (3, len(ok))
    assert stats.topic("u").records_in == 0  # refused: not counted
    produce = stats.api("kafka", "Produce")
    assert (produce.requests, produce.errors, produce.latency.count) == (1, {3: 1}, 1)
    fetched = {"responses": [{"topic": "t", "partitions": [{"error_code": 0, "records": ok}]}]}
    counters.answered(sc.FETCH, {}, fetched, 0.001)
    assert stats.topic("t").records_out == 3
    counters.answered(sc.PRODUCE, {**request, "acks": 0}, None, 0.001)  # acks=0: no answer
    assert stats.topic("t").records_in == 6 and stats.topic("u").records_in == 1
    api = ApiStats()
    count_error_codes({"error_code": 0, "topics": [{"error_code": 15, "p": [{}]}]}, api)
    assert api.errors == {15: 1}


# --- the collector over a Broker ------------------------------------------------------------


class Groups:
    def __init__(self, committed: list[tuple[str, TopicPartition, int]]) -> None:
        self.committed = committed

    def committed_offsets(self) -> list[tuple[str, TopicPartition, int]]:
        return self.committed


class Scrub:
    batches_scrubbed = 7
    bytes_scrubbed = 7000
    corrupt_batches_found = 1
    segments_scrubbed = 2
    passes_completed = 3


def test_collector_reads_partitions_lag_fsync_and_storage(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path / "data")
    broker = Broker(config, open_log_manager(config))
    sent_ms = 1_700_000_000_000

    async def produce() -> None:
        broker.create_topic("t", 2, configs={"flush.messages": "1"})
        part = broker.partition("t", 0)
        for i in range(3):
            await part.append(make_batch([b"a", b"b"], timestamp_ms=sent_ms + i * 1000), -1)

    try:
        asyncio.run(produce())
        broker.stats.topic("t").produced(10, 6)
        groups = Groups(
            [
                ("g", TopicPartition("t", 0), 2),  # behind by 4: the batch at offset 2 is 1 s old
                ("g", TopicPartition("t", 1), 0),  # empty partition: no lag
                ("h", TopicPartition("gone", 0), 5),  # no such partition: left out
            ]
        )
        collector = BrokerCollector(
            broker,
            MetricsSources(
                groups=lambda: groups,
                scrub_stats=Scrub,
                kafka_connections=lambda: 4,
                clock_ms=lambda: sent_ms + 6000,
            ),
        )
        found = scrape(collector)
    finally:
        broker.close()
    t0 = {"topic": "t", "partition": "0"}
    assert at(found, "rilke_partition_log_end_offset", **t0) == 6
    assert at(found, "rilke_partition_high_watermark", **t0) == 6
    assert at(found, "rilke_partition_log_start_offset", **t0) == 0
    assert at(found, "rilke_partition_size_bytes", **t0) > 0
    assert at(found, "rilke_partition_log_end_offset", topic="t", partition="1") == 0
    lag = {"group": "g", **t0}
    assert at(found, "rilke_consumer_group_committed_offset", **lag) == 2
    assert at(found, "rilke_consumer_group_lag_records", **lag) == 4
    assert at(found, "rilke_consumer_group_lag_seconds", **lag) == 5.0  # sent at +1 s, now +6 s
    empty = {"group": "g", "topic": "t", "partition": "1"}
    assert at(found, "rilke_consumer_group_lag_records", **empty) == 0
    assert at(found, "rilke_consumer_group_lag_seconds", **empty) == 0
    assert not any(labels and ("group", "h") in labels for _, labels in found)
    assert at(found, "rilke_topic_records_in_total", topic="t") == 6
    assert at(found, "rilke_topic_bytes_in_total", topic="t") == 10
    assert at(found, "rilke_fsync_duration_seconds_count") >= 3  # flush.messages=1: per append
    assert at(found, "rilke_fsync_duration_seconds_bucket", le="+Inf") >= 3
    assert at(found, "rilke_connections", listener="kafka") == 4
    assert at(found, "rilke_segment_files_open") >= 1
    assert at(found, "rilke_scrubber_corrupt_batches_total") == 1
    assert at(found, "rilke_scrubber_bytes_total") == 7000
    assert at(found, "rilke_under_replicated_partitions") == 0
    assert at(found, "rilke_build_info", version="0.1.0", node_id="0") == 1


def test_raft_series_come_from_the_cluster_hook(tmp_path: Path) -> None:
    config = BrokerConfig(data_dir=tmp_path / "data")
    broker = Broker(config, open_log_manager(config))
    groups = [
        RaftGroupMetrics("t", 0, term=4, is_leader=True, leadership_changes=2,
                         follower_lag={1: 0, 2: 17}, under_replicated=True),
        RaftGroupMetrics("t", 1, term=3, is_leader=False, leadership_changes=1),
    ]  # fmt: skip
    try:
        found = scrape(BrokerCollector(broker, MetricsSources(raft=lambda: groups)))
        without = scrape(BrokerCollector(broker))
    finally:
        broker.close()
    assert at(found, "rilke_raft_term", topic="t", partition="0") == 4
    assert at(found, "rilke_raft_leader", topic="t", partition="0") == 1
    assert at(found, "rilke_raft_leader", topic="t", partition="1") == 0
    assert at(found, "rilke_raft_leadership_changes_total", topic="t", partition="0") == 2
    assert (
        at(found, "rilke_raft_follower_lag_records", topic="t", partition="0", follower="2") == 17
    )
    assert at(found, "rilke_under_replicated_partitions") == 1
    assert at(without, "rilke_under_replicated_partitions") == 0
    assert not any(name == "rilke_raft_term" for name, _ in without)


# --- the gRPC services' counting and the HTTP listener, in-process ----------------------------


def get(url: str, method: str = "GET") -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_grpc_services_count_requests_errors_bytes_and_records(tmp_path: Path) -> None:
    with running_broker(tmp_path, metrics_listen="127.0.0.1:0") as b:
        b.admin.CreateTopics(
            pb.CreateTopicsRequest(topics=[pb.NewTopic(name="t", num_partitions=1)]),
            timeout=TIMEOUT,
        )
        batch = make_batch([b"a", b"b", b"c"])

        def produce(topic: str) -> Any:
            return b.broker.Produce(
                pb.ProduceRequest(
                    acks=1,
                    timeout_ms=5000,
                    partitions=[pb.ProducePartitionData(topic=topic, partition=0, records=batch)],
                ),
                timeout=TIMEOUT,
            )

        assert not produce("t").partitions[0].HasField("error")
        assert produce("nope").partitions[0].error.code == errors.UnknownTopicOrPartitionError.code
        fetched = b.broker.Fetch(
            pb.FetchRequest(partitions=[pb.FetchPartition(topic="t", partition=0)]),
            timeout=TIMEOUT,
        )
        assert fetched.partitions[0].records
        assert b.server.metrics_address is not None
        url = f"http://127.0.0.1:{b.server.metrics_address[1]}"
        status, body = get(url + "/metrics")
        assert status == 200
        assert get(url + "/health") == (200, b"ok\n")
        found = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
    grpc_produce = {"listener": "grpc", "api": "Produce"}
    assert at(found, "rilke_requests_total", **grpc_produce) == 2
    unknown = str(errors.UnknownTopicOrPartitionError.code)
    assert at(found, "rilke_request_errors_total", **grpc_produce, code=unknown) == 1
    assert at(found, "rilke_request_duration_seconds_count", **grpc_produce) == 2
    assert at(found, "rilke_requests_total", listener="grpc", api="Fetch") == 1
    assert at(found, "rilke_topic_records_in_total", topic="t") == 3
    assert at(found, "rilke_topic_bytes_in_total", topic="t") == len(batch)
    assert at(found, "rilke_topic_records_out_total", topic="t") == 3
    assert at(found, "rilke_topic_bytes_out_total", topic="t") == len(batch)
    assert ("rilke_topic_records_in_total", (("topic", "nope"),)) not in found
    assert any(name.startswith("process_") for name, _ in found)


def test_metrics_http_answers_health_paths_and_bad_requests() -> None:
    serving = [False]

    async def main() -> None:
        from prometheus_client import CollectorRegistry

        server = MetricsServer(CollectorRegistry(), lambda: serving[0])
        host, port = await server.start("127.0.0.1", 0)
        loop = asyncio.get_running_loop()

        async def ask(raw: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(raw)
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), TIMEOUT)
            writer.close()
            return answer

        try:
            url = f"http://{host}:{port}"
            status, body = await loop.run_in_executor(None, get, url + "/health")
            assert (status, body) == (503, b"not serving\n")
            serving[0] = True
            assert await loop.run_in_executor(None, get, url + "/health") == (200, b"ok\n")
            assert (await loop.run_in_executor(None, get, url + "/health", "HEAD"))[0] == 200
            assert (await loop.run_in_executor(None, get, url + "/x"))[0] == 404
            assert (await loop.run_in_executor(None, get, url + "/metrics", "POST"))[0] == 405
            assert (await ask(b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            assert (await ask(b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n")).startswith(
                b"HTTP/1.1 431 "
            )
            assert (await ask(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        finally:
            await server.stop()

    asyncio.run(main())


def test_produce_stream_counts_each_answer_and_a_failed_stream(tmp_path: Path) -> None:
    with running_broker(tmp_path) as b:
        b.admin.CreateTopics(
            pb.CreateTopicsRequest(topics=[pb.NewTopic(name="t", num_partitions=1)]),
            timeout=TIMEOUT,
        )
        requests = [
            pb.ProduceRequest(
                acks=1,
                correlation_id=i,
                partitions=[
                    pb.ProducePartitionData(
                        topic="t", partition=0, records=make_batch([b"s"]) if i < 5 else b"junk"
                    )
                ],
            )
            for i in range(6)
        ]
        assert len(list(b.broker.ProduceStream(iter(requests), timeout=TIMEOUT))) == 6
        call = b.channel.stream_stream("/rilke.v1.Broker/ProduceStream")
        good = pb.ProduceRequest(acks=1, correlation_id=1).SerializeToString()
        with pytest.raises(Exception, match="not a valid ProduceRequest"):
            list(call(iter([good, b"\xff\xff\xff"]), timeout=TIMEOUT))
        stats = b.server.broker.stats
        stream = stats.api("grpc", "ProduceStream")
        assert stream.requests == 7  # six answers, then one of the failed stream
        assert stream.latency.count == 7
        assert stream.errors == {errors.CorruptRecordError.code: 1, RPC_FAILED: 1}
        assert stats.topic("t").records_in == 5


def test_established_connections_reads_the_tcp_tables(tmp_path: Path) -> None:
    header = "  sl  local_address rem_address   st tx_queue rx_queue\n"
    v4 = tmp_path / "tcp"
    v4.write_text(
        header
        + "   0: 00000000:2454 00000000:0000 0A 0:0\n"  # 9300 listening: not counted
        + "   1: 0100007F:2454 0100007F:D431 01 0:0\n"  # established to 9300
        + "   2: 0100007F:D431 0100007F:2454 01 0:0\n"  # the client's end: another port
        + "   3: 0100007F:2454 0100007F:D432 06 0:0\n"  # TIME_WAIT: not counted
    )
    v6 = tmp_path / "tcp6"
    v6.write_text(header + "   0: 00000000000000000000000001000000:2454 0000:D433 01 0:0\n")
    assert established_connections(9300, [str(v4), str(v6)]) == 2
    assert established_connections(9301, [str(v4)]) == 0
    assert established_connections(9300, [str(tmp_path / "none")]) is None
