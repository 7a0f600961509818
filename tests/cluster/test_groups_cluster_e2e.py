"""Consumer groups in a cluster, real processes: three `rilke server` nodes on 127.0.0.1.

- ``__consumer_offsets`` is created by the controller on the first group request, replicated
  (factor 3 on three nodes); every node names the same coordinator (its partition's leader)
  and a node that is not the coordinator answers NOT_COORDINATOR;
- kill -9 of the coordinator's node: the group keeps its committed offsets, its members find
  the new coordinator and rejoin by themselves, and with at-least-once commits no record is
  skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import ClusterNodes
from test_groups_e2e import ConsumerProc
from waiting import wait_for

from rilke.errors import NotCoordinatorError, for_code
from rilke.proto import rilke_pb2 as pb
from rilke.server.coordinator import OFFSETS_TOPIC

pytestmark = pytest.mark.slow

FORM_TIMEOUT_S = 60.0
SESSION_MS = 6000
GROUP = "g1"
TOPIC = "orders"
PARTITIONS = 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes(tmp_path, 3)
    try:
        nodes.start_all()
        wait_for(lambda: len(nodes.alive_brokers(1)) == 3, FORM_TIMEOUT_S, "the cluster")
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def consumers() -> Iterator[Callable[..., ConsumerProc]]:
    started: list[ConsumerProc] = []

    def start(*args: Any, **kwargs: Any) -> ConsumerProc:
        started.append(ConsumerProc(*args, **kwargs))
        return started[-1]

    try:
        yield start
    finally:
        for c in started:
            c.kill()


def bootstrap(cluster: ClusterNodes) -> str:
    return ",".join(cluster.address(n) for n in sorted(cluster.ports))


def find(cluster: ClusterNodes, node: int) -> pb.FindCoordinatorResponse | None:
    try:
        resp = cluster._call(
            node, "Group", "FindCoordinator", pb.FindCoordinatorRequest(group_id=GROUP)
        )
    except Exception:
        return None
    return None if resp.error.code else resp


def coordinator(cluster: ClusterNodes, nodes: list[int]) -> int | None:
    """The coordinator every node of ``nodes`` names, None while they differ or cannot say."""
    answers = [find(cluster, n) for n in nodes]
    ids = {a.coordinator.node_id for a in answers if a is not None}
    if None in answers or len(ids) != 1:
        return None
    return ids.pop()


def produce(cluster: ClusterNodes, count: int, tag: str) -> None:
    from rilke.client.producer import Producer

    with Producer(bootstrap(cluster), acks=-1) as producer:
        for i in range(count):
            for p in range(PARTITIONS):
                producer.send(TOPIC, f"{tag}-{p}-{i}".encode(), partition=p)
        producer.flush(60)


def data_offsets(cluster: ClusterNodes, count: int) -> set[tuple[int, int]]:
    """(partition, offset) of each of the ``count`` records produced (acknowledged) to the
    topic, read from the log start (a replicated log also holds Raft's control batches)."""
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    found: set[tuple[int, int]] = set()
    with Consumer(bootstrap_servers=bootstrap(cluster), auto_offset_reset="earliest") as reader:
        reader.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])

        def read_all() -> bool:
            for tp, records in reader.poll(200).items():
                found.update((tp.partition, r.offset) for r in records)
            return len(found) >= count

        try:
            wait_for(read_all, 60, f"the {count} records read")
        except AssertionError:
            at = {p: reader.position(TopicPartition(TOPIC, p)) for p in range(PARTITIONS)}
            raise AssertionError(f"read {len(found)} of {count} records, up to {at}") from None
    assert len(found) == count, f"{len(found)} records, {count} produced"
    return found


def past_last_record(offsets: dict[int, int] | None, want: set[tuple[int, int]]) -> bool:
    """The committed ``offsets`` are past the last record of every partition."""
    if offsets is None:
        return False
    last = {p: max(o for q, o in want if q == p) for p in range(PARTITIONS)}
    return all(offsets.get(p, -1) > o for p, o in last.items())


def consumed_all(members: list[ConsumerProc], want: set[tuple[int, int]]) -> bool:
    return want <= {rec for c in members for rec in c.records()}


def committed(cluster: ClusterNodes, node: int) -> dict[int, int] | None:
    """The group's committed offsets as the coordinator ``node`` answers them."""
    try:
        resp = cluster._call(node, "Group", "OffsetFetch", pb.OffsetFetchRequest(group_id=GROUP))
    except Exception:
        return None
    if resp.error.code:
        return None
    return {p.partition: p.offset for p in resp.partitions if p.topic == TOPIC}


def replicated(cluster: ClusterNodes) -> bool:
    """Whether the topic's partitions are replicated: all three replicas in sync (within a
    deadline), as every node's Metadata says."""

    def in_sync() -> bool:
        meta = cluster._call(1, "Broker", "Metadata", pb.MetadataRequest(topics=[TOPIC]))
        return all(len(p.isr) == 3 for t in meta.topics for p in t.partitions)

    try:
        wait_for(in_sync, 15, "three in-sync replicas")
    except AssertionError:
        return False
    return True


