"""End to end: `rilke server --metrics-listen` serves /metrics and /health (a real process on
127.0.0.1, OS-chosen ports, a temporary data directory)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from rilke_broker_process import REPO_ROOT, BrokerFactory

from rilke import Admin, Consumer, NewTopic, Producer, TopicPartition
from rilke.errors import UnknownTopicOrPartitionError
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
DEADLINE_S = 30.0


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=DEADLINE_S) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def samples(metrics_address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = get(f"http://{metrics_address}/metrics")
    assert status == 200
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def test_metrics_show_produce_consume_lag_and_errors(broker_factory: BrokerFactory) -> None:
    broker = broker_factory(
        None,
        "--metrics-listen",
        "127.0.0.1:0",
        "--kafka-listen",
        "127.0.0.1:0",
        "--scrub-bytes-per-second",
        "0",
    )
    kafka_address = broker.wait_for_line("rilke kafka listener on ")
    metrics = broker.wait_for_line("rilke metrics listening on ")
    assert get(f"http://{metrics}/health") == (200, "ok\n")
    assert get(f"http://{metrics}/nothing")[0] == 404

    with Admin(broker.address) as admin:
        admin.create_topics([NewTopic("m", 1)])
    with Producer(broker.address, linger_ms=5) as producer:
        for i in range(500):
            producer.send("m", f"value-{i}".encode())
        producer.flush(DEADLINE_S)
    with Consumer(
        bootstrap_servers=broker.address,
        group_id="readers",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    ) as consumer:
        consumer.assign([TopicPartition("m", 0)])
        got = 0
        deadline = time.monotonic() + DEADLINE_S
        while got < 500:
            assert time.monotonic() < deadline, f"consumed only {got}"
            got += sum(len(records) for records in consumer.poll(200).values())
        consumer.commit()
    with Producer(broker.address, linger_ms=0) as producer:
        for i in range(20):
            producer.send("m", f"late-{i}".encode())
        producer.flush(DEADLINE_S)
    with (
        Consumer(bootstrap_servers=broker.address) as consumer,
        pytest.raises(UnknownTopicOrPartitionError),
    ):
        consumer.end_offsets([TopicPartition("no-such-topic", 0)])

    with Admin(broker.address) as admin:
        admin.list_topics()  # a gRPC connection open while scraping
        found = samples(metrics)
    assert value(found, "rilke_connections", listener="grpc") >= 1
    assert value(found, "rilke_connections", listener="kafka") == 0
    assert value(found, "rilke_topic_records_in_total", topic="m") == 520
    size = value(found, "rilke_partition_size_bytes", topic="m", partition="0")
    assert value(found, "rilke_topic_bytes_in_total", topic="m") == size > 0
    assert value(found, "rilke_topic_records_out_total", topic="m") >= 500
    assert value(found, "rilke_partition_log_end_offset", topic="m", partition="0") == 520
    assert value(found, "rilke_partition_high_watermark", topic="m", partition="0") == 520
    group = {"group": "readers", "topic": "m", "partition": "0"}
    assert value(found, "rilke_consumer_group_committed_offset", **group) == 500
    assert value(found, "rilke_consumer_group_lag_records", **group) == 20
    assert value(found, "rilke_consumer_group_lag_seconds", **group) >= 0
    assert value(found, "rilke_requests_total", listener="grpc", api="Produce") >= 2
    assert value(found, "rilke_requests_total", listener="grpc", api="OffsetCommit") == 1
    # The client's Metadata request for the unknown topic: that topic answered with its code.
    unknown = str(UnknownTopicOrPartitionError.code)
    errors = value(
        found, "rilke_request_errors_total", listener="grpc", api="Metadata", code=unknown
    )
    assert errors >= 1
    fetches = value(found, "rilke_request_duration_seconds_count", listener="grpc", api="Fetch")
    assert fetches >= 1
    assert value(found, "rilke_fsync_duration_seconds_count") >= 1  # the offsets topic fsyncs
    assert value(found, "rilke_segment_files_open") >= 1
    assert value(found, "rilke_under_replicated_partitions") == 0

    # The Kafka listener counts into the same series.
    import kafka

    producer = kafka.KafkaProducer(bootstrap_servers=kafka_address)
    try:
        for i in range(10):
            producer.send("m", f"kafka-{i}".encode(), partition=0)
        producer.flush(DEADLINE_S)
    finally:
        producer.close()
    found = samples(metrics)
    assert value(found, "rilke_topic_records_in_total", topic="m") == 530
    assert value(found, "rilke_requests_total", listener="kafka", api="Produce") >= 1
    assert value(found, "rilke_partition_log_end_offset", topic="m", partition="0") == 530


def test_metrics_listen_from_env_and_bad_values(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    broker = broker_factory(
        None, "--scrub-bytes-per-second", "0", env={"RILKE_METRICS_LISTEN": "127.0.0.1:0"}
    )
    metrics = broker.wait_for_line("rilke metrics listening on ")
    wait_for(lambda: get(f"http://{metrics}/health")[0] == 200, DEADLINE_S, "/health 200")
    assert "rilke_build_info" in get(f"http://{metrics}/metrics")[1]

    for bad, message in (
        ("nonsense", "metrics_listen (from --metrics-listen): 'nonsense' is not HOST:PORT"),
        ("127.0.0.1:70000", "is not HOST:PORT with a port 0-65535"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "rilke", "server", "--data-dir", str(tmp_path / "bad"),
             "--metrics-listen", bad],
            check=False, capture_output=True, text=True, timeout=DEADLINE_S, cwd=REPO_ROOT,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert message in done.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "rilke", "server", "--data-dir", str(tmp_path / "taken"),
             "--listen", "127.0.0.1:0", "--scrub-bytes-per-second", "0",
             "--metrics-listen", f"127.0.0.1:{port}"],
            check=False, capture_output=True, text=True, timeout=DEADLINE_S, cwd=REPO_ROOT,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"cannot listen on 127.0.0.1:{port} for metrics" in done.stderr


def dockerfile_healthcheck() -> list[str]:
    """The exec-form command of docker/Dockerfile's HEALTHCHECK."""
    text = (REPO_ROOT / "docker" / "Dockerfile").read_text().replace("\\\n", " ")
    line = next(line for line in text.splitlines() if line.startswith("HEALTHCHECK"))
    return json.loads(line[line.index("CMD") + 3 :])


