"""A compacted topic replicated across real `rilke server` processes: three nodes,
replication factor 3, the Python client.

Keys are produced; a follower is killed (kill -9); more rounds of the same keys are produced
and the leader's maintenance compacts its sealed segments (below its high watermark); the
follower restarts, is sent what it missed (compacted batches among them: a compacted batch
keeps its offset span, an emptied one stays as an empty batch), catches up and compacts
by the same rule. Every replica ends with the same latest value per key, and a consumer
reads the whole log from the start, offsets increasing, the latest value of every key last.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_nodes import ClusterNodes
from waiting import wait_for

from rilke import Consumer, Producer, TopicPartition
from rilke.proto import rilke_pb2 as pb
from rilke.records.header import HEADER_SIZE, read_header
from rilke.records.reader import read_records

pytestmark = pytest.mark.slow

TOPIC = "compacted"
KEYS = 20
ROUNDS_BEFORE = 10
ROUNDS_WHILE_DOWN = 30
TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "segment.bytes": "4096",  # many sealed segments to compact
    "delete.retention.ms": "2000",  # a compaction pass every second
}
NODE_ARGS = ("--maintenance-interval-ms", "200")
FORM_TIMEOUT_S = 60.0
TIMEOUT_S = 60.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterNodes]:
    nodes = ClusterNodes(tmp_path, 3)
    try:
        yield nodes
    finally:
        nodes.close()


def start(cluster: ClusterNodes, node: int) -> None:
    cluster.nodes[node] = cluster.process(node, *NODE_ARGS).start()


def bootstrap(cluster: ClusterNodes, nodes: tuple[int, ...] = (1, 2, 3)) -> str:
    return ",".join(cluster.address(n) for n in nodes)


def leader_of(cluster: ClusterNodes, node: int) -> int | None:
    try:
        metadata = cluster.metadata(node)
    except Exception:
        return None
    for t in metadata.topics:
        if t.name == TOPIC and t.partitions and t.partitions[0].leader_epoch >= 1:
            leader: int = t.partitions[0].leader_id
            return leader if leader > 0 else None
    return None


def produce_rounds(address: str, first: int, rounds: int) -> dict[bytes, bytes]:
    """``rounds`` rounds of every key (acks=all), a round acknowledged before the next is
    sent (so a round is about one batch and the small segments roll); the latest value per
    key."""
    latest: dict[bytes, bytes] = {}
    with Producer(address, acks="all", linger_ms=1) as p:
        for r in range(first, first + rounds):
            futures = []
            for k in range(KEYS):
                key, value = b"key%d" % k, b"key%d-round%d-" % (k, r) + b"x" * 40
                futures.append(p.send(TOPIC, value, key=key, partition=0))
                latest[key] = value
            for future in futures:
                future.get(60)
    return latest


def on_disk(cluster: ClusterNodes, node: int) -> tuple[list[tuple[bytes, bytes]], int]:
    """The data records of the replica's segment files in offset order, as (key, value), and
    the log end offset they reach (a batch still being written at the tail is left out)."""
    records: list[tuple[bytes, bytes]] = []
    end = 0
    directory = cluster.data_dir(node) / f"{TOPIC}-0"
    for segment in sorted(directory.glob("*.log")):
        try:
            data = segment.read_bytes()
        except FileNotFoundError:  # swapped or deleted meanwhile: read again later
            return [], -1
        pos = 0
        while len(data) - pos >= HEADER_SIZE:
            header = read_header(data, pos)
            if pos + header.size > len(data):
                break
            batch = data[pos : pos + header.size]
            records += [
                (bytes(r.key or b""), bytes(r.value or b""))
                for r in read_records(batch, skip_control=True)
            ]
            end = header.next_offset
            pos += header.size
    return records, end


def latest(records: list[tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return dict(records)


def test_a_restarted_follower_catches_up_on_a_compacted_topic(cluster: ClusterNodes) -> None:
    for node in (1, 2, 3):
        start(cluster, node)
    wait_for(
        lambda: all(cluster.alive_brokers(n) == {1, 2, 3} for n in (1, 2, 3)),
        FORM_TIMEOUT_S,
        "the cluster to form",
    )
    request = pb.CreateTopicsRequest(
        topics=[
            pb.NewTopic(name=TOPIC, num_partitions=1, replication_factor=3, configs=TOPIC_CONFIGS)
        ]
    )
    result = cluster._call(1, "Admin", "CreateTopics", request).results[0]
    assert not result.error.code, result.error.message
    wait_for(lambda: leader_of(cluster, 1) is not None, TIMEOUT_S, "the partition's leader")
    leader = leader_of(cluster, 1)
    assert leader is not None
    follower, other = (n for n in (1, 2, 3) if n != leader)

    want = produce_rounds(bootstrap(cluster), 0, ROUNDS_BEFORE)
    cluster.kill(follower)
    want.update(
        produce_rounds(bootstrap(cluster, (leader, other)), ROUNDS_BEFORE, ROUNDS_WHILE_DOWN)
    )
    produced = KEYS * (ROUNDS_BEFORE + ROUNDS_WHILE_DOWN)

    # The leader compacts its sealed segments (its maintenance, every 200 ms).
    wait_for(
        lambda: 0 < len(on_disk(cluster, leader)[0]) < produced / 2,
        TIMEOUT_S,
        "the leader to compact its log",
    )
    _records, leader_end = on_disk(cluster, leader)

    # The follower comes back, is sent what it missed, and compacts by the same rule.
    start(cluster, follower)

    def caught_up_and_compacted(node: int) -> bool:
        records, end = on_disk(cluster, node)
        return end >= leader_end and len(records) < produced / 2 and latest(records) == want

    for node in (leader, other, follower):
        wait_for(
            lambda n=node: caught_up_and_compacted(n),
            TIMEOUT_S,
            f"node {node} to hold every key's latest value, compacted",
        )

    # A consumer reads it all from the start: offsets increasing, every key's latest last.
    seen: list[tuple[int, bytes, bytes]] = []
    with Consumer(bootstrap_servers=bootstrap(cluster), auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(TOPIC, 0)])

        def read_to_the_end() -> bool:
            for recs in c.poll(200).values():
                seen.extend((r.offset, r.key, r.value) for r in recs)
            return latest([(k, v) for _, k, v in seen]) == want

        wait_for(read_to_the_end, TIMEOUT_S, "the consumer to read every key's latest value")
    offsets = [o for o, _, _ in seen]
    assert offsets == sorted(set(offsets)), "offsets repeated or out of order"
    assert len(seen) < produced, "the consumer read an uncompacted log"
