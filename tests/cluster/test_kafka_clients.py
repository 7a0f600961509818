"""Kafka's own clients against a real `rilke server --kafka-listen`: kafka-python, aiokafka and
confluent-kafka (from PyPI, the ``test`` extra) and kcat (Debian's package; those tests skip,
saying why, where it is not installed). Records cross between them and Rilke's own CLI, and
groups of Kafka clients show their lag in `rilke group describe`."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rilke_broker_process import BrokerProcess

kafka = pytest.importorskip("kafka", reason="kafka-python is not installed (the test extra)")
aiokafka = pytest.importorskip("aiokafka", reason="aiokafka is not installed (the test extra)")
confluent_kafka = pytest.importorskip(
    "confluent_kafka", reason="confluent-kafka is not installed (the test extra)"
)
from confluent_kafka.admin import AdminClient  # noqa: E402
from confluent_kafka.admin import NewTopic as CKNewTopic  # noqa: E402
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic  # noqa: E402
from kafka.errors import TopicAlreadyExistsError  # noqa: E402
from kafka_mixed_group import MixedGroup  # noqa: E402

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0
KCAT = shutil.which("kcat")
needs_kcat = pytest.mark.skipif(
    KCAT is None, reason="kcat is not installed (apt-get install kcat; .ci/run does when root)"
)


class KafkaBroker:
    def __init__(self, process: BrokerProcess, kafka_address: str) -> None:
        self.process = process
        self.grpc = process.address
        self.kafka = kafka_address


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    process = BrokerProcess(
        tmp_path_factory.mktemp("kafka") / "data",
        "--kafka-listen",
        "127.0.0.1:0",
        "--scrub-bytes-per-second",
        "0",
    )
    try:
        process.start()
        address = process.wait_for_line("rilke kafka listener on ")
        yield KafkaBroker(process, address)
    finally:
        try:
            process.stop(10)
        finally:
            process.kill()


def create_topic(broker: KafkaBroker, name: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.kafka)
    try:
        result = admin.create_topics([NewTopic(name, partitions, 1)])
        assert result["topics"][0]["error_code"] == 0, result
    finally:
        admin.close()


def rilke(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def rilke_values(broker: KafkaBroker, topic: str) -> list[str]:
    return rilke("consume", topic, "--bootstrap-servers", broker.grpc).splitlines()


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


# --- admin -----------------------------------------------------------------------------------


def test_create_list_grow_and_delete_topics_with_both_admin_clients(broker: KafkaBroker) -> None:
    admin = KafkaAdminClient(bootstrap_servers=broker.kafka)
    try:
        assert admin.create_topics([NewTopic("adm-kp", 2, 1)])["topics"][0]["error_code"] == 0
        with pytest.raises(TopicAlreadyExistsError, match="already exists"):
            admin.create_topics([NewTopic("adm-kp", 2, 1)])
        assert "adm-kp" in admin.list_topics()
        admin.create_partitions({"adm-kp": NewPartitions(4)})
        assert len(admin.describe_topics(["adm-kp"])[0]["partitions"]) == 4
    finally:
        admin.close()
    ck = AdminClient({"bootstrap.servers": broker.kafka})
    for future in ck.create_topics([CKNewTopic("adm-ck", 3, 1)]).values():
        future.result(DEADLINE_S)
    assert set(ck.list_topics(timeout=DEADLINE_S).topics) >= {"adm-kp", "adm-ck"}
    for future in ck.delete_topics(["adm-kp", "adm-ck"]).values():
        future.result(DEADLINE_S)
    wait_until(
        lambda: not {"adm-kp", "adm-ck"} & set(ck.list_topics(timeout=DEADLINE_S).topics),
        "the deleted topics to go",
    )


# --- produce ---------------------------------------------------------------------------------


def test_kafka_python_produces_idempotent_and_acks_1_with_each_codec(broker: KafkaBroker) -> None:
    create_topic(broker, "kp-produce")
    expected: list[str] = []
    # zstd: kafka-python refuses it against a broker it infers as 0.11 (see KAFKA_PROTOCOL.md).
    for codec in (None, "gzip", "lz4", "snappy"):
        for acks, idempotent in (("all", True), (1, False)):
            producer = kafka.KafkaProducer(
                bootstrap_servers=broker.kafka,
                acks=acks,
                enable_idempotence=idempotent,
                compression_type=codec,
            )
            try:
                values = [f"kp-{codec}-{acks}-{i}" for i in range(5)]
                futures = [producer.send("kp-produce", v.encode()) for v in values]
                producer.flush(DEADLINE_S)
                offsets = [f.get(DEADLINE_S).offset for f in futures]
                assert offsets == sorted(offsets)
                expected += values
            finally:
                producer.close()
    assert rilke_values(broker, "kp-produce") == expected


def test_aiokafka_produces_with_each_codec(broker: KafkaBroker) -> None:
    create_topic(broker, "aio-produce")

    async def produce() -> list[str]:
        sent: list[str] = []
        for codec in (None, "gzip", "lz4", "snappy", "zstd"):
            for acks, idempotent in (("all", True), (1, False)):
                producer = aiokafka.AIOKafkaProducer(
                    bootstrap_servers=broker.kafka,
                    acks=acks,
                    enable_idempotence=idempotent,
                    compression_type=codec,
                )
                await producer.start()
                try:
                    for i in range(3):
                        value = f"aio-{codec}-{acks}-{i}"
                        await producer.send_and_wait("aio-produce", value.encode())
                        sent.append(value)
                finally:
                    await producer.stop()
        return sent

    expected = asyncio.run(produce())
    assert rilke_values(broker, "aio-produce") == expected


def test_confluent_kafka_produces_with_each_codec(broker: KafkaBroker) -> None:
    create_topic(broker, "ck-produce")
    expected: list[str] = []
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        for acks, idempotent in (("all", True), ("1", False)):
            producer = confluent_kafka.Producer(
                {
                    "bootstrap.servers": broker.kafka,
                    "acks": acks,
                    "enable.idempotence": idempotent,
                    "compression.type": codec,
                    "linger.ms": 5,
                }
            )
            errors: list[Any] = []
            values = [f"ck-{codec}-{acks}-{i}" for i in range(5)]
            for v in values:
                producer.produce(
                    "ck-produce",
                    v.encode(),
                    on_delivery=lambda err, msg, out=errors: out.append(err),
                )
            assert producer.flush(DEADLINE_S) == 0
            assert errors == [None] * 5
            expected += values
    assert rilke_values(broker, "ck-produce") == expected


# --- groups ----------------------------------------------------------------------------------


def _produce_kp(broker: KafkaBroker, topic: str, values: list[str]) -> None:
    producer = kafka.KafkaProducer(bootstrap_servers=broker.kafka)
    try:
        for v in values:
            producer.send(topic, v.encode())
        producer.flush(DEADLINE_S)
    finally:
        producer.close()


def _poll_values(consumer: Any, count: int) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + DEADLINE_S
    while len(got) < count:
        assert time.monotonic() < deadline, f"consumed only {got}"
        for records in consumer.poll(timeout_ms=200, max_records=count - len(got)).values():
            got += [r.value.decode() for r in records]
    return got


def test_group_resumes_at_manual_then_automatic_commits(broker: KafkaBroker) -> None:
    create_topic(broker, "grp", partitions=2)
    values = [f"g-{i}" for i in range(30)]
    _produce_kp(broker, "grp", values)
    seen: list[str] = []
    first = kafka.KafkaConsumer(
        "grp",
        bootstrap_servers=broker.kafka,
        group_id="resume",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        seen += _poll_values(first, 10)
        first.commit()
    finally:
        first.close(autocommit=False)
    second = kafka.KafkaConsumer(
        "grp",
        bootstrap_servers=broker.kafka,
        group_id="resume",
        enable_auto_commit=True,
        auto_commit_interval_ms=100,
        auto_offset_reset="earliest",
    )
    try:
        seen += _poll_values(second, 10)
    finally:
        second.close()  # commits what it consumed
    third = kafka.KafkaConsumer(
        "grp", bootstrap_servers=broker.kafka, group_id="resume", auto_offset_reset="earliest"
    )
    try:
        seen += _poll_values(third, 10)
        assert third.poll(timeout_ms=500) == {}
    finally:
        third.close()
    assert sorted(seen) == sorted(values)  # none twice, none missed
    describe = rilke("group", "describe", "resume", "--bootstrap-servers", broker.grpc)
    assert "total lag 0" in describe, describe


def test_one_group_mixes_the_three_python_libraries(broker: KafkaBroker) -> None:
    create_topic(broker, "mixed", partitions=6)
    group = MixedGroup("mixed", "mix", [broker.kafka] * 3)

    def produce(already: int) -> list[str]:
        chunk = [f"m-{already + i}" for i in range(12)]
        _produce_kp(broker, "mixed", chunk)
        return chunk

    group.start()
    try:
        produced = group.share_until_all_consumed(produce, 60)
    finally:
        group.stop(DEADLINE_S)
    assert not group.errors, group.errors
    assert group.consumed() == produced
    assert all(group.got.values()), {k: len(v) for k, v in group.got.items()}


# --- kcat ------------------------------------------------------------------------------------


def kcat(*args: str, stdin: str | None = None) -> str:
    assert KCAT is not None
    done = subprocess.run(
        [KCAT, *args], input=stdin, capture_output=True, text=True, timeout=DEADLINE_S, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@needs_kcat
def test_kcat_produce_consume_group_and_metadata_with_rilkes_cli(broker: KafkaBroker) -> None:
    create_topic(broker, "kcat", partitions=2)
    kcat("-b", broker.kafka, "-P", "-t", "kcat", "-p", "0", "-z", "lz4", stdin="one\ntwo\n")
    assert rilke_values(broker, "kcat") == ["one", "two"]
    rilke(
        "produce", "kcat", "--partition", "1", "--bootstrap-servers", broker.grpc, stdin="three\n"
    )
    consumed = kcat("-b", broker.kafka, "-C", "-t", "kcat", "-o", "beginning", "-e", "-q")
    assert sorted(consumed.split()) == ["one", "three", "two"]
    grouped = kcat("-b", broker.kafka, "-G", "kcat-group", "kcat", "-o", "beginning", "-e", "-q")
    assert sorted(grouped.split()) == ["one", "three", "two"]
    kcat("-b", broker.kafka, "-P", "-t", "kcat", "-p", "0", stdin="four\n")
    describe = rilke("group", "describe", "kcat-group", "--bootstrap-servers", broker.grpc)
    assert "total lag 1" in describe, describe
    metadata = kcat("-b", broker.kafka, "-L", "-t", "kcat")
    host, port = broker.kafka.rsplit(":", 1)
    assert f"broker 0 at {host}:{port} (controller)" in metadata
    assert 'topic "kcat" with 2 partitions' in metadata
