"""Which partitions a node of a cluster serves.

The broker builds every partition of every topic in the applied metadata through its
partition factory (so topic listing, configs and Metadata work on every node alike).
:class:`ClusterPartitionFactory` wraps each local partition in a :class:`ClusterPartition`,
which asks the metadata view at every produce and fetch whether this node leads it: if so
the local partition serves; if not, the call is answered with NotLeaderError naming the
leader (clients refresh their metadata and go there). Deciding per call, not once when the
partition is opened, keeps a node right when the metadata it replays after a restart (or a
leader change) arrives after the partition was opened.

Until the Raft-replicated partition (rilke/replication/partition.py) is wired in, a
partition's only copy is on its first replica: :func:`served_view` is the metadata as
served (Metadata, DescribeTopics, `rilke cluster`), where the leader is the first replica
while it is alive (no leader while it is fenced: the metadata's own leader moves on fencing,
to a replica with no copy) and the in-sync replicas are that one replica (the others hold
nothing, and `rilke cluster health` says so). ``replicated`` takes the replicated factory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rilke.errors import NotLeaderError
from rilke.partition.interface import (
    AppendResult,
    FetchedData,
    Leadership,
    Partition,
    PartitionFactory,
    PartitionOffsets,
    PartitionSpec,
)
from rilke.replication.controller import (
    NO_LEADER,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.storage.config import LogConfig

UNKNOWN_OFFSET = -1


def served_view(view: MetadataView) -> MetadataView:
    """``view`` with every partition as the unreplicated interim serves it (see the module
    docstring). O(partitions): call once per applied change (the controller caches it)."""
    alive = {b.broker_id for b in view.brokers.values() if b.state is BrokerState.ALIVE}
    topics: dict[str, TopicMeta] = {}
    for name, meta in view.topics.items():
        parts = []
        for part in meta.partitions:
            first = part.replicas[0]
            leader = first if first in alive else NO_LEADER
            parts.append(PartitionInfo(part.replicas, leader, part.leader_epoch, (first,)))
        topics[name] = TopicMeta(meta.name, meta.topic_id, meta.configs, tuple(parts))
    return MetadataView(
        view.cluster_id, view.controller_id, view.brokers, topics, view.applied_offset
    )


class ClusterPartition:
    """A local partition served only while the metadata says this node leads it."""

    def __init__(self, local: Partition, node_id: int, view: Callable[[], MetadataView]) -> None:
        self.topic = local.topic
        self.partition = local.partition
        self._local = local
        self._node_id = node_id
        self._view = view

    def _serves(self) -> bool:
        part = self._view().partition(self.topic, self.partition)
        # Not in the metadata: the node's own internal topics (its group offsets).
        return part is None or part.leader == self._node_id

    def _refuse(self) -> NotLeaderError:
        leader = self.leadership.leader_id
        where = f"node {leader} leads it" if leader is not None else "it has no leader now"
        return NotLeaderError(
            f"node {self._node_id} does not lead {self.topic}-{self.partition}: {where}"
        )

    @property
    def leadership(self) -> Leadership:
        part = self._view().partition(self.topic, self.partition)
        if part is None:
            return self._local.leadership
        leader = None if part.leader == NO_LEADER else part.leader
        return Leadership(leader, part.leader_epoch, part.replicas, part.isr)

    @property
    def leader_epoch(self) -> int:
        return self.leadership.leader_epoch

    def subscribe_leadership(self, callback: Callable[[Leadership], None]) -> Callable[[], None]:
        return self._local.subscribe_leadership(callback)

    def append(self, records: bytes, acks: int) -> asyncio.Future[AppendResult]:
        if not self._serves():
            raise self._refuse()
        return self._local.append(records, acks)

    def read(self, offset: int, max_bytes: int) -> FetchedData:
        if not self._serves():
            raise self._refuse()
        return self._local.read(offset, max_bytes)

    def offsets(self) -> PartitionOffsets:
        """The local log's; -1 each where another node leads (it has them)."""
        if not self._serves():
            return PartitionOffsets(UNKNOWN_OFFSET, UNKNOWN_OFFSET, UNKNOWN_OFFSET)
        return self._local.offsets()

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        if not self._serves():
            raise self._refuse()
        return self._local.offset_for_timestamp(timestamp_ms)

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._local.subscribe(callback)

    def size_bytes(self) -> int:
        return self._local.size_bytes()

    def update_config(self, config: LogConfig) -> None:
        self._local.update_config(config)

    async def maintain(self, now_ms: int) -> None:
        await self._local.maintain(now_ms)

    def close(self) -> None:
        self._local.close()

    def forget_state(self) -> None:
        self._local.forget_state()


class ClusterPartitionFactory:
    """The broker's partition factory on a node of a cluster (see the module docstring)."""

    def __init__(
        self,
        node_id: int,
        view: Callable[[], MetadataView],
        local: PartitionFactory,
        replicated: PartitionFactory | None = None,
    ) -> None:
        self._node_id = node_id
        self._view = view
        self._local = local
        self._replicated = replicated

    def __call__(self, spec: PartitionSpec) -> Partition:
        part = self._view().partition(spec.topic, spec.partition)
        if self._replicated is not None and part is not None and self._node_id in part.replicas:
            return self._replicated(spec)
        return ClusterPartition(self._local(spec), self._node_id, self._view)
