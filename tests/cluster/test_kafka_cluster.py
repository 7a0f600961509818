"""Kafka clients against three `rilke server --initial-voters ... --kafka-listen` nodes.

Every node's Metadata lists the three Kafka listeners and each partition's leader as the
metadata has it; admin requests through any node reach the controller; producers and
consumers bootstrapped at one node go to the leaders; a node that does not lead a partition
answers NOT_LEADER_OR_FOLLOWER and writes nothing, and kafka-python and confluent-kafka then
refresh their metadata and go to the new leader (a topic deleted and created again with
another leader, while the clients still hold the old metadata).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cluster_nodes import ClusterNodes
from waiting import wait_for

kafka = pytest.importorskip("kafka", reason="kafka-python is not installed (the test extra)")
aiokafka = pytest.importorskip("aiokafka", reason="aiokafka is not installed (the test extra)")
confluent_kafka = pytest.importorskip(
    "confluent_kafka", reason="confluent-kafka is not installed (the test extra)"
)
from confluent_kafka.admin import AdminClient  # noqa: E402
from confluent_kafka.admin import NewTopic as CKNewTopic  # noqa: E402
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic  # noqa: E402
from kafka_mixed_group import MixedGroup  # noqa: E402

from rilke.server.kafka import codec  # noqa: E402
from rilke.server.kafka import errors as ec  # noqa: E402
from rilke.server.kafka import schemas as sc  # noqa: E402
from tests.produce_batches import make_batch  # noqa: E402

pytestmark = pytest.mark.slow
FORM_TIMEOUT_S = 90.0
DEADLINE_S = 30.0
NODES = (1, 2, 3)


class KafkaCluster:
    def __init__(self, nodes: ClusterNodes) -> None:
        self.nodes = nodes
        self.kafka: dict[int, str] = {}

    def start(self) -> None:
        for n in NODES:
            proc = self.nodes.process(n, "--kafka-listen", "127.0.0.1:0")
            self.nodes.nodes[n] = proc.start()
            self.kafka[n] = proc.wait_for_line("rilke kafka listener on ")

    def ports(self) -> dict[int, int]:
        return {n: int(a.rpartition(":")[2]) for n, a in self.kafka.items()}

    def leaders(self, node: int, topic: str) -> dict[int, int]:
        """Partition -> leader as ``node`` answers Kafka Metadata."""
        meta = raw_call(self.kafka[node], sc.METADATA, 4, metadata_request([topic]))
        [t] = meta["topics"]
        return {p["partition_index"]: p["leader_id"] for p in t["partitions"]}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    nodes = ClusterNodes(Path(tmp_path_factory.mktemp("kcluster")), len(NODES))
    kc = KafkaCluster(nodes)
    try:
        kc.start()
        wait_for(lambda: all(listed(kc, n) for n in NODES), FORM_TIMEOUT_S, "the Kafka brokers")
        yield kc
    finally:
        nodes.close()


def listed(kc: KafkaCluster, node: int) -> bool:
    try:
        meta = raw_call(kc.kafka[node], sc.METADATA, 4, metadata_request([]))
    except OSError:
        return False
    return {b["node_id"] for b in meta["brokers"]} == set(NODES) and meta["controller_id"] > 0


# --- a raw Kafka client: one request, one answer ---------------------------------------------


def metadata_request(topics: list[str] | None) -> dict[str, Any]:
    names = None if topics is None else [{"name": t} for t in topics]
    return {"topics": names, "allow_auto_topic_creation": False}


def raw_call(address: str, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=DEADLINE_S) as sock:
        sock.sendall(codec.encode_request(api_key, version, 7, "raw", body))
        (length,) = struct.unpack(">i", recv_exactly(sock, 4))
        correlation, response = codec.decode_response(api_key, version, recv_exactly(sock, length))
    assert correlation == 7
    return response


def recv_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        assert chunk, "the broker closed the connection"
        data += chunk
    return data


def latest_offset(address: str, topic: str, partition: int) -> tuple[int, int]:
    body = {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [
            {"name": topic, "partitions": [{"partition_index": partition, "timestamp": -1}]}
        ],
    }
    [p] = raw_call(address, sc.LIST_OFFSETS, 2, body)["topics"][0]["partitions"]
    return p["error_code"], p["offset"]


def create(kc: KafkaCluster, via: int, name: str, partitions: int, rf: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kc.kafka[via])
    try:
        result = admin.create_topics([NewTopic(name, partitions, rf)])
        assert result["topics"][0]["error_code"] == 0, result
    finally:
        admin.close()
    wait_for(
        lambda: all(-1 not in kc.leaders(n, name).values() for n in NODES),
        DEADLINE_S,
        f"{name}'s leaders on every node",
    )
    # And each leader serves (a replicated partition's Raft group has elected it).
    wait_for(
        lambda: all(
            latest_offset(kc.kafka[leader], name, p)[0] == ec.NONE
            for p, leader in kc.leaders(1, name).items()
        ),
        DEADLINE_S,
        f"{name}'s leaders serving",
    )


def settle(kc: KafkaCluster, name: str) -> None:
    """Wait until every node's Metadata has each partition of ``name`` led by its preferred
    (first) replica: the cluster hands leadership back to it by a Raft leader transfer some
    seconds after an election picked another (rilke.server.cluster.mover), and a group test
    whose coordinator moves in the middle tests rebalancing, not the listener."""

    def preferred(node: int) -> bool:
        meta = raw_call(kc.kafka[node], sc.METADATA, 4, metadata_request([name]))
        parts = meta["topics"][0]["partitions"]
        return bool(parts) and all(p["leader_id"] == p["replica_nodes"][0] for p in parts)

    wait_for(lambda: all(preferred(n) for n in NODES), 3 * DEADLINE_S, f"{name} settled")


def settle_group(kc: KafkaCluster, group: str) -> None:
    """Create __consumer_offsets (a FindCoordinator does), and wait until its leaders settle."""

    def found() -> bool:
        body = {"key": group, "key_type": 0}
        return raw_call(kc.kafka[1], sc.FIND_COORDINATOR, 1, body)["error_code"] == ec.NONE

    wait_for(found, DEADLINE_S, f"a coordinator for {group}")
    settle(kc, "__consumer_offsets")


def delete(kc: KafkaCluster, via: int, name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kc.kafka[via])
    try:
        admin.delete_topics([name])
    finally:
        admin.close()
    wait_for(
        lambda: all(name not in kc.nodes.topics(n) for n in NODES), DEADLINE_S, f"{name} deleted"
    )


# --- the tests -------------------------------------------------------------------------------


def test_every_node_lists_every_kafka_broker_and_the_same_leaders(cluster: KafkaCluster) -> None:
    create(cluster, 2, "kc-meta", 3, 3)
    grpc_leaders = {p: leader for p, leader, _ in cluster.nodes.topics(1)["kc-meta"]}
    ports = cluster.ports()
    for n in NODES:
        ck = AdminClient({"bootstrap.servers": cluster.kafka[n]})
        meta = ck.list_topics(timeout=DEADLINE_S)
        assert {b.id: (b.host, b.port) for b in meta.brokers.values()} == {
            b: ("127.0.0.1", ports[b]) for b in NODES
        }
        assert meta.controller_id in NODES
        parts = meta.topics["kc-meta"].partitions
        assert {p: parts[p].leader for p in parts} == grpc_leaders
        assert all(sorted(parts[p].replicas) == [1, 2, 3] for p in parts)
        unknown = ck.list_topics(topic="kc-nope", timeout=DEADLINE_S).topics["kc-nope"]
        assert unknown.error is not None
        assert unknown.error.code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART
    raw = raw_call(cluster.kafka[3], sc.METADATA, 4, metadata_request(["kc-nope"]))
    assert raw["topics"][0]["error_code"] == ec.UNKNOWN_TOPIC_OR_PARTITION
    # `rilke cluster info` shows each broker's Kafka listener.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rilke",
            "cluster",
            "info",
            "--json",
            "-b",
            cluster.nodes.address(2),
        ],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=True,
    )
    shown = {b["node_id"]: b["kafka_address"] for b in json.loads(done.stdout)["brokers"]}
    assert shown == cluster.kafka


def test_admin_through_any_node_reaches_the_controller(cluster: KafkaCluster) -> None:
    create(cluster, 3, "kc-admin", 2, 2)
    for n in NODES:
        assert len(cluster.nodes.topics(n)["kc-admin"]) == 2
    admin = KafkaAdminClient(bootstrap_servers=cluster.kafka[1])
    try:
        admin.create_partitions({"kc-admin": NewPartitions(5)})
        wait_for(
            lambda: all(len(cluster.nodes.topics(n)["kc-admin"]) == 5 for n in NODES),
            DEADLINE_S,
            "five partitions on every node",
        )
    finally:
        admin.close()
    ck = AdminClient({"bootstrap.servers": cluster.kafka[2]})
    for future in ck.create_topics([CKNewTopic("kc-admin-ck", 3, 3)]).values():
        future.result(DEADLINE_S)
    for future in ck.create_topics([CKNewTopic("kc-admin-ck", 3, 3)]).values():
        with pytest.raises(confluent_kafka.KafkaException, match="already exists"):
            future.result(DEADLINE_S)
    wait_for(
        lambda: all("kc-admin-ck" in cluster.nodes.topics(n) for n in NODES),
        DEADLINE_S,
        "the topic on every node",
    )
    for future in ck.delete_topics(["kc-admin", "kc-admin-ck"]).values():
        future.result(DEADLINE_S)
    wait_for(
        lambda: all(not {"kc-admin", "kc-admin-ck"} & set(cluster.nodes.topics(n)) for n in NODES),
        DEADLINE_S,
        "the deleted topics gone from every node",
    )


def test_a_node_that_does_not_lead_answers_not_leader_and_writes_nothing(
    cluster: KafkaCluster,
) -> None:
    create(cluster, 1, "kc-refuse", 1, 1)
    leader = cluster.leaders(1, "kc-refuse")[0]
    other = next(n for n in NODES if n != leader)
    batch = make_batch([b"v"])
    produce = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 5000,
        "topic_data": [{"name": "kc-refuse", "partition_data": [{"index": 0, "records": batch}]}],
    }
    _, end = latest_offset(cluster.kafka[leader], "kc-refuse", 0)  # a replicated log: Raft's no-op
    refused = raw_call(cluster.kafka[other], sc.PRODUCE, 3, produce)
    assert refused["responses"][0]["partition_responses"][0]["error_code"] == (
        ec.NOT_LEADER_OR_FOLLOWER
    )
    fetch = {
        "replica_id": -1,
        "max_wait_ms": 0,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "isolation_level": 0,
        "topics": [
            {
                "topic": "kc-refuse",
                "partitions": [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}],
            }
        ],
    }
    fetched = raw_call(cluster.kafka[other], sc.FETCH, 4, fetch)
    assert fetched["responses"][0]["partitions"][0]["error_code"] == ec.NOT_LEADER_OR_FOLLOWER
    assert latest_offset(cluster.kafka[other], "kc-refuse", 0)[0] == ec.NOT_LEADER_OR_FOLLOWER
    assert latest_offset(cluster.kafka[leader], "kc-refuse", 0) == (ec.NONE, end)  # none written
    accepted = raw_call(cluster.kafka[leader], sc.PRODUCE, 3, produce)
    assert accepted["responses"][0]["partition_responses"][0]["error_code"] == ec.NONE
    assert latest_offset(cluster.kafka[leader], "kc-refuse", 0) == (ec.NONE, end + 1)


def test_producers_and_consumers_bootstrapped_at_one_node_reach_every_leader(
    cluster: KafkaCluster,
) -> None:
    create(cluster, 1, "kc-flow", 3, 1)
    assert len(set(cluster.leaders(1, "kc-flow").values())) == 3  # one partition per node
    kp = kafka.KafkaProducer(bootstrap_servers=cluster.kafka[1], acks="all")  # idempotent
    try:
        for i in range(30):
            kp.send("kc-flow", f"kp-{i}".encode(), partition=i % 3).get(DEADLINE_S)
    finally:
        kp.close(DEADLINE_S)
    ck = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka[2], "acks": "all"})
    failed: list[Any] = []
    for i in range(30):
        ck.produce(
            "kc-flow",
            f"ck-{i}".encode(),
            partition=i % 3,
            on_delivery=lambda err, _m: failed.append(err) if err else None,
        )
    assert ck.flush(DEADLINE_S) == 0 and not failed
    expected = {f"kp-{i}" for i in range(30)} | {f"ck-{i}" for i in range(30)}
    assert consume_all(cluster.kafka[3], "kc-flow", 3, len(expected)) == expected


def consume_all(bootstrap: str, topic: str, partitions: int, count: int) -> set[str]:
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"kc-{topic}", "enable.auto.commit": False}
    )
    try:
        consumer.assign([confluent_kafka.TopicPartition(topic, p, 0) for p in range(partitions)])
        got: set[str] = set()
        deadline = time.monotonic() + DEADLINE_S
        while len(got) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                got.add(message.value().decode())
        return got
    finally:
        consumer.close()


def test_clients_with_stale_metadata_refresh_on_not_leader_and_go_to_the_new_leader(
    cluster: KafkaCluster,
) -> None:
    """The topic is deleted and created again led by another node while the three producers
    hold its old metadata: their next Produce goes to the old leader, which answers
    NOT_LEADER_OR_FOLLOWER; they refresh and deliver to the new one."""
    create(cluster, 1, "kc-move", 1, 1)
    old_leader = cluster.leaders(1, "kc-move")[0]
    kp = kafka.KafkaProducer(
        bootstrap_servers=cluster.kafka[1], acks=1, enable_idempotence=False, retries=20
    )
    ck = confluent_kafka.Producer({"bootstrap.servers": cluster.kafka[2], "acks": 1})
    aio = AioProducer(cluster.kafka[3])
    try:
        kp.send("kc-move", b"before-kp", partition=0).get(DEADLINE_S)
        ck.produce("kc-move", b"before-ck", partition=0)
        assert ck.flush(DEADLINE_S) == 0
        aio.send("kc-move", b"before-aio", 0)
        delete(cluster, 1, "kc-move")
        # Other topics' leaders shift the placement until the new kc-move is led elsewhere.
        fillers = 0
        while True:
            create(cluster, 1, "kc-move", 1, 1)
            if cluster.leaders(1, "kc-move")[0] != old_leader:
                break
            delete(cluster, 1, "kc-move")
            fillers += 1
            assert fillers < 6, "the new topic was always placed on its old leader"
            create(cluster, 1, f"kc-filler-{fillers}", 1, 1)
        new_leader = cluster.leaders(1, "kc-move")[0]
        _, end = latest_offset(cluster.kafka[new_leader], "kc-move", 0)
        assert latest_offset(cluster.kafka[old_leader], "kc-move", 0)[0] == (
            ec.NOT_LEADER_OR_FOLLOWER
        )
        kp.send("kc-move", b"after-kp", partition=0).get(DEADLINE_S)
        errors: list[Any] = []
        ck.produce(
            "kc-move",
            b"after-ck",
            partition=0,
            on_delivery=lambda err, _m: errors.append(err) if err else None,
        )
        assert ck.flush(DEADLINE_S) == 0 and not errors
        aio.send("kc-move", b"after-aio", 0)
    finally:
        kp.close(DEADLINE_S)
        aio.close()
    # acks=1 answers once the leader wrote; the high watermark follows its fsync.
    wait_for(
        lambda: latest_offset(cluster.kafka[new_leader], "kc-move", 0) == (ec.NONE, end + 3),
        DEADLINE_S,
        "the three records under the new leader's high watermark",
    )
    after = {"after-kp", "after-ck", "after-aio"}
    assert consume_all(cluster.kafka[3], "kc-move", 1, 3) == after


class AioProducer:
    """aiokafka's producer on its own event loop in a thread, driven from a blocking test."""

    def __init__(self, bootstrap: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._producer: Any = self._run(self._start(bootstrap))

    @staticmethod
    async def _start(bootstrap: str) -> Any:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks=1)
        await producer.start()
        return producer

    def _run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(DEADLINE_S)

    def send(self, topic: str, value: bytes, partition: int) -> None:
        self._run(self._producer.send_and_wait(topic, value, partition=partition))

    def close(self) -> None:
        try:
            self._run(self._producer.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(DEADLINE_S)
            self._loop.close()


def test_a_group_finds_one_coordinator_from_every_node_and_resumes_at_its_commits(
    cluster: KafkaCluster,
) -> None:
    create(cluster, 1, "kc-group", 3, 1)
    settle_group(cluster, "kc-g")
    values = [f"g-{i}" for i in range(30)]
    kp = kafka.KafkaProducer(bootstrap_servers=cluster.kafka[2], acks="all")
    try:
        for i, v in enumerate(values):
            kp.send("kc-group", v.encode(), partition=i % 3).get(DEADLINE_S)
    finally:
        kp.close(DEADLINE_S)

    def coordinator(node: int) -> tuple[int, int, str, int]:
        found = raw_call(
            cluster.kafka[node], sc.FIND_COORDINATOR, 1, {"key": "kc-g", "key_type": 0}
        )
        return found["error_code"], found["node_id"], found["host"], found["port"]

    def agreed() -> bool:
        answers = {coordinator(n) for n in NODES}
        return len(answers) == 1 and next(iter(answers))[0] == ec.NONE

    wait_for(agreed, DEADLINE_S, "one coordinator named by every node")
    _, node, host, port = coordinator(1)
    assert (host, port) == ("127.0.0.1", cluster.ports()[node])  # its Kafka listener
    # kafka-python reads half and commits; confluent-kafka (through another node) resumes.
    first = kafka.KafkaConsumer(
        "kc-group",
        bootstrap_servers=cluster.kafka[3],
        group_id="kc-g",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(DEADLINE_S * 1000),
    )
    seen: list[str] = []
    try:
        for message in first:
            seen.append(message.value.decode())
            if len(seen) == 15:
                break
        first.commit()
    finally:
        first.close()
    second = confluent_kafka.Consumer(
        {
            "bootstrap.servers": cluster.kafka[1],
            "group.id": "kc-g",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    rest: list[str] = []
    try:
        second.subscribe(["kc-group"])
        deadline = time.monotonic() + DEADLINE_S
        while len(seen) + len(rest) < len(values) and time.monotonic() < deadline:
            message = second.poll(0.5)
            if message is not None and message.error() is None:
                rest.append(message.value().decode())
    finally:
        second.close()
    assert sorted(seen + rest) == sorted(values)  # each once: resumed at the commits


def test_topic_configs_change_through_any_node_with_both_admin_clients(
    cluster: KafkaCluster,
) -> None:
    from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource
    from kafka.admin import ConfigResource as KPConfigResource
    from kafka.admin import ConfigResourceType

    create(cluster, 1, "kc-configs", 1, 3)

    def described(node: int) -> dict[str, str]:
        ck = AdminClient({"bootstrap.servers": cluster.kafka[node]})
        resource = ConfigResource(ConfigResource.Type.TOPIC, "kc-configs")
        [future] = ck.describe_configs([resource]).values()
        return {k: v.value for k, v in future.result(DEADLINE_S).items() if not v.is_default}

    def everywhere(expected: dict[str, str]) -> None:
        wait_for(
            lambda: all(described(n) == expected for n in NODES),
            DEADLINE_S,
            f"configs {expected} on every node",
        )

    admin = KafkaAdminClient(bootstrap_servers=cluster.kafka[2])
    try:
        topic = ConfigResourceType.TOPIC
        # IncrementalAlterConfigs (kafka-python's choice when the broker offers it): SET.
        admin.alter_configs(
            [KPConfigResource(topic, "kc-configs", {"retention.ms": "60000"})],
            raise_on_unknown=False,
        )
        everywhere({"retention.ms": "60000"})
        # AlterConfigs replaces the whole set; kafka-python sends the set ones along.
        admin.alter_configs(
            [KPConfigResource(topic, "kc-configs", {"segment.bytes": "1048576"})],
            raise_on_unknown=False,
            incremental=False,
        )
        everywhere({"retention.ms": "60000", "segment.bytes": "1048576"})
    finally:
        admin.close()
    ck = AdminClient({"bootstrap.servers": cluster.kafka[3]})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        "kc-configs",
        incremental_configs=[
            ConfigEntry("segment.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET),
        ],
    )
    for future in ck.incremental_alter_configs([resource]).values():
        future.result(DEADLINE_S)
    everywhere({"retention.ms": "60000", "cleanup.policy": "compact"})
    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "kc-configs",
        incremental_configs=[
            ConfigEntry("retention.ms", "soon", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    for future in ck.incremental_alter_configs([bad]).values():
        with pytest.raises(confluent_kafka.KafkaException, match=r"retention\.ms"):
            future.result(DEADLINE_S)
    # The refusal changed nothing.
    assert described(1) == {"retention.ms": "60000", "cleanup.policy": "compact"}


def test_init_producer_id_hands_out_unique_ids_from_every_node(cluster: KafkaCluster) -> None:
    ids = []
    for _ in range(3):
        for n in NODES:
            body = {"transactional_id": None, "transaction_timeout_ms": 60000}
            answer = raw_call(cluster.kafka[n], sc.INIT_PRODUCER_ID, 0, body)
            assert answer["error_code"] == ec.NONE
            ids.append(answer["producer_id"])
    assert len(set(ids)) == len(ids) and min(ids) >= 0


def test_producers_follow_a_failover_and_a_restarted_node_registers_its_new_listener(
    cluster: KafkaCluster,
) -> None:
    """kill -9 of a replicated partition's leader: Raft elects another, every survivor's
    Metadata names it, kafka-python (idempotent) and confluent-kafka deliver to it, and a
    consumer that was fetching from the old leader reads on from the new one; every
    acknowledged record is there. The killed node restarts on another Kafka port and is
    listed at it (so the tests after this one find three nodes again)."""
    create(cluster, 1, "kc-failover", 1, 3)
    leader = cluster.leaders(1, "kc-failover")[0]
    survivors = [n for n in NODES if n != leader]
    everyone = list(cluster.kafka.values())
    kp = kafka.KafkaProducer(bootstrap_servers=everyone, acks="all", request_timeout_ms=5000)
    ck = confluent_kafka.Producer(
        {"bootstrap.servers": ",".join(everyone), "acks": "all", "message.timeout.ms": 60000}
    )
    errors: list[Any] = []

    def ck_send(value: str) -> None:
        ck.produce(
            "kc-failover",
            value.encode(),
            partition=0,
            on_delivery=lambda err, _m: errors.append(err) if err else None,
        )

    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": ",".join(everyone), "group.id": "kc-fo", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition("kc-failover", 0, 0)])
    read: set[str] = set()

    def read_until(count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(read) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                read.add(message.value().decode())

    try:
        for i in range(10):
            kp.send("kc-failover", f"kp-before-{i}".encode(), partition=0).get(DEADLINE_S)
            ck_send(f"ck-before-{i}")
        assert ck.flush(DEADLINE_S) == 0 and not errors
        read_until(20, DEADLINE_S)
        assert len(read) == 20  # read from the leader about to die
        cluster.nodes.kill(leader)
        for i in range(10):
            kp.send("kc-failover", f"kp-after-{i}".encode(), partition=0).get(2 * DEADLINE_S)
            ck_send(f"ck-after-{i}")
        assert ck.flush(2 * DEADLINE_S) == 0 and not errors
        read_until(40, 2 * DEADLINE_S)
    finally:
        kp.close(DEADLINE_S)
        consumer.close()
    wait_for(
        lambda: all(cluster.leaders(n, "kc-failover")[0] in survivors for n in survivors),
        DEADLINE_S,
        "the new leader in every survivor's Metadata",
    )
    expected = {
        f"{c}-{w}-{i}" for c in ("kp", "ck") for w in ("before", "after") for i in range(10)
    }
    assert read == expected  # the same consumer, across the failover
    assert consume_all(cluster.kafka[survivors[0]], "kc-failover", 1, len(expected)) == expected
    # The killed node comes back on a new Kafka port: it registers it, every node lists it.
    old_port = cluster.ports()[leader]
    proc = cluster.nodes.process(leader, "--kafka-listen", "127.0.0.1:0")
    cluster.nodes.nodes[leader] = proc.start()
    cluster.kafka[leader] = proc.wait_for_line("rilke kafka listener on ")
    new_port = cluster.ports()[leader]
    assert new_port != old_port

    def relisted(node: int) -> bool:
        meta = raw_call(cluster.kafka[node], sc.METADATA, 4, metadata_request([]))
        return {b["node_id"]: b["port"] for b in meta["brokers"]}.get(leader) == new_port

    wait_for(lambda: all(relisted(n) for n in NODES), FORM_TIMEOUT_S, "the new Kafka port listed")


def test_the_compose_file_gives_every_node_a_reachable_kafka_listener() -> None:
    from rilke_broker_process import REPO_ROOT

    from rilke.server.config import load_config

    compose = (REPO_ROOT / "docker" / "compose.yaml").read_text()
    for n in NODES:
        env = {
            "RILKE_INITIAL_VOTERS": "1@rilke-1:9292,2@rilke-2:9292,3@rilke-3:9292",
            "RILKE_NODE_ID": str(n),
            "RILKE_LISTEN": "0.0.0.0:9292",
            "RILKE_ADVERTISED_LISTEN": f"rilke-{n}:9292",
            "RILKE_KAFKA_LISTEN": "0.0.0.0:9092",
            "RILKE_KAFKA_ADVERTISED_LISTEN": f"rilke-{n}:9092",
        }
        for name, value in env.items():
            if name.startswith("RILKE_KAFKA"):
                assert f"{name}: {value}" in compose, name
        assert load_config({}, env=env).kafka_advertised_listen == f"rilke-{n}:9092"


def test_one_group_of_three_libraries_bootstrapped_at_three_nodes(cluster: KafkaCluster) -> None:
    """kafka-python at node 1, confluent-kafka at node 2, aiokafka at node 3, one group: each
    finds the one coordinator, `rilke group describe` shows the three members together, and
    between them they consume everything."""
    create(cluster, 1, "kc-mixed", 6, 3)
    settle(cluster, "kc-mixed")
    settle_group(cluster, "kc-mix")
    group = MixedGroup("kc-mixed", "kc-mix", [cluster.kafka[n] for n in (1, 2, 3)])

    def members() -> int:
        command = ["group", "describe", "kc-mix", "--json", "-b", cluster.nodes.address(1)]
        done = subprocess.run(
            [sys.executable, "-m", "rilke", *command],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            check=False,
        )
        return len(json.loads(done.stdout)["members"]) if done.returncode == 0 else 0

    producer = kafka.KafkaProducer(bootstrap_servers=cluster.kafka[2], acks="all")

    def produce(already: int) -> list[str]:
        chunk = [f"m-{already + i}" for i in range(12)]
        for i, value in enumerate(chunk):
            producer.send("kc-mixed", value.encode(), partition=i % 6).get(DEADLINE_S)
        return chunk

    group.start()
    try:
        wait_for(lambda: members() == 3, 2 * DEADLINE_S, "three members in one group")
        produced = group.share_until_all_consumed(produce, 2 * DEADLINE_S)
    finally:
        producer.close(DEADLINE_S)
        group.stop(DEADLINE_S)
    assert not group.errors, group.errors
    assert group.consumed() == produced
