"""A full disk under a real broker process (issue 8): the client gets a typed, retriable
KafkaStorageError saying the disk is full, the broker stays up and serves reads, and writes
are taken again once space is freed, with nothing torn left behind."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("rilke.storage.manager")

from rilke_broker_process import BrokerProcess
from small_fs import fill, small_file_system

from rilke import Admin, Consumer, NewTopic, Producer, TopicPartition
from rilke.errors import KafkaStorageError

VALUE = b"v" * 4000


def read_values(address: str, timeout_s: float = 20.0) -> list[bytes]:
    """Every record of t-0, up to its log end offset at the call."""
    out: list[bytes] = []
    tp = TopicPartition("t", 0)
    with Consumer(bootstrap_servers=address, auto_offset_reset="earliest") as consumer:
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        deadline = time.monotonic() + timeout_s
        while len(out) < end:
            assert time.monotonic() < deadline, f"read {len(out)} of {end} in {timeout_s} s"
            for records in consumer.poll(200).values():
                out.extend(r.value for r in records)
    return out


def test_a_full_disk_is_a_typed_error_and_writes_resume_once_freed(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs", 8 << 20) as fs:
        broker = BrokerProcess(fs / "data")
        with broker:
            with Admin(broker.address) as admin:
                admin.create_topics([NewTopic("t", 1, configs={"segment.bytes": "262144"})])
            with Producer(broker.address, linger_ms=0, acks="all", retries=0) as producer:
                for i in range(50):
                    producer.send("t", VALUE + b"%d" % i).get(10)
                filler = fill(fs)
                with pytest.raises(KafkaStorageError) as refused:
                    for _ in range(200):  # the first may still fit in the last free page
                        producer.send("t", VALUE + b"full").get(10)
            assert refused.value.retriable
            assert "disk full" in str(refused.value)
            assert str(fs / "data") in str(refused.value)
            assert broker.proc is not None and broker.proc.poll() is None  # still up
            written = read_values(broker.address)  # reads are served meanwhile
            assert written[:50] == [VALUE + b"%d" % i for i in range(50)]
            accepted_while_full = len(written) - 50
            filler.unlink()
            with Producer(broker.address, linger_ms=0, acks="all") as producer:
                for i in range(10):
                    producer.send("t", VALUE + b"after%d" % i).get(10)
        assert broker.proc is not None and broker.proc.returncode == 0
        with BrokerProcess(fs / "data") as again:
            values = read_values(again.address)
        assert values[:50] == [VALUE + b"%d" % i for i in range(50)]
        assert len(values) == 60 + accepted_while_full
        assert values[50 + accepted_while_full :] == [VALUE + b"after%d" % i for i in range(10)]
