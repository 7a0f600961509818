"""Restarts of a real three-node cluster: every node killed with kill -9, then restarted one
at a time; one node comes back with its partitions' data wiped and recovers before it votes
in their groups."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cluster_nodes import ClusterNodes, cluster_of, formed
from waiting import wait_for

from rilke.errors import TopicAlreadyExistsError

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0
NO_LEADER_WAIT_S = 8.0
"""The metadata group's election timeout is 1-2 s: a leader of two voters would be there."""


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


def _create(cluster: ClusterNodes, node: int, name: str) -> bool:
    try:
        code = cluster.create_topic(node, name).error.code
    except grpc.RpcError:
        return False
    return code in {0, TopicAlreadyExistsError.code}


def _controller(cluster: ClusterNodes, node: int) -> int:
    try:
        return cluster.describe(node).controller_id
    except grpc.RpcError:
        return -1


def test_a_node_whose_whole_data_dir_was_wiped_does_not_vote_a_committed_entry_away(
    cluster: ClusterNodes,
) -> None:
    """Node 2 misses a topic's creation, committed by nodes 1 and 3. Node 3 comes back with
    its whole data dir wiped (its identity too: it looks like a first start) while node 1 is
    down. Voting with its empty log, it would elect node 2, which lacks the entry, and node 1
    would lose it on coming back; it asks its peers first, learns from node 2 that the
    cluster formed, and does not vote until a leader caught it up."""
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    cluster.kill(2)
    wait_for(lambda: _create(cluster, 1, "made-without-2"), 30, "the topic made without node 2")
    wait_for(lambda: "made-without-2" in cluster.topics(3), 30, "node 3 to apply it")
    cluster.kill(3)
    shutil.rmtree(cluster.data_dir(3))
    cluster.kill(1)

    cluster.start(2)
    wiped = cluster.start(3)
    # Nodes 2 and 3 are a quorum of voters, but node 3 does not vote: no metadata leader.
    with pytest.raises(AssertionError, match="timed out"):
        wait_for(lambda: _controller(cluster, 2) >= 0, NO_LEADER_WAIT_S, "a leader of 2 and 3")
    assert "the cluster formed without this node's data" in wiped.log_text()
    cluster.start(1)
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form again")
    for node in (1, 2, 3):
        wait_for(lambda n=node: "made-without-2" in cluster.topics(n), 30, f"node {node}'s topics")
