"""Where a consumer group's coordinator is: the one answer FindCoordinator gives, over gRPC
and (through :meth:`CoordinatorLocator.coordinator_for`) the Kafka listener.

A group's coordinator is the leader of its ``__consumer_offsets`` partition
(rilke.server.coordinator.partition_for_group). On a single node that is this node. On a
node of a cluster it is the leader as this node knows it: its own Raft knowledge where it
holds a replica of that partition (fresher than the metadata; a non-replica's partition
reports the metadata's leader), the metadata's leader for a log that does not say; the address is the leader's advertised gRPC address in the applied metadata. A
partition with no leader now (an election running) answers CoordinatorNotAvailable, which
clients retry; so does the first request of a cluster while the controller creates the
topic.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rilke.errors import CoordinatorNotAvailableError, InvalidRequestError
from rilke.replication.controller import NO_LEADER, MetadataView
from rilke.server.coordinator import OFFSETS_TOPIC
from rilke.server.group_service import GroupManager


class Coordinator(NamedTuple):
    """A group's coordinator: its node id and advertised gRPC address, and the offsets
    partition the group maps to. The Kafka listener maps ``node_id`` to its own address."""

    node_id: int
    host: str
    port: int
    offsets_partition: int


class CoordinatorLocator:
    """:meth:`coordinator_for`; ``metadata_view`` is given on a node of a cluster."""

    def __init__(
        self,
        manager: GroupManager,
        node_id: int,
        advertised: tuple[str, int],
        metadata_view: Callable[[], MetadataView] | None = None,
    ) -> None:
        self.manager = manager
        self.node_id = node_id
        self.advertised = advertised
        self.metadata_view = metadata_view

    def coordinator_for(self, group_id: str) -> Coordinator:
        """The coordinator of ``group_id`` now. Raises InvalidRequestError for an empty group
        id, CoordinatorNotAvailableError while ``__consumer_offsets`` is being created (the
        first group request creates it, as in Kafka) or its partition has no leader or the
        leader's address is not known yet."""
        if not group_id:
            raise InvalidRequestError("the group id is empty")
        partition = self.manager.partition_of(group_id)
        if self.manager.is_led(partition):
            leader = self.manager.leader_of(partition)
        elif self.metadata_view is not None:
            found = self.metadata_view().partition(OFFSETS_TOPIC, partition)
            leader = None if found is None or found.leader == NO_LEADER else found.leader
        else:
            leader = self.node_id
        if leader is None:
            raise CoordinatorNotAvailableError(
                f"partition {partition} of {OFFSETS_TOPIC} has no leader now"
            )
        if leader == self.node_id or self.metadata_view is None:
            host, port = self.advertised
            return Coordinator(self.node_id, host, port, partition)
        broker = self.metadata_view().brokers.get(leader)
        if broker is None:
            raise CoordinatorNotAvailableError(
                f"node {leader} leads partition {partition} of {OFFSETS_TOPIC}, but its "
                "address is not in this node's metadata yet"
            )
        return Coordinator(leader, broker.host, broker.port, partition)