def test_the_dockerfile_healthcheck_asks_health_on_the_metrics_port(
    broker_factory: BrokerFactory,
) -> None:
    dockerfile = (REPO_ROOT / "docker" / "Dockerfile").read_text()
    assert "RILKE_METRICS_LISTEN=0.0.0.0:9644" in dockerfile
    command = dockerfile_healthcheck()
    assert command[0] == "python" and "http://127.0.0.1:9644/health" in command[-1]
    broker = broker_factory(
        None, "--scrub-bytes-per-second", "0", "--metrics-listen", "127.0.0.1:0"
    )
    port = broker.wait_for_line("rilke metrics listening on ").rpartition(":")[2]
    here = [sys.executable, *command[1:-1], command[-1].replace(":9644/", f":{port}/")]
    done = subprocess.run(here, check=False, capture_output=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr
    broker.stop()
    done = subprocess.run(here, check=False, capture_output=True, timeout=DEADLINE_S)
    assert done.returncode != 0  # nothing listens: unhealthy


def test_compose_advertises_the_service_name_and_dockerignore_keeps_the_context_small() -> None:
    compose = (REPO_ROOT / "docker" / "compose.yaml").read_text()
    # Every node tells the others and the clients its service name, never 0.0.0.0.
    for node in (1, 2, 3):
        assert f"RILKE_ADVERTISED_LISTEN: rilke-{node}:9292" in compose
    assert "RILKE_ADVERTISED_LISTEN: 0.0.0.0" not in compose
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignored = {line.strip() for line in lines if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", "rilke-data", "**/__pycache__", ".mypy_cache"} <= ignored
    assert not {"rilke", "pyproject.toml", "README.md"} & ignored  # what the image copies
