"""`rilke topic reassign --cancel` on real nodes: a move whose new replica cannot catch up (its
node is paused) is cancelled; the learner is removed, the old replicas stay, and the data
written before and during the move is all there."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import ClusterNodes, cluster_of, formed, rilke_cli
from log_checks import read_all
from waiting import wait_for

from rilke import Producer

pytestmark = pytest.mark.slow


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    with cluster_of(tmp_path, 4) as nodes:
        yield nodes


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return rilke_cli(*args, timeout=90)


def test_a_move_is_cancelled_and_the_old_replicas_stay(cluster: ClusterNodes) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster), 60, "the four nodes to form a cluster")
    assert not cluster.create_topic(1, "t", partitions=1, replication_factor=3).error.code
    wait_for(lambda: "t" in cluster.topics(2), 20, "topic t on node 2")
    before = cluster.topics(2)["t"][0][2]
    outside = next(b for b in (1, 2, 3, 4) if b not in before)
    ask = next(b for b in before if b != outside)
    b = cluster.address(ask)
    everyone = ",".join(cluster.address(n) for n in (1, 2, 3, 4))
    with Producer(everyone, acks=-1) as p:
        for i in range(50):
            p.send("t", f"v{i}".encode(), partition=0)
        p.flush(30)

    out = cli("topic", "reassign", "t", "0", "--cancel", "-b", b)
    assert out.returncode != 0 and "nothing to cancel" in out.stderr, out.stderr
    bad = cli("topic", "reassign", "t", "0", "--cancel", "--replicas", "1,2,3", "-b", b)
    assert bad.returncode != 0 and "--cancel takes no --replicas" in bad.stderr, bad.stderr

    paused = cluster.nodes[outside].proc
    assert paused is not None
    paused.send_signal(signal.SIGSTOP)  # its learner cannot catch up: the move waits
    try:
        target = [*before[:-1], outside]
        ids = ",".join(map(str, target))
        out = cli("topic", "reassign", "t", "0", "--replicas", ids, "-b", b)
        assert out.returncode == 0 and "moving" in out.stdout, out.stderr
        out = cli("topic", "reassign", "t", "0", "--cancel", "-b", b)
        assert out.returncode == 0 and "cancelling" in out.stdout, out.stderr

        def cancelled() -> bool:
            again = cli("topic", "reassign", "t", "0", "--cancel", "-b", b)
            return again.returncode != 0 and "nothing to cancel" in again.stderr

        wait_for(cancelled, 60, "the cancelled move to complete")
        assert cluster.topics(ask)["t"][0][2] == before
    finally:
        paused.send_signal(signal.SIGCONT)
    log = read_all(everyone, "t", 1, 50)
    assert [v for _p, _o, v in log] == [f"v{i}" for i in range(50)]
