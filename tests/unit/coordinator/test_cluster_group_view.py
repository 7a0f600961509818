"""ClusterGroupView, the group manager's view on a node of a cluster: ``__consumer_offsets``
asked of the controller once (replication factor min(3, live brokers)), usable only once the
metadata has it and this node mirrored that topic; commits bounded by the high watermark only
where this node leads the partition; CoordinatorLocator answers from the partition's own
leadership."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest

from rilke.errors import (
    CoordinatorNotAvailableError,
    NotCoordinatorError,
    TopicAlreadyExistsError,
)
from rilke.partition.interface import Leadership, PartitionOffsets
from rilke.replication.controller import (
    BrokerInfo,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.server.coordinator import OFFSETS_TOPIC, TopicPartition, partition_for_group
from rilke.server.group_placement import CoordinatorLocator
from rilke.server.group_service import GroupManager
from rilke.server.offsets_log import UNBOUNDED_OFFSET, ClusterGroupView
from rilke.server.topics import TopicInfo

ME = 2


class FakePartition:
    def __init__(self, topic: str, partition: int, leader: int | None, end: int = 50) -> None:
        self.topic = topic
        self.partition = partition
        self.leader = leader
        self.end = end
        self.callbacks: list[Any] = []

    @property
    def leadership(self) -> Leadership:
        return Leadership(self.leader, 3, (1, 2, 3), (1, 2, 3))

    def offsets(self) -> PartitionOffsets:
        return PartitionOffsets(0, self.end, self.end)

    def read(self, offset: int, max_bytes: int) -> Any:
        raise AssertionError("an empty partition is not read")

    def subscribe(self, callback: Any) -> Any:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def subscribe_leadership(self, callback: Any) -> Any:
        return self.subscribe(callback)


@dataclass
class FakeConfig:
    node_id: int = ME


@dataclass
class FakeBroker:
    config: FakeConfig = field(default_factory=FakeConfig)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    partitions: dict[tuple[str, int], FakePartition] = field(default_factory=dict)

    def partition(self, topic: str, p: int) -> FakePartition:
        return self.partitions[(topic, p)]


def view(topics: dict[str, TopicMeta], alive: int = 3) -> MetadataView:
    brokers = {
        b: BrokerInfo(
            b,
            "127.0.0.1",
            9000 + b,
            None,
            BrokerState.ALIVE if b <= alive else BrokerState.FENCED,
            b,
        )
        for b in (1, 2, 3, 4)
    }
    return MetadataView("c", 1, brokers, topics)


def meta(name: str, topic_id: str, leaders: list[int]) -> TopicMeta:
    parts = tuple(PartitionInfo((1, 2, 3), leader, 3, (1, 2, 3)) for leader in leaders)
    return TopicMeta(name, topic_id, {}, parts)


def test_creates_the_offsets_topic_once_and_serves_once_mirrored() -> None:
    async def main() -> None:
        broker = FakeBroker()
        current = view({})
        asked: list[tuple[str, int, int, dict[str, str], bool]] = []
        release = asyncio.Event()

        async def create(name: str, n: int, rf: int, configs: dict[str, str], v: bool) -> None:
            asked.append((name, n, rf, configs, v))
            await release.wait()
            raise TopicAlreadyExistsError("another node won")

        groups = ClusterGroupView(broker, lambda: current, create)
        m = GroupManager(groups, partitions=2, node_id=ME)
        await m.start()
        locator = CoordinatorLocator(m, ME, ("127.0.0.1", 9002), lambda: current)
        try:
            for _ in range(2):
                with pytest.raises(CoordinatorNotAvailableError, match="being created"):
                    locator.coordinator_for("g")
                await asyncio.sleep(0)
            # One request in flight, whatever the number of asks; three live brokers of four.
            assert [(a[0], a[1], a[2], a[4]) for a in asked] == [(OFFSETS_TOPIC, 2, 3, False)]
            assert asked[0][3]["cleanup.policy"] == "compact"
            release.set()
            await asyncio.sleep(0)

            # In the metadata but not mirrored here yet: still not available.
            current = view({OFFSETS_TOPIC: meta(OFFSETS_TOPIC, "oid", [ME, 1])})
            broker.topics[OFFSETS_TOPIC] = TopicInfo(OFFSETS_TOPIC, 2, topic_id="stale-local")
            assert groups.offsets_partition_count() is None
            broker.topics[OFFSETS_TOPIC] = TopicInfo(OFFSETS_TOPIC, 2, topic_id="oid")
            broker.partitions[(OFFSETS_TOPIC, 0)] = FakePartition(OFFSETS_TOPIC, 0, ME, end=0)
            broker.partitions[(OFFSETS_TOPIC, 1)] = FakePartition(OFFSETS_TOPIC, 1, 1, end=0)
            assert groups.offsets_partition_count() == 2

            by_partition = {partition_for_group(g, 2): g for g in ("a", "b", "c", "d", "e", "f")}
            mine, theirs = by_partition[0], by_partition[1]
            here = locator.coordinator_for(mine)
            assert (here.node_id, here.port, here.offsets_partition) == (ME, 9002, 0)
            there = locator.coordinator_for(theirs)
            assert (there.node_id, there.port, there.offsets_partition) == (1, 9001, 1)
            for _ in range(5):  # loading runs as a task on the loop
                await asyncio.sleep(0)
            await m.offset_fetch(_fetch(mine))  # loaded: this node leads partition 0
            with pytest.raises(NotCoordinatorError, match="node 1 leads"):
                await m.offset_fetch(_fetch(theirs))
        finally:
            await m.stop()

    asyncio.run(main())


def _fetch(group: str) -> Any:
    from rilke.proto import rilke_pb2 as pb

    return pb.OffsetFetchRequest(group_id=group)


def test_commit_bound_only_where_this_node_leads() -> None:
    async def never(*args: object) -> None:
        raise AssertionError("not asked")

    broker = FakeBroker()
    current = view({"t": meta("t", "tid", [ME, 1])})
    broker.partitions[("t", 0)] = FakePartition("t", 0, ME)
    broker.partitions[("t", 1)] = FakePartition("t", 1, 1)
    groups = ClusterGroupView(broker, lambda: current, never)
    assert groups.high_watermark(TopicPartition("t", 0)) == 50
    assert groups.high_watermark(TopicPartition("t", 1)) == UNBOUNDED_OFFSET
    assert groups.high_watermark(TopicPartition("t", 2)) is None
    assert groups.high_watermark(TopicPartition("nope", 0)) is None
    assert groups.high_watermark(TopicPartition(OFFSETS_TOPIC, 0)) is None
