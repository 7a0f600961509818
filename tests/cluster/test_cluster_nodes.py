"""Real clusters: three `rilke server` processes with --initial-voters on 127.0.0.1.

Forming, topics through any node on every node, kill -9 of the controller leader, a restart
of every node, a fourth node that joins, and nodes of another cluster refused.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import ClusterNodes, cluster_of, formed, rilke_cli
from rilke_broker_process import BrokerProcess, BrokerStartError
from waiting import wait_for

from rilke.errors import NotLeaderError

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    with cluster_of(tmp_path, 3) as nodes:
        yield nodes


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return rilke_cli(*args)


def test_three_nodes_form_a_cluster_and_topics_appear_on_every_node(
    cluster: ClusterNodes,
) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    info = cluster.describe(1)
    assert sorted(info.voters) == [1, 2, 3]
    assert info.cluster_id.startswith("rilke-")

    # Through a node that may or may not lead the controller, and with 3 replicas.
    assert not cluster.create_topic(2, "spread", partitions=3).error.code
    assert not cluster.create_topic(3, "wide", partitions=2, replication_factor=3).error.code
    again = cluster.create_topic(1, "spread", partitions=3)
    assert again.error.code and "already exists" in again.error.message
    too_many = cluster.create_topic(1, "huge", replication_factor=4)
    assert too_many.error.code and "replication factor" in too_many.error.message.lower()

    def same_everywhere() -> bool:
        views = [cluster.topics(n) for n in (1, 2, 3)]
        return all(v == views[0] for v in views) and {"spread", "wide"} <= set(views[0])

    wait_for(same_everywhere, 20, "every node to answer the same Metadata")
    topics = cluster.topics(1)
    assert sorted(leader for _p, leader, _r in topics["spread"]) == [1, 2, 3]  # spread out
    assert all(len(replicas) == 3 for _p, _l, replicas in topics["wide"])

    # Records through any bootstrap node reach the partition's leader and come back.
    from rilke import Consumer, Producer, TopicPartition

    with Producer(bootstrap_servers=cluster.address(1)) as producer:
        for i in range(30):
            producer.send("spread", f"v{i}".encode(), key=f"k{i}".encode())
        producer.flush(30)
    with Consumer(bootstrap_servers=cluster.address(3), auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition("spread", p) for p in range(3)])
        got: list[bytes] = []

        def polled_all() -> bool:
            for records in consumer.poll(500).values():
                got.extend(r.value for r in records)
            return len(got) >= 30

        wait_for(polled_all, 30, "the 30 records")
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(30))

    # Producer ids are unique cluster-wide (blocks from the controller), whichever node asks.
    from rilke.proto import rilke_pb2 as pb

    pids = [
        cluster._call(n, "Broker", "InitProducerId", pb.InitProducerIdRequest(producer_id=-1))
        for n in (1, 2, 3, 1, 2, 3)
    ]
    assert all(not r.error.code for r in pids), [r.error for r in pids]
    assert len({r.producer_id for r in pids}) == 6

    # Configs and deletion through any node reach every node.
    altered = cli(
        "topic", "alter-config", "wide", "--set", "retention.ms=60000", "-b", cluster.address(1)
    )
    assert altered.returncode == 0, altered.stderr

    def configured_everywhere() -> bool:
        for n in (1, 2, 3):
            r = cluster._call(
                n, "Admin", "DescribeConfigs", pb.DescribeConfigsRequest(topics=["wide"])
            )
            if {e.name: e.value for e in r.results[0].entries}.get("retention.ms") != "60000":
                return False
        return True

    wait_for(configured_everywhere, 20, "the config on every node")
    deleted = cli("topic", "delete", "wide", "-b", cluster.address(3))
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: all("wide" not in cluster.topics(n) for n in (1, 2, 3)), 20, "wide gone")

    health = cli("cluster", "health", "-b", cluster.address(2))
    assert health.returncode == 0, health.stdout + health.stderr
    assert "healthy" in health.stdout
    info_out = cli("cluster", "info", "--json", "-b", cluster.address(3))
    assert info_out.returncode == 0 and '"controller_id"' in info_out.stdout


def test_kill_9_of_the_controller_leader_a_new_one_takes_over(cluster: ClusterNodes) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    leader = cluster.describe(1).controller_id
    cluster.kill(leader)
    others = [n for n in (1, 2, 3) if n != leader]

    created: list[int] = []

    def create_works() -> bool:
        result = cluster.create_topic(others[0], "after-failover")
        if not result.error.code or "already exists" in result.error.message:
            created.append(1)
        return bool(created)

    wait_for(create_works, 30, "a topic create after the leader's kill -9")
    new_leader = cluster.describe(others[1]).controller_id
    assert new_leader in others
    wait_for(lambda: "after-failover" in cluster.topics(others[1]), 20, "the topic on node")

    # The dead node is fenced within its session; health says so and exits 1.
    wait_for(lambda: leader not in cluster.alive_brokers(others[0]), 30, "the dead node fenced")
    health = cli("cluster", "health", "-b", cluster.address(others[0]))
    assert health.returncode == 1
    assert f"broker {leader}" in health.stdout and "fenced" in health.stdout

    # It comes back, catches up, and is alive again.
    cluster.start(leader)
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the node back")
    wait_for(lambda: "after-failover" in cluster.topics(leader), 20, "the topic on the node back")


def test_restart_every_node_and_the_metadata_is_the_same(cluster: ClusterNodes) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    for i, node in enumerate((1, 2, 3)):
        assert not cluster.create_topic(node, f"t{i}", partitions=i + 1).error.code
    wait_for(lambda: len(cluster.topics(3)) == 3, 20, "three topics on node 3")
    before = {n: cluster.topics(n) for n in (1, 2, 3)}
    cluster_id = cluster.describe(1).cluster_id

    cluster.stop_all()
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form again")
    wait_for(lambda: all(cluster.topics(n) == before[n] for n in (1, 2, 3)), 20, "same topics")
    assert cluster.describe(2).cluster_id == cluster_id
    assert not cluster.create_topic(2, "after-restart").error.code


def test_a_fourth_node_joins_and_becomes_a_voter(cluster: ClusterNodes) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    assert not cluster.create_topic(1, "before-join", partitions=2).error.code
    cluster.join(4, through=2)
    wait_for(lambda: formed(cluster, [1, 2, 3, 4]), FORM_TIMEOUT_S, "node 4 alive everywhere")
    info = cluster.describe(4)
    assert 4 in info.learners and 4 not in info.voters
    wait_for(lambda: "before-join" in cluster.topics(4), 20, "node 4 to have the metadata")

    # New topics are placed on it too.
    assert not cluster.create_topic(4, "four", partitions=4).error.code
    wait_for(lambda: "four" in cluster.topics(1), 20, "the topic on node 1")
    assert sorted(leader for _p, leader, _r in cluster.topics(1)["four"]) == [1, 2, 3, 4]

    added = cli("cluster", "add-voter", "4", "-b", cluster.address(3))
    assert added.returncode == 0, added.stderr
    wait_for(lambda: 4 in cluster.describe(1).voters, 20, "node 4 a voter")
    refused = cli("cluster", "add-voter", "9", "-b", cluster.address(3))
    assert refused.returncode == 1 and "not a member" in refused.stderr
    removed = cli("cluster", "remove-voter", "4", "-b", cluster.address(1))
    assert removed.returncode == 0, removed.stderr
    wait_for(lambda: 4 in cluster.describe(2).learners, 20, "node 4 a learner again")

    # It restarts while the node it joined through is down: it knows its cluster.
    cluster.stop(4)
    cluster.kill(2)
    cluster.join(4, through=2)
    wait_for(lambda: formed(cluster, [1, 3, 4]), FORM_TIMEOUT_S, "node 4 back without node 2")
    assert "four" in cluster.topics(4)


def test_nodes_of_another_cluster_are_refused(cluster: ClusterNodes, tmp_path: Path) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    # A data directory of this cluster started with other voters (another cluster).
    cluster.stop(3)
    other = f"{cluster.voters.split(',')[2]},7@127.0.0.1:1"
    stranger = cluster.process(3, voters=other)
    with pytest.raises(BrokerStartError, match="belongs to cluster"):
        stranger.start()
    # A data directory of another cluster cannot join this one.
    lone = ClusterNodes(tmp_path / "other", 1, first_id=5)
    try:
        lone.start_all()
        lone.stop_all()
        joiner = BrokerProcess(
            lone.data_dir(5),
            "--node-id", "5", "--listen", lone.address(5), "--join", cluster.address(1),
        )  # fmt: skip
        lone.started.append(joiner)
        with pytest.raises(BrokerStartError, match="another cluster cannot join"):
            joiner.start(timeout_s=60)
        assert 5 not in {b.node_id for b in cluster.describe(1).brokers}  # nothing changed
    finally:
        lone.close()
    # A cluster's data directory is not taken as a single node's.
    single = BrokerProcess(cluster.data_dir(3))
    cluster.started.append(single)
    with pytest.raises(BrokerStartError, match="start it with --initial-voters or --join"):
        single.start()


def test_a_partition_led_elsewhere_is_refused_with_not_leader(cluster: ClusterNodes) -> None:
    cluster.start_all()
    wait_for(lambda: formed(cluster, [1, 2, 3]), FORM_TIMEOUT_S, "the cluster to form")
    assert not cluster.create_topic(1, "one", partitions=3).error.code
    wait_for(lambda: "one" in cluster.topics(2), 20, "the topic on node 2")
    import grpc

    from rilke.proto import rilke_pb2 as pb
    from rilke.proto import rilke_pb2_grpc as pb_grpc

    partition, leader, _r = next(p for p in cluster.topics(2)["one"] if p[1] != 2)
    with grpc.insecure_channel(cluster.address(2)) as channel:
        fetch = pb_grpc.BrokerStub(channel).Fetch(
            pb.FetchRequest(
                partitions=[pb.FetchPartition(topic="one", partition=partition, fetch_offset=0)],
                max_wait_ms=0,
            ),
            timeout=10,
        )
    error = fetch.partitions[0].error
    assert error.code == NotLeaderError.code
    assert f"node {leader} leads it" in error.message
