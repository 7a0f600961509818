"""Partition moves on real clusters: four `rilke server` processes on 127.0.0.1.

`rilke topic reassign` refuses bad input with a clear error and changes nothing; a
reassignment and a decommission while an idempotent producer writes acks=all end with the
new replicas holding every acknowledged record exactly once; `rilke cluster rebalance`
plans nothing on a balanced cluster.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import ClusterNodes, cluster_of, formed, rilke_cli
from log_checks import check_exactly_once, log_bytes, read_all
from waiting import wait_for

from rilke import Producer

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    with cluster_of(tmp_path, 4) as nodes:
        yield nodes


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return rilke_cli(*args, timeout=90)


def start(cluster: ClusterNodes) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster), FORM_TIMEOUT_S, "the four nodes to form a cluster")


def replicas_of(cluster: ClusterNodes, node: int, topic: str) -> dict[int, tuple[int, ...]]:
    return {p: r for p, _leader, r in cluster.topics(node).get(topic, [])}


def info(cluster: ClusterNodes, node: int) -> dict[str, Any]:
    out = cli("cluster", "info", "--json", "-b", cluster.address(node))
    assert out.returncode == 0, out.stderr
    parsed: dict[str, Any] = json.loads(out.stdout)
    return parsed


def test_reassign_refuses_bad_input_and_changes_nothing(cluster: ClusterNodes) -> None:
    start(cluster)
    assert not cluster.create_topic(1, "t", partitions=2, replication_factor=3).error.code
    wait_for(lambda: len(replicas_of(cluster, 2, "t")) == 2, 20, "topic t on node 2")
    before = replicas_of(cluster, 2, "t")
    outside = next(b for b in (1, 2, 3, 4) if b not in before[0])
    inside = list(before[0])
    b = cluster.address(2)
    cases = [
        (["nope", "0", "--replicas", "1,2,3"], "'nope' does not exist"),
        (["t", "7", "--replicas", "1,2,3"], "no partition 7"),
        (["t", "0", "--replicas", "1,2,9"], "[9] are not registered"),
        (["t", "0", "--replicas", f"{inside[0]},{outside}"], "pass --force"),
        (["t", "0", "--replicas", f"{inside[0]},{inside[0]},{outside}"], "twice"),
        (["t", "0", "--replicas", "1,x"], "--replicas takes broker ids"),
    ]
    for args, message in cases:
        out = cli("topic", "reassign", *args, "-b", b)
        assert out.returncode != 0, (args, out.stdout)
        assert message in out.stderr, (args, out.stderr)
    assert replicas_of(cluster, 2, "t") == before
    assert info(cluster, 3)["moves"] == []
    same = cli("topic", "reassign", "t", "0", "--replicas", ",".join(map(str, inside)), "-b", b)
    assert same.returncode == 0 and "already" in same.stdout, same.stderr
    gone = cli("cluster", "decommission", "9", "-b", b)
    assert gone.returncode != 0 and "not registered" in gone.stderr, gone.stderr
    balanced = cli("cluster", "rebalance", "--dry-run", "--json", "-b", b)
    assert balanced.returncode == 0, balanced.stderr
    assert json.loads(balanced.stdout)["moves"] == []  # placement spread them already


# --- moves while producing ---------------------------------------------------------------

TOPIC = "moving"
MOVE_TIMEOUT_S = 90.0


class Writer:
    """An idempotent acks=all producer on a thread until ``stop()``, spreading records over
    the topic's partitions; what was acknowledged, as (partition, offset, value)."""

    def __init__(self, address: str, partitions: int) -> None:
        self.address = address
        self.partitions = partitions
        self.acked: list[tuple[int, int, str]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with Producer(self.address, acks="all", linger_ms=1, request_timeout_ms=5_000) as p:
                i = 0
                while not self._stop.is_set():
                    futures = [
                        (p.send(TOPIC, f"v{n}".encode(), partition=n % self.partitions), f"v{n}")
                        for n in range(i, i + 20)
                    ]
                    i += 20
                    for future, value in futures:
                        md = future.get(90)
                        self.acked.append((md.partition, md.offset, value))
        except BaseException as e:
            self.errors.append(e)

    def wait_acked(self, count: int, what: str) -> None:
        wait_for(lambda: len(self.acked) >= count or bool(self.errors), 90, what)
        assert not self.errors, self.errors

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(120)
        assert not self._thread.is_alive(), "the producer did not finish"
        assert not self.errors, self.errors


def leaders(cluster: ClusterNodes, node: int) -> dict[int, int]:
    """Partition -> Raft-elected leader (epoch >= 1) as ``node`` answers Metadata."""
    try:
        metadata = cluster.metadata(node)
    except Exception:
        return {}
    return {
        p.partition: p.leader_id
        for t in metadata.topics
        if t.name == TOPIC
        for p in t.partitions
        if p.leader_id >= 0 and p.leader_epoch >= 1
    }


def with_topic(cluster: ClusterNodes, partitions: int) -> None:
    start(cluster)
    result = cluster.create_topic(1, TOPIC, partitions=partitions, replication_factor=3)
    assert not result.error.code, result.error.message
    wait_for(
        lambda: all(len(leaders(cluster, n)) == partitions for n in cluster.ports),
        60,
        "every partition's elected leader on every node",
    )


def moves_done(cluster: ClusterNodes, node: int) -> bool:
    try:
        return info(cluster, node)["moves"] == []
    except AssertionError:
        return False


def caught_up(cluster: ClusterNodes, nodes: tuple[int, ...], partition: int) -> bool:
    logs = {log_bytes(cluster, n, TOPIC, partition) for n in nodes}
    return len(logs) == 1 and logs != {b""}


def test_a_reassignment_while_producing_loses_nothing(cluster: ClusterNodes) -> None:
    with_topic(cluster, partitions=1)
    replicas = replicas_of(cluster, 1, TOPIC)[0]
    leader = leaders(cluster, 1)[0]
    outside = next(b for b in cluster.ports if b not in replicas)
    # The leader itself leaves: it hands its leadership over before it is removed.
    target = (*(r for r in replicas if r != leader), outside)
    everyone = ",".join(cluster.address(n) for n in cluster.ports)
    writer = Writer(everyone, 1).start()
    try:
        writer.wait_acked(200, "200 records acknowledged before the move")
        ids = ",".join(map(str, target))
        out = cli("topic", "reassign", TOPIC, "0", "--replicas", ids, "-b", everyone)
        assert out.returncode == 0 and "moving" in out.stdout, out.stderr
        during = len(writer.acked)
        wait_for(
            lambda: replicas_of(cluster, 2, TOPIC).get(0) == target and moves_done(cluster, 3),
            MOVE_TIMEOUT_S,
            f"{TOPIC}-0 to move to {target}",
        )
        writer.wait_acked(len(writer.acked) + 200, "200 more records after the move")
        assert len(writer.acked) > during
    finally:
        writer.stop()
    wait_for(lambda: caught_up(cluster, target, 0), 60, "the target replicas to hold the same log")
    assert leaders(cluster, 2)[0] in target
    check_exactly_once(writer.acked, read_all(everyone, TOPIC, 1, len(writer.acked)))


def test_a_decommission_while_producing_loses_nothing(cluster: ClusterNodes) -> None:
    with_topic(cluster, partitions=2)
    before = replicas_of(cluster, 1, TOPIC)
    gone = leaders(cluster, 1)[0]  # it leads a partition: its leadership moves too
    everyone = ",".join(cluster.address(n) for n in cluster.ports)
    writer = Writer(everyone, 2).start()
    try:
        writer.wait_acked(200, "200 records acknowledged before the decommission")
        out = cli("cluster", "decommission", str(gone), "-b", everyone)
        assert out.returncode == 0 and "decommissioning" in out.stdout, out.stderr

        def drained() -> bool:
            now = replicas_of(cluster, 2, TOPIC)
            return (
                len(now) == 2
                and all(gone not in r and len(r) == 3 for r in now.values())
                and moves_done(cluster, 3)
            )

        wait_for(drained, MOVE_TIMEOUT_S, f"broker {gone} to hold no replica")
        writer.wait_acked(len(writer.acked) + 200, "200 more records after the decommission")
    finally:
        writer.stop()
    brokers = {b["node_id"]: b for b in info(cluster, 2)["brokers"]}
    assert brokers[gone]["state"] == "decommissioning" and brokers[gone]["replicas"] == 0
    after = replicas_of(cluster, 2, TOPIC)
    for p in (0, 1):
        assert after[p][: len(before[p]) - 1] == tuple(r for r in before[p] if r != gone) or (
            gone not in before[p] and after[p] == before[p]
        )
        wait_for(lambda p=p: caught_up(cluster, after[p], p), 60, f"{TOPIC}-{p}'s replicas")
        assert leaders(cluster, 2)[p] != gone
    check_exactly_once(writer.acked, read_all(everyone, TOPIC, 2, len(writer.acked)))


def test_a_restarted_preferred_leader_gets_its_leadership_back(cluster: ClusterNodes) -> None:
    with_topic(cluster, partitions=1)
    preferred = replicas_of(cluster, 1, TOPIC)[0][0]
    wait_for(
        lambda: leaders(cluster, 1).get(0) == preferred,
        60,
        f"the preferred leader {preferred} to lead (balancing, if it was not elected)",
    )
    cluster.kill(preferred)
    survivor = next(n for n in cluster.ports if n != preferred)
    wait_for(
        lambda: leaders(cluster, survivor).get(0) not in (None, preferred),
        60,
        "another replica to lead",
    )
    cluster.start(preferred)
    # Alive and in sync for the balancer's delay (10 s), then handed back by leader transfer.
    wait_for(
        lambda: leaders(cluster, survivor).get(0) == preferred,
        90,
        f"node {preferred} to lead again",
    )
    everyone = ",".join(cluster.address(n) for n in cluster.ports)
    with Producer(everyone, acks="all") as p:
        assert p.send(TOPIC, b"after", partition=0).get(60).offset >= 0


def test_rebalance_after_a_node_joined_spreads_replicas_and_keeps_the_data(
    tmp_path: Path,
) -> None:
    cluster = ClusterNodes(tmp_path, 3)
    try:
        cluster.start_all()
        wait_for(lambda: formed(cluster), FORM_TIMEOUT_S, "three nodes to form a cluster")
        result = cluster.create_topic(1, TOPIC, partitions=4, replication_factor=3)
        assert not result.error.code, result.error.message
        wait_for(lambda: len(leaders(cluster, 1)) == 4, 60, "every partition's leader")
        everyone = ",".join(cluster.address(n) for n in (1, 2, 3))
        with Producer(everyone, acks="all") as p:
            futures = [
                (p.send(TOPIC, f"v{i}".encode(), partition=i % 4), f"v{i}") for i in range(200)
            ]
            acked = [(f.get(60).partition, f.get(60).offset, v) for f, v in futures]
        cluster.join(4)
        wait_for(lambda: formed(cluster), FORM_TIMEOUT_S, "node 4 alive in the cluster")
        plan = cli("cluster", "rebalance", "--dry-run", "--json", "-b", everyone)
        assert plan.returncode == 0, plan.stderr
        planned = json.loads(plan.stdout)["moves"]
        assert planned and all(4 in m["target"] for m in planned if 4 not in m["replicas"])
        out = cli("cluster", "rebalance", "-b", everyone)
        assert out.returncode == 0 and "moving" in out.stdout, out.stderr

        def spread() -> bool:
            counts = {b["node_id"]: b["replicas"] for b in info(cluster, 2)["brokers"]}
            return moves_done(cluster, 1) and set(counts.values()) == {3}

        wait_for(spread, MOVE_TIMEOUT_S, "three replicas on each of the four brokers")
        again = cli("cluster", "rebalance", "--dry-run", "--json", "-b", everyone)
        assert json.loads(again.stdout)["moves"] == []
        check_exactly_once(acked, read_all(cluster.address(4), TOPIC, 4, len(acked)))
    finally:
        cluster.close()
