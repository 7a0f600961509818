"""MetadataView: the cluster as one node sees it, what Metadata and DescribeTopics answer.

A view is an immutable picture taken from a :class:`MetadataState` (the applier's, on every
node of a cluster; or built from today's single broker by ``rilke.server.local_view``): the
cluster id, the controller leader, the brokers and every topic's partitions with their
leaders, epochs, replicas and in-sync replicas. Taking one costs O(brokers + topics): the
values inside are the state's frozen objects, shared, never copied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from rilke.replication.controller.records import NO_LEADER
from rilke.replication.controller.state import (
    BrokerInfo,
    BrokerState,
    MetadataState,
    PartitionInfo,
    TopicMeta,
)

NO_CONTROLLER = -1


@dataclass(frozen=True, slots=True)
class MetadataView:
    """Brokers by id, topics by name, and who leads the controller (NO_CONTROLLER: no one
    known). ``applied_offset`` is the metadata log offset the view reflects."""

    cluster_id: str
    controller_id: int
    brokers: Mapping[int, BrokerInfo]
    topics: Mapping[str, TopicMeta]
    applied_offset: int = 0

    def topic(self, name: str) -> TopicMeta | None:
        return self.topics.get(name)

    def partition(self, name: str, partition: int) -> PartitionInfo | None:
        topic = self.topics.get(name)
        if topic is None or not 0 <= partition < len(topic.partitions):
            return None
        return topic.partitions[partition]

    def leader_of(self, name: str, partition: int) -> BrokerInfo | None:
        """The broker leading the partition, None if it has none (or is unknown)."""
        part = self.partition(name, partition)
        if part is None or part.leader == NO_LEADER:
            return None
        return self.brokers.get(part.leader)

    def serving_brokers(self) -> list[BrokerInfo]:
        """The brokers clients are told of (all but the fenced ones), by id."""
        return sorted(
            (b for b in self.brokers.values() if b.state is not BrokerState.FENCED),
            key=lambda b: b.broker_id,
        )


def view_of(state: MetadataState, controller_id: int = NO_CONTROLLER) -> MetadataView:
    """A view of ``state`` as it is now (later changes to the state do not show in it)."""
    return MetadataView(
        cluster_id=state.cluster_id or "",
        controller_id=controller_id,
        brokers=dict(state.brokers),
        topics=dict(state.topics),
        applied_offset=state.applied_offset,
    )
