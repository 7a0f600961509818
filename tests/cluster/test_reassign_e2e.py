"""Partition moves on real clusters: four `rilke server` processes on 127.0.0.1.

`rilke topic reassign` refuses bad input with a clear error and changes nothing; a
reassignment and a decommission while an idempotent producer writes acks=all end with the
new replicas holding every acknowledged record exactly once; `rilke cluster rebalance`
plans nothing on a balanced cluster.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import ClusterNodes
from rilke_broker_process import REPO_ROOT
from waiting import wait_for

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes(tmp_path, 4)
    try:
        yield nodes
    finally:
        nodes.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        cwd=REPO_ROOT,
    )


def formed(nodes: ClusterNodes) -> bool:
    try:
        return all(
            nodes.alive_brokers(n) == set(nodes.ports) and nodes.describe(n).controller_id > 0
            for n in nodes.ports
        )
    except Exception:
        return False


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
