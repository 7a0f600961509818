"""End to end: a Kafka client's (classic protocol) group seen and moved with Rilke's CLI:
`rilke group describe` shows its members and what they consume, `rilke group reset-offsets`
is refused while they live and works once they have left, and the group resumes there."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from rilke_broker_process import BrokerProcess

kafka = pytest.importorskip("kafka", reason="kafka-python is not installed (the test extra)")

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0


@pytest.fixture
def broker(tmp_path: Any) -> Iterator[tuple[str, str]]:
    process = BrokerProcess(
        tmp_path / "data", "--kafka-listen", "127.0.0.1:0", "--scrub-bytes-per-second", "0"
    )
    try:
        process.start()
        yield process.address, process.wait_for_line("rilke kafka listener on ")
    finally:
        try:
            process.stop(10)
        finally:
            process.kill()


def rilke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )


def poll(consumer: Any, count: int) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < count:
        assert time.monotonic() < deadline, f"consumed only {got}"
        for records in consumer.poll(timeout_ms=200, max_records=count - len(got)).values():
            got += [r.value.decode() for r in records]
    return got


def test_kafka_clients_group_in_describe_and_reset_offsets(broker: tuple[str, str]) -> None:
    grpc_address, kafka_address = broker
    assert rilke("topic", "create", "kg", "-p", "2", "-b", grpc_address).returncode == 0
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_address)
    try:
        for i in range(20):
            producer.send("kg", f"v-{i}".encode(), partition=i % 2)
        producer.flush(DEADLINE_S)
    finally:
        producer.close()

    consumer = kafka.KafkaConsumer(
        "kg",
        bootstrap_servers=kafka_address,
        group_id="kgroup",
        client_id="kp-client",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        assert len(poll(consumer, 20)) == 20
        consumer.commit()
        done = rilke("group", "describe", "kgroup", "--json", "-b", grpc_address)
        assert done.returncode == 0, done.stderr
        described = json.loads(done.stdout)
        assert described["state"] == "Stable"
        [member] = described["members"]
        assert member["client_id"] == "kp-client"
        assert member["assignment"] == [["kg", 0], ["kg", 1]]
        by_partition = {p["partition"]: p for p in described["partitions"]}
        assert {p["committed"] for p in by_partition.values()} == {10}
        assert {p["member_id"] for p in by_partition.values()} == {member["member_id"]}
        listed = rilke("group", "list", "--json", "-b", grpc_address)
        groups = json.loads(listed.stdout)
        assert any(g["group_id"] == "kgroup" and g["members"] == 1 for g in groups), groups
        refused = rilke(
            "group", "reset-offsets", "kgroup", "--to-earliest", "--execute", "-b", grpc_address
        )
        assert refused.returncode != 0
        assert "live member" in refused.stderr, refused.stderr
    finally:
        consumer.close(autocommit=False)

    done = rilke(
        "group", "reset-offsets", "kgroup", "--to-earliest", "--execute", "-b", grpc_address
    )
    assert done.returncode == 0, done.stderr
    again = kafka.KafkaConsumer(
        "kg", bootstrap_servers=kafka_address, group_id="kgroup", enable_auto_commit=False
    )
    try:
        assert sorted(poll(again, 20)) == sorted(f"v-{i}" for i in range(20))  # from 0 again
    finally:
        again.close(autocommit=False)
