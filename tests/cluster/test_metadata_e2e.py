"""Real clusters: the metadata log trimmed below snapshots, a fourth node that joins after the
trim (it gets the leader's snapshot and the same metadata), a kill -9 of every voter after
the trim (restart = snapshot + tail, the same metadata), gRPC CreatePartitions through
any node (answered once committed, new partitions spread over the brokers) and linearizable
Metadata/DescribeTopics (a read index first: a node answers with every committed change).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cluster_nodes import ClusterNodes, cluster_of, formed, rilke_cli
from waiting import wait_for

from rilke.client.admin import Admin
from rilke.errors import InvalidPartitionsError, UnknownTopicOrPartitionError, for_code
from rilke.proto import rilke_pb2 as pb

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterNodes]:
    # Snapshots every 2 KiB of metadata: a few dozen topics trim the log several times.
    monkeypatch.setenv("RILKE_METADATA_SNAPSHOT_BYTES", "2048")
    with cluster_of(tmp_path, 3) as nodes:
        yield nodes


def log_start(nodes: ClusterNodes, node: int) -> int:
    """The metadata log's start (its snapshot index) as the node's raft.state has it."""
    data = (nodes.data_dir(node) / "__cluster_metadata" / "raft.state").read_bytes()
    return int(json.loads(data[4:])["snapshot"][0])


def linearizable_topics(nodes: ClusterNodes, node: int) -> dict[str, list[tuple[int, int]]]:
    response = nodes._call(node, "Broker", "Metadata", pb.MetadataRequest(linearizable=True))
    return {
        t.name: [(p.partition, p.leader_id) for p in t.partitions]
        for t in response.topics
        if not t.error.code
    }


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return rilke_cli(*args)


def test_a_node_joining_after_the_log_was_trimmed_gets_the_same_metadata(
    cluster: ClusterNodes,
) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    for i in range(40):
        assert not cluster.create_topic(1 + i % 3, f"t{i}", partitions=2).error.code
    wait_for(
        lambda: all(log_start(cluster, n) > 1 for n in (1, 2, 3)),
        30,
        "every node to trim its metadata log below a snapshot",
    )
    for n in (1, 2, 3):
        assert list((cluster.data_dir(n) / "__cluster_metadata" / "snapshots").iterdir())

    four = cluster.join(4, through=2)
    wait_for(lambda: formed(cluster, [1, 2, 3, 4]), FORM_TIMEOUT_S, "node 4 alive everywhere")
    wait_for(
        lambda: "metadata restored from the leader's snapshot" in four.log_text(),
        20,
        "node 4 to install the leader's snapshot",
    )
    expected = linearizable_topics(cluster, 1)
    assert {f"t{i}" for i in range(40)} <= set(expected)
    assert linearizable_topics(cluster, 4) == expected

    # Restarted, node 4 is its own snapshot (or the leader's) plus the tail: the same again.
    cluster.stop(4)
    assert not cluster.create_topic(3, "while-4-was-down", partitions=1).error.code
    cluster.join(4, through=1)
    wait_for(lambda: formed(cluster, [1, 2, 3, 4]), FORM_TIMEOUT_S, "node 4 back")
    expected = linearizable_topics(cluster, 2)
    assert "while-4-was-down" in expected
    assert linearizable_topics(cluster, 4) == expected

    # kill -9 of every voter, then a restart: each is its snapshot plus its tail.
    for n in (1, 2, 3):
        cluster.kill(n)

    # Started together: after a kill -9 a node's stored commit may lag what its broker
    # reflected, and it waits (ClusterNode.start, bounded) for a quorum to catch up.
    # Three recoveries at once on a shared machine: a longer start deadline than one node's.
    def restart(n: int) -> None:
        cluster.nodes[n] = cluster.process(n).start(timeout_s=120)

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(restart, (1, 2, 3)))
    wait_for(lambda: formed(cluster, [1, 2, 3, 4]), FORM_TIMEOUT_S, "the cluster after kill -9")
    # (Leaders may have moved: nodes were fenced while down.)
    shape = {name: len(parts) for name, parts in expected.items()}
    for n in (1, 2, 3, 4):
        assert {t: len(p) for t, p in linearizable_topics(cluster, n).items()} == shape


def test_create_partitions_through_any_node_and_linearizable_reads(
    cluster: ClusterNodes,
) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    assert not cluster.create_topic(1, "grow", partitions=1).error.code
    controller = cluster.describe(1).controller_id
    other = next(n for n in (1, 2, 3) if n != controller)

    def grow(node: int, name: str, count: int, validate_only: bool = False) -> pb.TopicResult:
        request = pb.CreatePartitionsRequest(
            topics=[pb.CreatePartitionsTopic(name=name, count=count)], validate_only=validate_only
        )
        return cluster._call(node, "Admin", "CreatePartitions", request).results[0]

    assert not grow(other, "grow", 7).error.code
    # Answered once committed: every node's linearizable answer has the new partitions, at once.
    for node in (1, 2, 3):
        request = pb.DescribeTopicsRequest(names=["grow"], linearizable=True)
        (t,) = cluster._call(node, "Admin", "DescribeTopics", request).topics
        assert not t.error.code, t.error.message
        assert len(t.partitions) == 7
        assert len(linearizable_topics(cluster, node)["grow"]) == 7
    # The new partitions' leaders are spread over the brokers.
    leaders = [leader for _p, leader in linearizable_topics(cluster, 1)["grow"]]
    assert set(leaders) == {1, 2, 3}

    lower = grow(other, "grow", 3)
    assert isinstance(for_code(lower.error.code)(lower.error.message), InvalidPartitionsError)
    unknown = grow(other, "nope", 3)
    assert for_code(unknown.error.code) is UnknownTopicOrPartitionError
    assert not grow(other, "grow", 20, validate_only=True).error.code
    assert len(linearizable_topics(cluster, other)["grow"]) == 7

    # The client and the CLI.
    with Admin(cluster.address(other)) as admin:
        admin.create_partitions({"grow": 8})
        (t,) = admin.describe_topics(["grow"], linearizable=True)
        assert len(t.partitions) == 8
        with pytest.raises(InvalidPartitionsError):
            admin.create_partitions({"grow": 2})
    added = cli("topic", "add-partitions", "grow", "--count", "9", "-b", cluster.address(3))
    assert added.returncode == 0, added.stderr
    assert "grew topic grow to 9 partitions" in added.stdout
    shown = cli("topic", "describe", "grow", "--linearizable", "--json", "-b", cluster.address(2))
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)[0]["partitions"]) == 9
    refused = cli("topic", "add-partitions", "grow", "--count", "4", "-b", cluster.address(1))
    assert refused.returncode != 0 and "must be larger" in refused.stderr
