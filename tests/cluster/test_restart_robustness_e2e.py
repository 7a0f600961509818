"""Restarts of a real three-node cluster: every node killed with kill -9, then restarted one
at a time; one node comes back with its partitions' data wiped and recovers before it votes
in their groups."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import ClusterNodes, cluster_of, formed
from waiting import wait_for

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    with cluster_of(tmp_path, 3) as nodes:
        yield nodes


def _replicas(cluster: ClusterNodes, node: int) -> list[tuple[int, tuple[int, ...]]]:
    return [(p, replicas) for p, _leader, replicas in cluster.topics(node).get("t", [])]


def test_killed_nodes_restart_one_at_a_time_and_a_wiped_replica_recovers(
    cluster: ClusterNodes,
) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    assert not cluster.create_topic(1, "t", partitions=2, replication_factor=3).error.code
    # Every partition has had a leader (its epoch in the metadata is > 0).
    wait_for(
        lambda: (
            len(parts := cluster.topics(1).get("t", [])) == 2
            and all(leader > 0 for _p, leader, _r in parts)
        ),
        30,
        "leaders of both partitions",
    )
    before = _replicas(cluster, 1)
    for node in (1, 2, 3):
        cluster.kill(node)
    for p in (0, 1):
        shutil.rmtree(cluster.data_dir(3) / f"t-{p}")

    cluster.start(1)  # alone: no quorum of metadata voters anywhere
    cluster.start(2)
    third = cluster.start(3)
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form again")
    wait_for(lambda: all(_replicas(cluster, n) == before for n in (1, 2, 3)), 30, "same topics")
    # Node 3's partitions knew they had lost their Raft state, and voted only once a leader
    # had caught them up.
    assert third.log_text().count("not voting until a leader has caught this replica up") == 2
    wait_for(
        lambda: third.log_text().count("recovered: caught up with leader") >= 2,
        30,
        "node 3's wiped replicas to recover",
    )