def start_group(
    cluster: ClusterNodes, consumers: Callable[..., ConsumerProc], count: int
) -> list[ConsumerProc]:
    created = cluster.create_topic(1, TOPIC, partitions=PARTITIONS, replication_factor=3)
    assert not created.error.code, created.error.message
    wait_for(
        lambda: all(TOPIC in cluster.topics(n) for n in cluster.ports),
        30,
        "the topic on every node",
    )
    produce(cluster, 20, "a")
    members = [
        consumers(bootstrap(cluster), TOPIC, GROUP, f"c{i}", session_ms=SESSION_MS)
        for i in range(count)
    ]
    wait_for(
        lambda: sorted(p for c in members for p in c.owned()) == list(range(PARTITIONS)),
        90,
        "the members to own every partition",
    )
    return members


def test_offsets_topic_is_replicated_and_one_node_coordinates(
    cluster: ClusterNodes, consumers: Callable[..., ConsumerProc]
) -> None:
    members = start_group(cluster, consumers, 2)
    want = data_offsets(cluster, 20 * PARTITIONS)
    wait_for(lambda: consumed_all(members, want), 60, "every record consumed")

    nodes = sorted(cluster.ports)
    wait_for(lambda: coordinator(cluster, nodes) is not None, 30, "one coordinator named")
    leader = coordinator(cluster, nodes)
    assert leader is not None
    found = find(cluster, nodes[0])
    assert found is not None
    meta = cluster._call(leader, "Broker", "Metadata", pb.MetadataRequest(topics=[OFFSETS_TOPIC]))
    offsets_topic = [t for t in meta.topics if t.name == OFFSETS_TOPIC]
    assert offsets_topic and not offsets_topic[0].error.code, meta
    part = offsets_topic[0].partitions[found.offsets_partition]
    assert len(part.replicas) == 3 and part.leader_id == leader

    # Committed offsets are answered by the coordinator; another node says NOT_COORDINATOR.
    wait_for(lambda: past_last_record(committed(cluster, leader), want), 30, "the commits")
    other = next(n for n in nodes if n != leader)
    resp = cluster._call(other, "Group", "OffsetFetch", pb.OffsetFetchRequest(group_id=GROUP))
    assert for_code(resp.error.code) is NotCoordinatorError, resp.error


def test_group_survives_kill_9_of_its_coordinator(
    cluster: ClusterNodes, consumers: Callable[..., ConsumerProc]
) -> None:
    members = start_group(cluster, consumers, 2)
    if not replicated(cluster):
        pytest.skip(
            "partitions are not replicated in this build (the interim serves an R=3 partition "
            "from its first replica alone: its in-sync replicas are that one)"
        )
    want = data_offsets(cluster, 20 * PARTITIONS)
    wait_for(lambda: consumed_all(members, want), 60, "the first records consumed")
    nodes = sorted(cluster.ports)
    wait_for(lambda: coordinator(cluster, nodes) is not None, 30, "one coordinator named")
    victim = coordinator(cluster, nodes)
    assert victim is not None
    wait_for(lambda: past_last_record(committed(cluster, victim), want), 30, "the commits")
    before = committed(cluster, victim)
    assert before is not None

    killed_at = time.monotonic()
    cluster.kill(victim)  # SIGKILL
    survivors = [n for n in nodes if n != victim]
    wait_for(
        lambda: coordinator(cluster, survivors) not in (None, victim),
        60,
        "a new coordinator named by both survivors",
    )
    successor = coordinator(cluster, survivors)
    assert successor is not None
    moved_s = time.monotonic() - killed_at
    # The new coordinator rebuilt the group from the replicated log: nothing committed lost.
    wait_for(lambda: committed(cluster, successor) is not None, 30, "the new coordinator")
    after = committed(cluster, successor)
    assert after is not None
    assert all(after.get(p, -1) >= offset for p, offset in before.items()), (before, after)

    # The members carry on by themselves: new records are consumed and committed.
    produce(cluster, 20, "b")
    want = data_offsets(cluster, 40 * PARTITIONS)  # before and after the kill
    # At-least-once: every record consumed (some twice: those not committed at the kill).
    wait_for(lambda: consumed_all(members, want), 120, "every record consumed after the kill")
    wait_for(lambda: past_last_record(committed(cluster, successor), want), 60, "the new commits")
    assert all(c.proc.poll() is None for c in members), "a member exited"
    # Still one group of both members at the new coordinator, every partition owned.
    wait_for(
        lambda: sorted(p for c in members for p in c.owned()) == list(range(PARTITIONS)),
        30,
        "the members to own every partition",
    )
    described = cluster._call(
        successor, "Group", "DescribeGroups", pb.DescribeGroupsRequest(group_ids=[GROUP])
    )
    [group] = described.groups
    assert not group.error.code and len(group.members) == 2, str(group)
    print(f"coordinator moved from node {victim} to {successor} in {moved_s:.2f}s")
