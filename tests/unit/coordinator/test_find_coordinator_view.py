"""FindCoordinator answers from the metadata view when it is given one: the leader of the
group's partition of __consumer_offsets, or COORDINATOR_NOT_AVAILABLE while it has none."""

from __future__ import annotations

import asyncio

from test_group_manager import Clock, FakeBroker, err, started

from rilke.errors import CoordinatorNotAvailableError
from rilke.proto import rilke_pb2 as pb
from rilke.replication.controller import (
    NO_LEADER,
    BrokerInfo,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.server.coordinator import OFFSETS_TOPIC
from rilke.server.group_service import GroupService


def view(leaders: list[int]) -> MetadataView:
    brokers = {
        b: BrokerInfo(b, f"10.0.0.{b}", 9000 + b, None, BrokerState.ALIVE, b) for b in (1, 2, 3)
    }
    parts = tuple(
        PartitionInfo((1, 2, 3), leader, 1, (1, 2, 3) if leader != NO_LEADER else (1,))
        for leader in leaders
    )
    topics = {OFFSETS_TOPIC: TopicMeta(OFFSETS_TOPIC, "o", {}, parts)}
    return MetadataView("c", 1, brokers, topics)


def test_find_coordinator_names_the_offsets_partitions_leader() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock, partitions=4)
        try:
            leaders = [1, 2, 3, 1]
            current = view(leaders)
            service = GroupService(m, ("10.9.9.9", 1), node_id=9, metadata_view=lambda: current)
            found = await service.FindCoordinator(pb.FindCoordinatorRequest(group_id="g"), None)
            assert err(found) is None
            p = found.offsets_partition
            assert p == m.partition_for("g")
            leader = leaders[p]
            assert (found.coordinator.node_id, found.coordinator.host, found.coordinator.port) == (
                leader,
                f"10.0.0.{leader}",
                9000 + leader,
            )
            leaders[p] = NO_LEADER
            current = view(leaders)
            lost = await service.FindCoordinator(pb.FindCoordinatorRequest(group_id="g"), None)
            assert err(lost) is CoordinatorNotAvailableError
            assert OFFSETS_TOPIC in lost.error.message
        finally:
            await m.stop()

    asyncio.run(main())
