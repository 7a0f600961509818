"""The cluster wiring in-process: the topic mirror over a real Broker, which partitions a node
serves, the controller over a one-voter metadata group on a real runtime, `rilke cluster
health`'s verdicts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import grpc
import pytest

from rilke.cli.cluster_cmd import health_problems
from rilke.errors import (
    InvalidRequestError,
    NotControllerError,
    NotLeaderError,
    TopicAlreadyExistsError,
)
from rilke.partition.interface import Leadership, Partition, PartitionFactory, PartitionSpec
from rilke.replication.controller import (
    BrokerInfo,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.replication.host import ReplicationHost
from rilke.replication.raft.types import Role
from rilke.replication.transport import TransportConfig
from rilke.server.broker import Broker
from rilke.server.cluster.controller import (
    METADATA_DIR,
    METADATA_GROUP,
    ClusterController,
    metadata_state_lost,
    open_metadata_log,
)
from rilke.server.cluster.partitions import (
    KIND_LOCAL,
    KIND_REMOTE,
    KIND_REPLICATED,
    ClusterPartitionFactory,
    fresher_view,
)
from rilke.server.cluster.topic_mirror import MIRRORED_INDEX_FILE, TopicMirror
from rilke.server.config import BrokerConfig
from rilke.storage.manager import LogManager


def view(index: int, *topics: TopicMeta) -> MetadataView:
    brokers = {n: BrokerInfo(n, "127.0.0.1", 9000 + n, None, BrokerState.ALIVE, n) for n in (1, 2)}
    return MetadataView("c", 1, brokers, {t.name: t for t in topics}, applied_offset=index)


def topic(name: str, leaders: list[int], topic_id: str = "", **configs: str) -> TopicMeta:
    parts = tuple(PartitionInfo((leader,), leader, 0, (leader,)) for leader in leaders)
    return TopicMeta(name, topic_id or f"id-{name}", configs, parts)


def cluster_broker(
    data_dir: Path,
    current: list[MetadataView],
    specs: list[PartitionSpec] | None = None,
    factories: list[ClusterPartitionFactory] | None = None,
) -> Broker:
    """A node 1 broker whose "replicated" partitions are local ones (the specs they were
    built from are kept in ``specs``): what is built where, not Raft, is under test here."""
    config = BrokerConfig(data_dir=data_dir, node_id=1)
    manager = LogManager(data_dir, config.log, now_ms=0)
    built = specs if specs is not None else []

    def wrap(local: PartitionFactory) -> PartitionFactory:
        def replicated(spec: PartitionSpec) -> Partition:
            built.append(spec)
            return local(spec)

        factory = ClusterPartitionFactory(1, lambda: current[0], local, replicated)
        if factories is not None:
            factories.append(factory)
        return factory

    return Broker(config, manager, wrap_partition_factory=wrap)


def test_the_mirror_follows_the_metadata_and_serves_what_this_node_leads(tmp_path: Path) -> None:
    async def main() -> None:
        current = [view(0)]
        broker = cluster_broker(tmp_path, current)
        mirror = TopicMirror(broker, lambda: current[0], 1, tmp_path)
        try:
            current[0] = view(5, topic("a", [1, 2]), topic("b", [2]))
            assert await mirror.sync(current[0])
            assert {t.name for t in broker.topics} == {"a", "b"}
            assert broker.topics.require("a").topic_id == "id-a"
            mine, theirs = broker.partitions_of("a")
            assert mine.leadership.leader_id == 1
            with pytest.raises(NotLeaderError, match="node 2 leads it"):
                theirs.read(0, 1000)
            with pytest.raises(NotLeaderError):
                theirs.append(b"", -1)
            assert theirs.offsets().high_watermark == -1
            assert mine.offsets().high_watermark == 0

            # Grown, reconfigured, recreated under the same name, deleted.
            current[0] = view(
                9, topic("a", [1, 2, 1], **{"retention.ms": "1000"}), topic("b", [2], "id-b2")
            )
            assert await mirror.sync(current[0])
            assert broker.topics.require("a").num_partitions == 3
            assert broker.topics.require("a").configs == {"retention.ms": "1000"}
            assert broker.topics.require("b").topic_id == "id-b2"
            broker.create_topic("__own", 1)  # the node's own internal topic: left alone
            woke: list[int] = []
            mirror.on_deleted = lambda: woke.append(1)
            current[0] = view(12, topic("a", [1, 2, 1]))
            assert await mirror.sync(current[0])
            assert woke == [1]  # long polls on the deleted topic look again
            assert {t.name for t in broker.topics} == {"a", "__own"}
            assert not await mirror.sync(current[0])  # nothing left to change
        finally:
            broker.close()

    asyncio.run(main())


def test_the_mirror_never_acts_on_a_view_older_than_its_broker(tmp_path: Path) -> None:
    async def main() -> None:
        (tmp_path / MIRRORED_INDEX_FILE).write_text("20\n")
        current = [view(0)]
        broker = cluster_broker(tmp_path, current)
        broker.create_topic("kept", 1)
        mirror = TopicMirror(broker, lambda: current[0], 1, tmp_path)
        mirror.start()
        try:
            current[0] = view(3)  # replaying: an old view without the topic
            mirror.changed()
            with pytest.raises(TimeoutError):
                await mirror.wait_synced(3, 0.3)
            assert "kept" in broker.topics
            current[0] = view(25, topic("kept", [1], broker.topics.require("kept").topic_id))
            mirror.changed()
            await mirror.wait_synced(25, 5)
            assert "kept" in broker.topics
            assert (tmp_path / MIRRORED_INDEX_FILE).read_text().strip() == "25"
        finally:
            await mirror.stop()
            broker.close()

    asyncio.run(main())


def test_a_one_voter_controller_bootstraps_and_decides(tmp_path: Path) -> None:
    async def main() -> None:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        host = ReplicationHost(
            TransportConfig("c1", 1, f"127.0.0.1:{port}"), {}, server=server, tick_s=0.02
        )
        plog, storage = open_metadata_log(tmp_path)
        controller = ClusterController(
            1,
            host.runtime,
            storage,
            cluster_id="c1",
            bootstrap_voters=[1],
            validate_topic=lambda name, n: None,
        )
        await server.start()
        controller.start()
        await host.start()
        try:
            async with asyncio.timeout(20):
                while controller.view().cluster_id != "c1":
                    await asyncio.sleep(0.02)
            now = controller.now_ms()
            await controller.decide(lambda d: d.register_broker(1, "127.0.0.1", port, None, now))
            await controller.decide(lambda d: d.heartbeat(1, d.state.brokers[1].epoch, now))
            index = await controller.decide(lambda d: d.create_topic("t", 2, 1, {}, "tid"))
            assert controller.applied_index >= index
            assert controller.view().topic("t") is not None
            assert controller.view().controller_id == 1
            with pytest.raises(TopicAlreadyExistsError):
                await controller.decide(lambda d: d.create_topic("t", 1, 1, {}, "tid2"))
            # Nothing to change: answered at once with the applied index.
            assert await controller.decide(lambda d: []) == controller.applied_index
            assert controller.members() == (frozenset({1}), frozenset())
        finally:
            await controller.stop()
            await host.close()
            await server.stop(None)
            plog.close()

    asyncio.run(main())


def test_health_says_what_is_wrong() -> None:
    broker = {"node_id": 1, "address": "h:1", "state": "alive"}
    info = {"controller_id": 1, "brokers": [broker]}
    healthy = [{"name": "t", "error": "", "partitions": [
        {"partition": 0, "leader": 1, "replicas": [1], "isr": [1]}
    ]}]  # fmt: skip
    assert health_problems(info, healthy) == []
    fenced = {**info, "controller_id": -1, "brokers": [{**broker, "state": "fenced"}]}
    bad = [{"name": "t", "error": "", "partitions": [
        {"partition": 0, "leader": -1, "replicas": [1, 2], "isr": [1]}
    ]}]  # fmt: skip
    assert health_problems(fenced, bad) == [
        "no controller leader is known",
        "broker 1 (h:1) is fenced",
        "partition t-0 has no leader",
        "partition t-0: replicas [2] are not in sync",
    ]


def test_producer_ids_come_from_controller_blocks() -> None:
    from rilke.server.cluster.producer_ids import MAX_PRODUCER_EPOCH, ClusterProducerIds

    async def main() -> None:
        blocks = [(100, 4), (500, 4)]
        asked: list[int] = []

        async def fetch() -> tuple[int, int]:
            asked.append(1)
            return blocks.pop(0)

        ids = ClusterProducerIds(fetch)
        got = [(await ids.init_producer_id(-1, -1))[0] for _ in range(6)]
        assert got == [100, 101, 102, 103, 500, 501]
        assert len(asked) == 2  # the second block fetched ahead, once
        assert await ids.init_producer_id(7, 3) == (7, 4)  # a bump needs no block
        with pytest.raises(InvalidRequestError):
            await ids.init_producer_id(7, -1)
        assert (await ids.init_producer_id(7, MAX_PRODUCER_EPOCH))[0] == 502
        await ids.close()

        async def failing() -> tuple[int, int]:
            raise NotControllerError("no leader")

        with pytest.raises(NotControllerError):
            await ClusterProducerIds(failing).next_id()

    asyncio.run(main())


def test_a_node_builds_replicated_partitions_of_its_replicas_only(tmp_path: Path) -> None:
    async def main() -> None:
        specs: list[PartitionSpec] = []
        replicated = TopicMeta(
            "r",
            "id-r",
            {},
            (PartitionInfo((2, 1), 2, 4, (2, 1)), PartitionInfo((2, 3), -1, 1, (3,))),
        )
        current = [view(3, replicated)]
        broker = cluster_broker(tmp_path, current, specs)
        try:
            await TopicMirror(broker, lambda: current[0], 1, tmp_path).sync(current[0])
            assert [(s.partition, s.replicas, s.group, s.topic_id) for s in specs] == [
                (0, (2, 1), "id-r/0", "id-r")
            ]
            factory = ClusterPartitionFactory(1, lambda: current[0], broker_local, broker_local)
            assert factory.kind_of("r", 0) == (KIND_REPLICATED, (2, 1))
            assert factory.kind_of("r", 1) == (KIND_REMOTE, ())
            assert factory.kind_of("__own", 0) == (KIND_LOCAL, ())
            assert factory.kind_of("unknown", 0) == (KIND_REMOTE, ())
            remote = broker.partition("r", 1)
            with pytest.raises(NotLeaderError, match="its leader is not known") as e:
                remote.append(b"", -1)
            assert e.value.leader_id is None
            assert remote.leadership.replicas == (2, 3)
            assert remote.offsets().high_watermark == -1
        finally:
            broker.close()

    asyncio.run(main())


def test_the_mirror_rebuilds_partitions_whose_kind_changed(tmp_path: Path) -> None:
    async def main() -> None:
        specs: list[PartitionSpec] = []
        factories: list[ClusterPartitionFactory] = []
        current = [view(0)]
        broker = cluster_broker(tmp_path, current, specs, factories)
        broker.create_topic("t", 2, topic_id="id-t")  # opened before the metadata names it
        with pytest.raises(NotLeaderError, match="its leader is not known"):
            broker.partition("t", 0).read(0, 100)
        factory = factories[0]
        mirror = TopicMirror(
            broker, lambda: current[0], 1, tmp_path, changed_kind=factory.changed_kind
        )
        try:
            mine = TopicMeta("t", "id-t", {}, (PartitionInfo((1, 2), 1, 1, (1, 2)),) * 2)
            current[0] = view(4, mine)
            assert await mirror.sync(current[0])
            assert [(s.partition, s.group) for s in specs] == [(0, "id-t/0"), (1, "id-t/1")]
            # Left the replicas of partition 1: it serves nothing here any more.
            moved = PartitionInfo((2,), 2, 2, (2,))
            current[0] = view(6, TopicMeta("t", "id-t", {}, (mine.partitions[0], moved)))
            assert await mirror.sync(current[0])
            with pytest.raises(NotLeaderError, match="node 2 leads it"):
                broker.partition("t", 1).read(0, 100)
            assert len(specs) == 2  # partition 0 was left alone
            assert not await mirror.sync(current[0])
        finally:
            broker.close()

    asyncio.run(main())


def broker_local(spec: PartitionSpec) -> Partition:
    raise AssertionError("not built in this test")


class Led:
    """A replicated partition as fresher_view reads it: who its group says leads it."""

    def __init__(self, topic: str, partition: int, leadership: Leadership) -> None:
        self.topic, self.partition, self.leadership = topic, partition, leadership


def test_served_metadata_takes_the_nodes_own_fresher_raft_leaders() -> None:
    recorded = (
        PartitionInfo((1, 2, 3), 3, 4, (1, 2, 3)),  # the metadata's leader died at term 4
        PartitionInfo((1, 2, 3), -1, 2, (1, 2)),  # fenced: leader unknown at term 2
        PartitionInfo((1, 2, 3), 2, 7, (1, 2, 3)),  # newer than what this node knows
    )
    raw = view(9, TopicMeta("t", "id-t", {}, recorded))
    mine = [
        Led("t", 0, Leadership(1, 5, (1, 2, 3), (1, 2))),  # elected here at term 5
        Led("t", 1, Leadership(2, 2, (1, 2, 3), (2,))),  # a follower: knows the leader
        Led("t", 2, Leadership(1, 6, (1, 2, 3), (1,))),  # stale: ignored
    ]
    served = fresher_view(raw, mine, 1)  # type: ignore[arg-type]
    assert served.partition("t", 0) == PartitionInfo((1, 2, 3), 1, 5, (1, 2))
    assert served.partition("t", 1) == PartitionInfo((1, 2, 3), 2, 2, (1, 2))
    assert served.partition("t", 2) == recorded[2]
    assert served.applied_offset == 9 and served.brokers is raw.brokers
    assert fresher_view(raw, [], 1) is raw
    assert raw.partition("t", 0) == recorded[0]  # the applied view itself is not changed


def test_a_known_node_without_metadata_state_recovers_before_it_votes(tmp_path: Path) -> None:
    """A first start writes the metadata group's state at once; a node whose data dir has an
    identity but no such state lost it (wiped) and starts its group recovering."""
    plog, storage = open_metadata_log(tmp_path)
    assert storage.fresh
    assert not metadata_state_lost(storage, node_known=False)  # a first start
    plog.close()
    plog, storage = open_metadata_log(tmp_path)
    assert not storage.fresh  # written at once: a later absence means a wipe
    assert not metadata_state_lost(storage, node_known=True)
    plog.close()
    shutil.rmtree(tmp_path / METADATA_DIR)
    plog, storage = open_metadata_log(tmp_path)
    assert metadata_state_lost(storage, node_known=True)

    async def main() -> None:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        host = ReplicationHost(
            TransportConfig("c1", 1, f"127.0.0.1:{port}"), {}, server=server, tick_s=0.02
        )
        controller = ClusterController(
            1,
            host.runtime,
            storage,
            cluster_id="c1",
            bootstrap_voters=[1, 2, 3],
            validate_topic=lambda name, n: None,
            storage_lost=True,
        )
        controller.start()
        try:
            core = host.runtime.node(METADATA_GROUP)
            assert core.recovering
            core.campaign()
            assert core.role is Role.FOLLOWER and core.term == 0
        finally:
            await controller.stop()
            await host.close()
            plog.close()

    asyncio.run(main())
