"""End-to-end: a real `rilke server` process, talked to with raw gRPC stubs."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from produce_batches import batch_values, make_batch
from rilke_broker_process import REPO_ROOT, BrokerFactory, BrokerProcess

from rilke import errors
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc

TIMEOUT = 15


class Stubs:
    def __init__(self, broker: BrokerProcess) -> None:
        self.channel = grpc.insecure_channel(broker.address)
        self.broker = pb_grpc.BrokerStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)

    def create(self, name: str, partitions: int = 1, **configs: str) -> int:
        response = self.admin.CreateTopics(
            pb.CreateTopicsRequest(
                topics=[pb.NewTopic(name=name, num_partitions=partitions, configs=configs)]
            ),
            timeout=TIMEOUT,
        )
        return response.results[0].error.code

    def produce(
        self, records: bytes, topic: str = "t", partition: int = 0, acks: int = 1
    ) -> pb.ProducePartitionResponse:
        request = pb.ProduceRequest(
            acks=acks,
            timeout_ms=10_000,
            partitions=[pb.ProducePartitionData(topic=topic, partition=partition, records=records)],
        )
        return self.broker.Produce(request, timeout=TIMEOUT).partitions[0]

    def fetch_all(self, topic: str = "t", partition: int = 0) -> list[tuple[int, bytes]]:
        out: list[tuple[int, bytes]] = []
        offset = 0
        while True:
            got = self.broker.Fetch(
                pb.FetchRequest(
                    partitions=[
                        pb.FetchPartition(topic=topic, partition=partition, fetch_offset=offset)
                    ]
                ),
                timeout=TIMEOUT,
            ).partitions[0]
            assert got.error.code == 0, got.error.message
            if not got.records:
                return out
            records = [(o, v) for o, v in batch_values(got.records) if o >= offset]
            out.extend(records)
            offset = records[-1][0] + 1

    def offsets(self, topic: str = "t", partition: int = 0) -> tuple[int, int]:
        response = self.broker.ListOffsets(
            pb.ListOffsetsRequest(
                partitions=[
                    pb.ListOffsetsPartition(topic=topic, partition=partition, timestamp=-2),
                    pb.ListOffsetsPartition(topic=topic, partition=partition, timestamp=-1),
                ]
            ),
            timeout=TIMEOUT,
        )
        return response.partitions[0].offset, response.partitions[1].offset

    def close(self) -> None:
        self.channel.close()


def test_produce_fetch_offsets_admin(broker: BrokerProcess) -> None:
    stubs = Stubs(broker)
    try:
        assert stubs.create("t", 2) == 0
        assert stubs.produce(make_batch([b"a", b"b"])).base_offset == 0
        assert stubs.produce(make_batch([b"c"]), partition=1).base_offset == 0
        assert stubs.produce(make_batch([b"d"])).base_offset == 2
        assert stubs.fetch_all() == [(0, b"a"), (1, b"b"), (2, b"d")]
        assert stubs.offsets() == (0, 3)
        meta = stubs.broker.Metadata(pb.MetadataRequest(), timeout=TIMEOUT)
        assert meta.brokers[0].port == broker.port
        assert [(t.name, len(t.partitions)) for t in meta.topics] == [("t", 2)]
        described = stubs.admin.DescribeTopics(
            pb.DescribeTopicsRequest(names=["t"]), timeout=TIMEOUT
        )
        assert [p.high_watermark for p in described.topics[0].partitions] == [3, 1]
        assert described.topics[0].partitions[0].size_bytes > 0
        deleted = stubs.admin.DeleteTopics(pb.DeleteTopicsRequest(names=["t"]), timeout=TIMEOUT)
        assert deleted.results[0].error.code == 0
        assert (
            stubs.produce(make_batch([b"x"])).error.code == errors.UnknownTopicOrPartitionError.code
        )
    finally:
        stubs.close()


def test_log_append_time_topic(broker: BrokerProcess) -> None:
    stubs = Stubs(broker)
    try:
        assert stubs.create("lat", 1, **{"message.timestamp.type": "LogAppendTime"}) == 0
        result = stubs.produce(make_batch([b"x"], timestamp_ms=5), topic="lat")
        assert result.error.code == 0
        assert result.log_append_time_ms > 1_000_000_000_000
    finally:
        stubs.close()


def test_long_poll_wakes_on_append(broker: BrokerProcess) -> None:
    stubs = Stubs(broker)
    try:
        assert stubs.create("t") == 0
        request = pb.FetchRequest(
            max_wait_ms=30_000,
            min_bytes=1,
            partitions=[pb.FetchPartition(topic="t", partition=0, fetch_offset=0)],
        )
        future = stubs.broker.Fetch.future(request, timeout=TIMEOUT + 30)
        # a call answered on the same connection after the poll was sent: the poll has arrived
        stubs.admin.ListTopics(pb.ListTopicsRequest(), timeout=TIMEOUT)
        # and it has not been answered: there is nothing to read
        assert not future.done()
        stubs.produce(make_batch([b"wake"]))
        response = future.result(timeout=TIMEOUT)
        assert batch_values(response.partitions[0].records) == [(0, b"wake")]
    finally:
        stubs.close()


def test_restart_reads_everything_back(broker_factory: BrokerFactory, tmp_path: Path) -> None:
    data = tmp_path / "data"
    broker = broker_factory(data)
    stubs = Stubs(broker)
    expected = []
    try:
        assert stubs.create("t", 1, **{"segment.bytes": "4096"}) == 0
        for i in range(50):
            value = f"record-{i}".encode() * 20
            assert stubs.produce(make_batch([value])).base_offset == i
            expected.append((i, value))
    finally:
        stubs.close()
    assert broker.stop() == 0
    again = broker_factory(data)
    stubs = Stubs(again)
    try:
        assert stubs.fetch_all() == expected
        assert stubs.produce(make_batch([b"more"])).base_offset == 50
    finally:
        stubs.close()


def test_sigterm_shuts_down_cleanly(broker_factory: BrokerFactory, tmp_path: Path) -> None:
    broker = broker_factory(tmp_path / "data")
    stubs = Stubs(broker)
    try:
        assert stubs.create("t") == 0
        stubs.produce(make_batch([b"x"]))
    finally:
        stubs.close()
    # a long poll in flight at shutdown is answered, not dropped
    stubs = Stubs(broker)
    try:
        request = pb.FetchRequest(
            max_wait_ms=60_000,
            min_bytes=1_000_000,
            partitions=[pb.FetchPartition(topic="t", partition=0, fetch_offset=0)],
        )
        poll = stubs.broker.Fetch.future(request, timeout=TIMEOUT + 60)
        # a call answered on the same connection after the poll was sent: the poll has arrived
        stubs.admin.ListTopics(pb.ListTopicsRequest(), timeout=TIMEOUT)
        assert not poll.done()
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGTERM)
        answered = poll.result(timeout=TIMEOUT)
        assert batch_values(answered.partitions[0].records) == [(0, b"x")]
    finally:
        stubs.close()
    assert broker.wait(TIMEOUT) == 0
    assert (tmp_path / "data" / ".clean-shutdown").exists()
    assert "shut down cleanly" in broker.log_text()


def test_second_broker_on_the_same_data_dir_is_refused(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    second = BrokerProcess(broker.data_dir)
    proc = second.spawn()
    try:
        assert second.wait(TIMEOUT) == 1
        assert "in use" in second.log_text()
    finally:
        second.kill()
    assert proc.returncode == 1
    # the first one is still serving
    stubs = Stubs(broker)
    try:
        assert stubs.create("still-here") == 0
    finally:
        stubs.close()


def test_bad_settings_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    env = {"PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "rilke", "server", "--listen", "nope", "--data-dir", str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )
    assert result.returncode == 2
    assert "--listen" in result.stderr and "HOST:PORT" in result.stderr


def test_bad_input_is_refused_and_nothing_written(broker: BrokerProcess) -> None:
    stubs = Stubs(broker)
    try:
        assert stubs.create("t", 1, **{"max.message.bytes": "2000"}) == 0
        good = make_batch([b"x"])
        corrupt = bytearray(good)
        corrupt[-1] ^= 1
        wrong_magic = bytearray(good)
        wrong_magic[16] = 1
        cases = [
            ("nope", 0, good, errors.UnknownTopicOrPartitionError),
            ("t", 3, good, errors.UnknownTopicOrPartitionError),
            ("t" * 300, 0, good, errors.InvalidTopicError),
            ("t", 0, bytes(corrupt), errors.CorruptRecordError),
            ("t", 0, bytes(wrong_magic), errors.CorruptRecordError),
            ("t", 0, good[:40], errors.CorruptRecordError),
            ("t", 0, make_batch([b"y" * 3000]), errors.RecordTooLargeError),
        ]
        for topic, partition, records, error in cases:
            result = stubs.produce(records, topic=topic, partition=partition)
            assert result.error.code == error.code, result.error.message
        assert stubs.create("bad name!") == errors.InvalidTopicError.code
        assert stubs.offsets() == (0, 0)
        for offset in (-1, 1):
            got = stubs.broker.Fetch(
                pb.FetchRequest(
                    partitions=[pb.FetchPartition(topic="t", partition=0, fetch_offset=offset)]
                ),
                timeout=TIMEOUT,
            ).partitions[0]
            assert got.error.code == errors.OffsetOutOfRangeError.code
        # and the broker is still up
        assert stubs.produce(good).base_offset == 0
    finally:
        stubs.close()


@pytest.mark.slow
def test_kill_9_during_acks_all_loses_no_acknowledged_record(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    broker = broker_factory(data)
    setup = Stubs(broker)
    assert setup.create("t", 2, **{"flush.messages": "1", "segment.bytes": "65536"}) == 0
    setup.close()
    acknowledged: list[tuple[int, int, bytes]] = []
    lock = threading.Lock()
    enough = threading.Event()

    def produce_forever(partition: int) -> None:
        stubs = Stubs(broker)
        try:
            for i in range(100_000):
                value = f"p{partition}-{i}-".encode() + b"v" * 200
                try:
                    result = stubs.produce(make_batch([value]), partition=partition, acks=-1)
                except grpc.RpcError:
                    return
                if result.error.code == 0:
                    with lock:
                        acknowledged.append((partition, result.base_offset, value))
                        if len(acknowledged) >= 150:
                            enough.set()
        finally:
            stubs.close()

    producers = [threading.Thread(target=produce_forever, args=(p,)) for p in (0, 1)]
    for thread in producers:
        thread.start()
    assert enough.wait(60)
    broker.kill()
    for thread in producers:
        thread.join(TIMEOUT)
    again = broker_factory(data)
    stubs = Stubs(again)
    try:
        stored = {p: dict(stubs.fetch_all(partition=p)) for p in (0, 1)}  # CRCs checked
        for partition, offset, value in acknowledged:
            assert stored[partition].get(offset) == value
        for p in (0, 1):
            assert sorted(stored[p]) == list(range(len(stored[p])))
    finally:
        stubs.close()


def test_settings_from_a_config_file_and_the_environment(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    config = tmp_path / "rilke.toml"
    config.write_text(
        'auto_create_topics = true\ndefault_partitions = 2\n[log]\n"retention.ms" = 1234\n'
    )
    broker = broker_factory(
        tmp_path / "data", "--config", str(config), env={"RILKE_DEFAULT_PARTITIONS": "3"}
    )
    stubs = Stubs(broker)
    try:
        assert stubs.produce(make_batch([b"x"]), topic="auto").error.code == 0
        meta = stubs.broker.Metadata(pb.MetadataRequest(topics=["auto"]), timeout=TIMEOUT)
        assert len(meta.topics[0].partitions) == 3  # the environment beats the file
        configs = stubs.admin.DescribeConfigs(
            pb.DescribeConfigsRequest(topics=["auto"], include_defaults=True), timeout=TIMEOUT
        )
        values = {e.name: e.value for e in configs.results[0].entries}
        assert values["retention.ms"] == "1234"
    finally:
        stubs.close()
