"""Consumer groups end to end: real broker processes, consumer processes, the CLI.

- three consumers over a 6-partition topic split it; SIGKILL one and its partitions move to
  the others after its session timeout, and with at-least-once commits no record is skipped;
- a consumer closed gracefully hands over its partitions and nothing is consumed twice;
- a restarted broker keeps committed offsets;
- `rilke group describe` shows the right lag; reset-offsets is a dry run by default and is
  refused while the group has members; delete.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import wait_for

pytest.importorskip("rilke.client.consumer", reason="needs the client library")
pytest.importorskip("rilke.server.broker", reason="needs the broker")

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = Path(__file__).with_name("group_consumer_proc.py")
SESSION_MS = 2000


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


class ConsumerProc:
    """A group_consumer_proc.py child; its JSON lines are collected by a reader thread."""

    def __init__(
        self, bootstrap: str, topic: str, group: str, name: str, session_ms: int = SESSION_MS
    ) -> None:
        self.name = name
        self.lines: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, str(CONSUMER), bootstrap, topic, group, name, str(session_ms)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=_env(),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.lines.append(obj)

    def snapshot(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.lines)

    def owned(self) -> set[int]:
        owned: set[int] = set()
        for obj in self.snapshot():
            if obj.get("event") == "assign":
                owned |= set(obj["partitions"])
            elif obj.get("event") == "revoke":
                owned -= set(obj["partitions"])
        return owned

    def records(self) -> list[tuple[int, int]]:
        return [(o["p"], o["o"]) for o in self.snapshot() if "p" in o]

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None


@pytest.fixture
def consumers() -> Iterator[Callable[..., ConsumerProc]]:
    started: list[ConsumerProc] = []

    def start(*args: str, **kwargs: Any) -> ConsumerProc:
        c = ConsumerProc(*args, **kwargs)
        started.append(c)
        return c

    try:
        yield start
    finally:
        for c in started:
            c.kill()


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from rilke.client.admin import Admin
    from rilke.client.structs import NewTopic

    with Admin(bootstrap) as admin:
        admin.create_topics([NewTopic(name, partitions)])


def produce(bootstrap: str, topic: str, partitions: int, per_partition: int, tag: str) -> None:
    from rilke.client.producer import Producer

    with Producer(bootstrap, acks=-1) as producer:
        for i in range(per_partition):
            for p in range(partitions):
                producer.send(topic, f"{tag}-{p}-{i}".encode(), partition=p)
        producer.flush()


def end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    from rilke.client.admin import Admin
    from rilke.client.structs import TopicPartition

    with Admin(bootstrap) as admin:
        got = admin.list_offsets({TopicPartition(topic, p): "latest" for p in range(partitions)})
    return {tp.partition: ot.offset for tp, ot in got.items()}


def all_consumed(procs: list[ConsumerProc], ends: dict[int, int]) -> bool:
    seen = {rec for c in procs for rec in c.records()}
    return all((p, o) in seen for p, end in ends.items() for o in range(end))


@pytest.mark.slow
def test_sigkill_moves_partitions_and_skips_nothing(broker: Any, consumers: Any) -> None:
    bootstrap = broker.address
    create_topic(bootstrap, "orders", 6)
    produce(bootstrap, "orders", 6, 20, "a")
    cs = [consumers(bootstrap, "orders", "g1", f"c{i}") for i in range(3)]
    wait_for(
        lambda: (
            sorted(p for c in cs for p in c.owned()) == list(range(6))
            and all(len(c.owned()) == 2 for c in cs)
        ),
        60,
        "three members owning two partitions each",
    )
    ends = end_offsets(bootstrap, "orders", 6)
    wait_for(lambda: all_consumed(cs, ends), 60, "the first records consumed")
    victim = cs[0]
    lost = victim.owned()
    killed_at = time.monotonic()
    victim.kill()
    produce(bootstrap, "orders", 6, 20, "b")
    survivors = cs[1:]
    wait_for(
        lambda: lost <= set().union(*(c.owned() for c in survivors)),
        SESSION_MS / 1000 + 30,
        "the killed member's partitions to move",
    )
    moved_after_s = time.monotonic() - killed_at
    ends = end_offsets(bootstrap, "orders", 6)
    wait_for(lambda: all_consumed(cs, ends), 60, "every record consumed")
    # At-least-once: nothing skipped (duplicates of the victim's uncommitted records allowed).
    assert all_consumed(cs, ends)
    print(f"partitions of the killed member moved after {moved_after_s:.2f}s")


@pytest.mark.slow
def test_graceful_close_consumes_nothing_twice(broker: Any, consumers: Any) -> None:
    bootstrap = broker.address
    create_topic(bootstrap, "events", 6)
    produce(bootstrap, "events", 6, 10, "a")
    cs = [consumers(bootstrap, "events", "g2", f"c{i}") for i in range(3)]
    wait_for(
        lambda: all(len(c.owned()) == 2 for c in cs), 60, "three members with two partitions each"
    )
    ends = end_offsets(bootstrap, "events", 6)
    wait_for(lambda: all_consumed(cs, ends), 60, "the first records consumed")
    leaver = cs[0]
    leaver.terminate()
    assert leaver.wait(30) == 0
    assert leaver.snapshot()[-1]["event"] == "closed"
    survivors = cs[1:]
    wait_for(
        lambda: sorted(p for c in survivors for p in c.owned()) == list(range(6)),
        30,
        "the survivors to take every partition",
    )
    produce(bootstrap, "events", 6, 10, "b")
    ends = end_offsets(bootstrap, "events", 6)
    wait_for(lambda: all_consumed(cs, ends), 60, "every record consumed")
    records = [rec for c in cs for rec in c.records()]
    dupes = {r for r in records if records.count(r) > 1}
    assert not dupes, f"consumed twice: {sorted(dupes)[:10]}"


@pytest.mark.slow
def test_committed_offsets_survive_a_broker_restart(broker_factory: Any, tmp_path: Path) -> None:
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    data = tmp_path / "data"
    b = broker_factory(data)
    create_topic(b.address, "logs", 2)
    produce(b.address, "logs", 2, 5, "a")
    c = Consumer(
        bootstrap_servers=b.address,
        group_id="g3",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        c.subscribe(["logs"])
        got = 0
        deadline = time.monotonic() + 60
        while got < 10 and time.monotonic() < deadline:
            got += sum(len(v) for v in c.poll(500).values())
        assert got == 10
        c.commit({TopicPartition("logs", 0): 3, TopicPartition("logs", 1): 5})
    finally:
        c.close()
    assert b.stop(20) == 0
    b2 = broker_factory(data)
    c = Consumer(
        bootstrap_servers=b2.address,
        group_id="g3",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        c.subscribe(["logs"])
        firsts: dict[int, int] = {}
        deadline = time.monotonic() + 60
        while len(firsts) < 1 and time.monotonic() < deadline:
            for tp, records in c.poll(500).items():
                firsts.setdefault(tp.partition, records[0].offset)
        # Partition 1 was committed at its end: only partition 0 has records left, from 3.
        assert firsts == {0: 3}
        committed = c.committed([TopicPartition("logs", 0), TopicPartition("logs", 1)])
        assert {tp.partition: om.offset for tp, om in committed.items()} == {0: 3, 1: 5}
    finally:
        c.close()


def rilke(*args: str, bootstrap: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args, "--bootstrap-servers", bootstrap],
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
    )


@pytest.mark.slow
def test_cli_describe_lag_reset_and_delete(broker: Any, consumers: Any) -> None:
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    bootstrap = broker.address
    create_topic(bootstrap, "clicks", 2)
    produce(bootstrap, "clicks", 2, 5, "a")
    c = Consumer(
        bootstrap_servers=bootstrap,
        group_id="g4",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        c.subscribe(["clicks"])
        wait_for(
            lambda: bool(c.poll(100) or c.assignment()) and len(c.assignment()) == 2,
            60,
            "an assignment",
        )
        c.commit({TopicPartition("clicks", 0): 2, TopicPartition("clicks", 1): 5})
        # While the group has a member, reset is refused, even as a dry run.
        out = rilke("group", "reset-offsets", "g4", "--to-earliest", bootstrap=bootstrap)
        assert out.returncode == 1 and "NonEmptyGroupError" in out.stderr, out.stderr
    finally:
        c.close()
    out = rilke("group", "describe", "g4", "--json", bootstrap=bootstrap)
    assert out.returncode == 0, out.stderr
    desc = json.loads(out.stdout)
    rows = {p["partition"]: p for p in desc["partitions"]}
    assert (rows[0]["committed"], rows[0]["log_end_offset"], rows[0]["lag"]) == (2, 5, 3)
    assert (rows[1]["committed"], rows[1]["log_end_offset"], rows[1]["lag"]) == (5, 5, 0)
    assert rows[0]["lag_seconds"] is not None and rows[0]["lag_seconds"] >= 0
    assert rows[1]["lag_seconds"] == 0
    assert desc["state"] == "Empty"
    text = rilke("group", "describe", "g4", bootstrap=bootstrap)
    assert "LAG" in text.stdout and "clicks" in text.stdout
    listed = rilke("group", "list", bootstrap=bootstrap)
    assert "g4" in listed.stdout
    dry = rilke("group", "reset-offsets", "g4", "--to-earliest", bootstrap=bootstrap)
    assert dry.returncode == 0, dry.stderr
    assert "dry run" in dry.stdout
    same = json.loads(rilke("group", "describe", "g4", "--json", bootstrap=bootstrap).stdout)
    assert same["partitions"][0]["committed"] == 2
    done = rilke(
        "group",
        "reset-offsets",
        "g4",
        "--topic",
        "clicks:0",
        "--shift-by",
        "-1",
        "--execute",
        bootstrap=bootstrap,
    )
    assert done.returncode == 0, done.stderr
    after = json.loads(rilke("group", "describe", "g4", "--json", bootstrap=bootstrap).stdout)
    assert {p["partition"]: p["committed"] for p in after["partitions"]} == {0: 1, 1: 5}
    missing = rilke("group", "describe", "nope", bootstrap=bootstrap)
    assert missing.returncode == 1 and "GroupIdNotFoundError" in missing.stderr
    deleted = rilke("group", "delete", "g4", bootstrap=bootstrap)
    assert deleted.returncode == 0, deleted.stderr
    listed = rilke("group", "list", bootstrap=bootstrap)
    assert "g4" not in listed.stdout


@pytest.mark.slow
def test_consumers_ride_through_a_broker_restart_without_a_rebalance(
    broker_factory: Any, tmp_path: Path, consumers: Any
) -> None:
    from rilke.client.admin import Admin

    data = tmp_path / "data"
    b = broker_factory(data)
    port = b.port
    bootstrap = b.address
    create_topic(bootstrap, "ride", 4)
    produce(bootstrap, "ride", 4, 5, "a")
    # The sessions must outlast the restart and the clients' reconnect backoffs (gRPC's and
    # the circuit breaker's, up to 2 s each), however loaded the machine: a member whose
    # session ran out would be replaced, which is a rebalance.
    cs = [consumers(bootstrap, "ride", "g5", f"c{i}", session_ms=30_000) for i in range(2)]
    wait_for(lambda: all(len(c.owned()) == 2 for c in cs), 60, "two members, two partitions each")
    ends = end_offsets(bootstrap, "ride", 4)
    wait_for(lambda: all_consumed(cs, ends), 60, "the first records consumed")
    with Admin(bootstrap) as admin:
        before = admin.describe_group("g5")
    assert b.stop(20) == 0
    # The same address again: the consumers reconnect to it.
    b2 = broker_factory(data, "--listen", f"127.0.0.1:{port}")
    produce(b2.address, "ride", 4, 5, "b")
    ends = end_offsets(b2.address, "ride", 4)
    wait_for(lambda: all_consumed(cs, ends), 60, "every record consumed after the restart")
    with Admin(b2.address) as admin:
        after = admin.describe_group("g5")
    # The coordinator rebuilt the group from its log: same members, same epoch, no rebalance.
    assert after.group_epoch == before.group_epoch
    assert {m.member_id for m in after.members} == {m.member_id for m in before.members}
    assert all(not c.snapshot() or c.proc.poll() is None for c in cs)
