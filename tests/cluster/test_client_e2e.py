"""End to end: the client library and the `rilke` command against a real broker process.

Uses the ``broker`` and ``broker_factory`` fixtures of tests/cluster/conftest.py (see
BROKER_NOTES.md); skipped where the broker is not part of the tree yet.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("rilke_broker_process")
pytest.importorskip("rilke.storage.manager")

from rilke import (
    Admin,
    Consumer,
    NewTopic,
    Producer,
    TopicPartition,
    aio,
)
from rilke.client.partitioner import partition_for_key
from rilke.errors import UnknownTopicOrPartitionError

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_all(address, topic, partitions, expected, timeout_s=20.0):
    """Every record of ``topic`` from the start, waiting until ``expected`` have come."""
    out = []
    with Consumer(bootstrap_servers=address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            for recs in c.poll(200).values():
                out.extend(recs)
    return out


def create(address, topic, partitions=1, configs=None):
    with Admin(address) as admin:
        admin.create_topics([NewTopic(topic, partitions, configs=configs)])


def test_blocking_produce_and_consume(broker):
    create(broker.address, "orders", 3)
    keys = [f"customer-{i % 17}".encode() for i in range(600)]
    with Producer(broker.address, linger_ms=2) as p:
        futures = [
            p.send("orders", f"order-{i}", key=k, headers=[("n", str(i))])
            for i, k in enumerate(keys)
        ]
        p.flush(20)
        metadata = [f.get(5) for f in futures]
    for k, md in zip(keys, metadata, strict=True):
        assert md.partition == partition_for_key(k, 3)
    records = read_all(broker.address, "orders", 3, 600)
    assert len(records) == 600
    by_partition: dict[int, list[int]] = {}
    for r in records:
        i = int(r.value.decode().split("-")[1])
        assert r.key == keys[i] and r.headers == (("n", str(i).encode()),)
        by_partition.setdefault(r.partition, []).append(i)
    # Order is kept within each partition.
    for ids in by_partition.values():
        assert ids == sorted(ids)
    offsets = {(md.partition, md.offset) for md in metadata}
    assert offsets == {(r.partition, r.offset) for r in records}


def test_asyncio_produce_and_consume(broker):
    async def main():
        async with aio.Admin(broker.address) as admin:
            await admin.create_topics([aio.NewTopic("events", 2)])
        async with aio.Producer(broker.address, acks="all", compression="lz4") as p:
            futs = [await p.send("events", b"e%d" % i, partition=i % 2) for i in range(100)]
            await p.flush(20)
            mds = [await f for f in futs]
        async with aio.Consumer(
            bootstrap_servers=broker.address, auto_offset_reset="earliest"
        ) as c:
            c.assign([aio.TopicPartition("events", 0), aio.TopicPartition("events", 1)])
            got = []
            deadline = time.monotonic() + 20
            while len(got) < 100 and time.monotonic() < deadline:
                for recs in (await c.getmany(200)).values():
                    got.extend(recs)
            ends = await c.end_offsets([aio.TopicPartition("events", 0)])
        return mds, got, ends

    mds, got, ends = asyncio.run(main())
    assert sorted(r.value for r in got) == sorted(b"e%d" % i for i in range(100))
    assert {md.offset for md in mds if md.partition == 0} == set(range(50))
    assert ends == {aio.TopicPartition("events", 0): 50}


def test_unknown_topic_and_bad_partition_are_typed_errors(broker):
    with Producer(broker.address) as p, pytest.raises(UnknownTopicOrPartitionError):
        p.send("missing", b"x")


def test_restart_reads_everything_back(broker_factory):
    b = broker_factory()
    create(b.address, "durable", 2)
    with Producer(b.address, acks="all") as p:
        for i in range(500):
            p.send("durable", b"r%d" % i)
        p.flush(20)
    assert b.stop() == 0
    b2 = broker_factory()
    records = read_all(b2.address, "durable", 2, 500)
    assert sorted(r.value for r in records) == sorted(b"r%d" % i for i in range(500))


@pytest.mark.slow
def test_acknowledged_records_survive_kill_9(broker_factory):
    b = broker_factory()
    create(b.address, "acked", 1, configs={"flush.messages": "1"})
    acked: list[bytes] = []
    lock = threading.Lock()
    stop = threading.Event()

    def produce():
        with Producer(
            b.address,
            acks="all",
            linger_ms=1,
            delivery_timeout_ms=3000,
            request_timeout_ms=1000,
            retry_backoff_ms=50,
        ) as p:
            i = 0
            while not stop.is_set():
                value = b"v%d" % i

                def ok(_md, value=value):
                    with lock:
                        acked.append(value)

                p.send("acked", value).add_callback(ok)
                i += 1
                if i % 200 == 0:
                    time.sleep(0.005)
            try:
                p.flush(5)
            except Exception:
                pass
            p.close(0.5)

    t = threading.Thread(target=produce)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with lock:
            if len(acked) >= 2000:
                break
        time.sleep(0.01)
    b.kill()
    stop.set()
    t.join(30)
    with lock:
        survivors = set(acked)
    assert len(survivors) >= 2000
    b2 = broker_factory()
    records = read_all(b2.address, "acked", 1, len(survivors), timeout_s=30)
    values = {r.value for r in records}
    assert survivors <= values
    assert [r.offset for r in records] == list(range(len(records)))


def _rilke(*args, stdin=None, timeout=60):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def test_cli_round_trip(broker):
    b = ["--bootstrap-servers", broker.address]
    r = _rilke("topic", "create", "cli", "--partitions", "2", *b)
    assert r.returncode == 0, r.stderr
    r = _rilke("topic", "create", "cli", *b)
    assert r.returncode == 1 and r.stderr.count(b"\n") == 1 and b"TopicAlreadyExists" in r.stderr
    r = _rilke(
        "produce", "cli", "--key-separator", "=", "--acks", "all", *b, stdin=b"a=1\nb=2\nc=3\n"
    )
    assert r.returncode == 0, r.stderr
    r = _rilke("consume", "cli", "--format", "json", *b)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert sorted((row["key"], row["value"]) for row in rows) == [
        ("a", "1"),
        ("b", "2"),
        ("c", "3"),
    ]
    assert {row["partition"] for row in rows} == {
        partition_for_key(k, 2) for k in (b"a", b"b", b"c")
    }
    r = _rilke("offsets", "cli", "--json", *b)
    assert r.returncode == 0
    assert sum(p["latest"] for p in json.loads(r.stdout)["partitions"]) == 3
    r = _rilke("consume", "nope", *b)
    assert r.returncode == 1 and b"nope" in r.stderr
    r = _rilke("topic", "alter-config", "cli", "--set", "retention.ms=3600000", *b)
    assert r.returncode == 0, r.stderr
    r = _rilke("topic", "describe", "cli", "--json", *b)
    assert r.returncode == 0, r.stderr
    (described,) = json.loads(r.stdout)
    assert described["configs"].get("retention.ms") == "3600000"
    assert sum(p["high_watermark"] for p in described["partitions"]) == 3
    r = _rilke("topic", "alter-config", "cli", "--set", "no.such.config=1", *b)
    assert r.returncode == 1 and b"InvalidConfigError" in r.stderr
    env_only = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "RILKE_BOOTSTRAP_SERVERS": broker.address,
    }
    r = subprocess.run(
        [sys.executable, "-m", "rilke", "topic", "list"],
        capture_output=True,
        env=env_only,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0 and r.stdout.split() == [b"cli"]


@pytest.mark.slow
def test_bench_commands_run(broker, tmp_path):
    out = tmp_path / "p.json"
    r = _rilke(
        "bench",
        "produce",
        "-b",
        broker.address,
        "--count",
        "3000",
        "--no-progress",
        "--json",
        str(out),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["records"] == 3000
    out = tmp_path / "c.json"
    r = _rilke(
        "bench",
        "consume",
        "-b",
        broker.address,
        "--count",
        "3000",
        "--live-seconds",
        "0.5",
        "--live-rate",
        "1000",
        "--no-progress",
        "--json",
        str(out),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["records"] == 3000 and result["live_records"] > 0


@pytest.mark.slow
def test_bench_stall_runs(broker, tmp_path):
    out = tmp_path / "s.json"
    r = _rilke(
        "bench",
        "stall",
        "-b",
        broker.address,
        "--records",
        "2000",
        "--seconds",
        "0.3",
        "--retention-mb",
        "1",
        "--json",
        str(out),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert set(json.loads(out.read_text())["phases"]) == {
        "idle",
        "compaction",
        "retention",
        "fsync",
    }


@pytest.mark.slow
def test_producer_rides_out_a_broker_restart(broker_factory):
    b = broker_factory()
    port = b.port
    create(b.address, "restarts", 1)
    with Producer(
        b.address,
        acks="all",
        delivery_timeout_ms=60_000,
        request_timeout_ms=2000,
        retry_backoff_ms=20,
        retry_backoff_max_ms=200,
    ) as p:
        first = [p.send("restarts", b"a%d" % i) for i in range(300)]
        p.flush(20)
        assert b.stop() == 0
        # Sent while the broker is down: retried until it is back on the same port.
        second = [p.send("restarts", b"b%d" % i) for i in range(300)]
        b2 = broker_factory(None, "--listen", f"127.0.0.1:{port}")
        p.flush(60)
        assert all(f.succeeded() for f in first + second)
    values = [r.value for r in read_all(b2.address, "restarts", 1, 600)]
    # Each record exactly once, in order.
    assert values == [b"a%d" % i for i in range(300)] + [b"b%d" % i for i in range(300)]


def test_stream_produce_path(broker):
    create(broker.address, "streamed", 2)
    with Producer(
        broker.address, produce_path="stream", acks="all", batch_size=4096, linger_ms=0
    ) as p:
        futs = [p.send("streamed", b"s%d" % i, partition=i % 2) for i in range(2000)]
        p.flush(30)
        offsets = sorted((f.get(1).partition, f.get(1).offset) for f in futs)
    assert offsets == sorted([(0, i) for i in range(1000)] + [(1, i) for i in range(1000)])
    values = [r.value for r in read_all(broker.address, "streamed", 2, 2000) if r.partition == 0]
    assert values == [b"s%d" % i for i in range(0, 2000, 2)]


def test_acks_zero(broker):
    create(broker.address, "fire-and-forget", 1)
    with Producer(broker.address, acks=0) as p:
        futs = [p.send("fire-and-forget", b"f%d" % i) for i in range(100)]
        p.flush(20)
        assert {f.get(1).offset for f in futs} == {-1}
    assert len(read_all(broker.address, "fire-and-forget", 1, 100)) == 100


def test_large_records(broker):
    from rilke.errors import MessageSizeTooLargeError

    create(broker.address, "large", 1)
    with Producer(broker.address) as p:
        small = [p.send("large", b"s" * 1000) for _ in range(3)]
        big = p.send("large", b"b" * 900_000)
        assert big.get(20).offset == 3
        assert [f.get(1).offset for f in small] == [0, 1, 2]
        with pytest.raises(MessageSizeTooLargeError, match="max_request_size"):
            p.send("large", b"x" * 2_000_000)
    records = read_all(broker.address, "large", 1, 4)
    assert [len(r.value) for r in records] == [1000, 1000, 1000, 900_000]


@pytest.mark.slow
def test_consumer_rides_out_a_broker_restart(broker_factory):
    b = broker_factory()
    port = b.port
    create(b.address, "follow", 1)
    with Producer(b.address) as p:
        p.send("follow", b"before").get(10)
    with Consumer(
        bootstrap_servers=b.address,
        auto_offset_reset="earliest",
        request_timeout_ms=2000,
        retry_backoff_ms=20,
        retry_backoff_max_ms=200,
    ) as c:
        c.assign([TopicPartition("follow", 0)])
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            for recs in c.poll(200).values():
                got.extend(recs)
        assert [r.value for r in got] == [b"before"]
        assert b.stop() == 0
        assert c.poll(300) == {}  # the broker is away: nothing, and no exception
        b2 = broker_factory(None, "--listen", f"127.0.0.1:{port}")
        with Producer(b2.address) as p:
            p.send("follow", b"after").get(10)
        deadline = time.monotonic() + 15
        while len(got) < 2 and time.monotonic() < deadline:
            for recs in c.poll(200).values():
                got.extend(recs)
    assert [(r.offset, r.value) for r in got] == [(0, b"before"), (1, b"after")]


def test_seek_and_offsets_for_times(broker):
    create(broker.address, "timed", 1)
    tp = TopicPartition("timed", 0)
    with Producer(broker.address) as p:
        for i in range(10):
            p.send("timed", b"t%d" % i, timestamp_ms=1_000_000 + i * 1000)
        p.flush(20)
    with Consumer(bootstrap_servers=broker.address) as c:
        c.assign([tp])
        assert c.beginning_offsets([tp]) == {tp: 0} and c.end_offsets([tp]) == {tp: 10}
        found = c.offsets_for_times({tp: 1_004_500})[tp]
        assert found is not None and found.offset == 5
        assert c.offsets_for_times({tp: 9_999_999})[tp] is None
        c.seek(tp, found.offset)
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 5 and time.monotonic() < deadline:
            for recs in c.poll(200).values():
                got.extend(recs)
        assert [(r.offset, r.timestamp, r.timestamp_type) for r in got] == [
            (i, 1_000_000 + i * 1000, 0) for i in range(5, 10)
        ]
        c.seek_to_end()
        assert c.position(tp) == 10 and c.poll(100) == {}
