"""``__consumer_offsets`` partitions for the group coordinators, over the broker's Partition
interface: keyed records in, keyed records out (see rilke.server.group_service.OffsetsLog).

Appends are one uncompressed batch with acks=all (on a single node: written and fsynced,
since the topic is created with flush.messages=1), so a commit is durable before it is
acknowledged. Reads go from the log start to the high watermark, skipping control batches.

In a cluster (:class:`ClusterGroupView`) ``__consumer_offsets`` is an ordinary replicated
topic the controller creates (replication factor min(3, live brokers)) on the first group
request; its partitions are :class:`LedPartitionOffsetsLog`: acks=all there means committed
on a quorum, and the coordinator follows the partition's Raft leadership
(rilke.server.group_service.LedOffsetsLog).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from rilke.records import BatchBuilder, iter_batches

log = logging.getLogger(__name__)

_READ_CHUNK_BYTES = 1 << 20
ACKS_ALL = -1
UNBOUNDED_OFFSET = (1 << 63) - 1  # a commit to a partition another node leads: not bounded here
MAX_OFFSETS_REPLICATION_FACTOR = 3  # offsets.topic.replication.factor (Kafka's default)


class PartitionOffsetsLog:
    """An OffsetsLog over one broker Partition (append/read/offsets)."""

    def __init__(self, partition: Any) -> None:
        self._partition = partition
        self.source = partition  # the broker's Partition object (replaced on a reopen)
        self.partition: int = partition.partition

    def append(
        self, records: list[tuple[bytes, bytes | None]], timestamp_ms: int
    ) -> asyncio.Future[Any]:
        builder = BatchBuilder()
        for key, value in records:
            builder.append(key, value, None, timestamp_ms)
        future: asyncio.Future[Any] = self._partition.append(builder.build(), ACKS_ALL)
        return future

    def read_all(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        offsets = self._partition.offsets()
        position = offsets.log_start_offset
        end = offsets.high_watermark
        while position < end:
            data = self._partition.read(position, _READ_CHUNK_BYTES)
            if not data.records:
                return
            for batch in iter_batches(data.records):
                header = batch.header
                next_position = header.base_offset + header.last_offset_delta + 1
                if not header.is_control:
                    for rec in batch.records():
                        if rec.offset >= position:
                            yield rec.offset, rec.key, rec.value
                position = max(position, next_position)


class BrokerGroupView:
    """The group manager's view of a single-node broker (rilke.server.broker.Broker):
    topic partition counts, high watermarks for commit validation, and the
    ``__consumer_offsets`` partitions (created, compacted, on first use)."""

    def __init__(self, broker: Any) -> None:
        self.broker = broker

    def topic_partitions(self) -> dict[str, int]:
        return {t.name: t.num_partitions for t in self.broker.topics if not t.internal}

    def high_watermark(self, tp: Any) -> int | None:
        from rilke.errors import InvalidTopicError, UnknownTopicOrPartitionError

        if tp.topic.startswith("__") or tp.partition < 0:
            return None
        try:
            return int(self.broker.partition(tp.topic, tp.partition).offsets().high_watermark)
        except (UnknownTopicOrPartitionError, InvalidTopicError):
            return None

    def offsets_partition_count(self) -> int | None:
        from rilke.server.coordinator import OFFSETS_TOPIC

        info = self.broker.topics.get(OFFSETS_TOPIC)
        return None if info is None else int(info.num_partitions)

    def offsets_log(self, partition_count: int, partition: int) -> PartitionOffsetsLog:
        from rilke.server.coordinator import OFFSETS_TOPIC
        from rilke.server.group_service import OFFSETS_TOPIC_CONFIGS

        if OFFSETS_TOPIC not in self.broker.topics:
            self.broker.create_topic(OFFSETS_TOPIC, partition_count, 1, OFFSETS_TOPIC_CONFIGS)
        return PartitionOffsetsLog(self.broker.partition(OFFSETS_TOPIC, partition))


class LedPartitionOffsetsLog(PartitionOffsetsLog):
    """An offsets partition whose leader may move (a replicated partition in a cluster):
    rilke.server.group_service.LedOffsetsLog over the Partition's leadership and offsets."""

    def __init__(self, partition: Any, node_id: int | None = None) -> None:
        super().__init__(partition)
        self._node_id = node_id

    def leader(self) -> tuple[int | None, int]:
        """The partition's leadership; with ``node_id``, a partition that names this node but
        whose Raft role is no longer leader (the callback not run yet) has no leader."""
        leadership = self._partition.leadership
        leader = leadership.leader_id
        if (
            leader is not None
            and leader == self._node_id
            and getattr(self._partition, "is_leader", True) is False
        ):
            leader = None
        return leader, int(leadership.leader_epoch)

    def caught_up(self) -> bool:
        offsets = self._partition.offsets()
        return bool(0 <= offsets.log_end_offset <= offsets.high_watermark)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        stop_offsets = self._partition.subscribe(callback)
        stop_leadership = self._partition.subscribe_leadership(lambda _leadership: callback())

        def stop() -> None:
            stop_offsets()
            stop_leadership()

        return stop


CreateTopic = Callable[[str, int, int, dict[str, str], bool], Awaitable[None]]
"""ClusterAdmin.create_topic: (name, partitions, replication factor, configs, validate_only)."""


class ClusterGroupView(BrokerGroupView):
    """The group manager's view on a node of a cluster: ``__consumer_offsets`` exists once
    the applied metadata has it and this node's broker holds it (the topic mirror made it);
    until then the first group request asks the controller to create it (one request in
    flight per node; a node that loses the race finds it exists) and is answered
    CoordinatorNotAvailable, which clients retry."""

    def __init__(
        self,
        broker: Any,
        view: Callable[[], Any],
        create_topic: CreateTopic,
    ) -> None:
        super().__init__(broker)
        self._view = view
        self._create_topic = create_topic
        self._creating: asyncio.Task[None] | None = None

    def high_watermark(self, tp: Any) -> int | None:
        """The partition's high watermark where this node leads it; elsewhere no bound
        (another node has it, and a follower's may lag the leader's): None only for a
        partition the metadata does not have."""
        if tp.topic.startswith("__") or self._view().partition(tp.topic, tp.partition) is None:
            return None
        partition = self.broker.partition(tp.topic, tp.partition)
        if partition.leadership.leader_id == self.broker.config.node_id:
            return int(partition.offsets().high_watermark)
        return UNBOUNDED_OFFSET

    def offsets_partition_count(self) -> int | None:
        from rilke.server.coordinator import OFFSETS_TOPIC

        meta = self._view().topic(OFFSETS_TOPIC)
        info = self.broker.topics.get(OFFSETS_TOPIC)
        if meta is None or info is None or info.topic_id != meta.topic_id:
            return None  # not created yet, or this node has not mirrored it yet
        return int(info.num_partitions)

    def offsets_log(self, partition_count: int, partition: int) -> LedPartitionOffsetsLog:
        from rilke.errors import CoordinatorNotAvailableError
        from rilke.server.coordinator import OFFSETS_TOPIC

        if self.offsets_partition_count() is None:
            factor = self.start_creating(partition_count)
            raise CoordinatorNotAvailableError(
                f"{OFFSETS_TOPIC} is being created ({partition_count} partitions, replication "
                f"factor {factor}); retry"
            )
        return LedPartitionOffsetsLog(
            self.broker.partition(OFFSETS_TOPIC, partition), self.broker.config.node_id
        )

    def start_creating(self, partition_count: int) -> int:
        """Ask the controller to create ``__consumer_offsets`` unless a request is in
        flight; returns the replication factor asked: min(3, live brokers)."""
        from rilke.replication.controller import BrokerState
        from rilke.server.coordinator import OFFSETS_TOPIC
        from rilke.server.group_service import OFFSETS_TOPIC_CONFIGS

        alive = sum(1 for b in self._view().brokers.values() if b.state is BrokerState.ALIVE)
        factor = max(1, min(MAX_OFFSETS_REPLICATION_FACTOR, alive))
        if self._creating is not None and not self._creating.done():
            return factor

        async def create() -> None:
            from rilke.errors import RilkeError, TopicAlreadyExistsError

            try:
                await self._create_topic(
                    OFFSETS_TOPIC, partition_count, factor, dict(OFFSETS_TOPIC_CONFIGS), False
                )
                log.info(
                    "created %s: %d partitions, replication factor %d",
                    OFFSETS_TOPIC,
                    partition_count,
                    factor,
                )
            except TopicAlreadyExistsError:
                pass  # another node created it first
            except RilkeError as exc:
                log.warning(
                    "creating %s failed (retried on the next request): %s", OFFSETS_TOPIC, exc
                )

        self._creating = asyncio.ensure_future(create())
        return factor

    async def stop(self) -> None:
        """Cancel a creation request still in flight."""
        import contextlib

        if self._creating is not None:
            self._creating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._creating
            self._creating = None
