"""``__consumer_offsets`` partitions for the group coordinators, over the broker's Partition
interface: keyed records in, keyed records out (see rilke.server.group_service.OffsetsLog).

Appends are one uncompressed batch with acks=all (on a single node: written and fsynced,
since the topic is created with flush.messages=1), so a commit is durable before it is
acknowledged. Reads go from the log start to the high watermark, skipping control batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from rilke.records import BatchBuilder, iter_batches

_READ_CHUNK_BYTES = 1 << 20
ACKS_ALL = -1


class PartitionOffsetsLog:
    """An OffsetsLog over one broker Partition (append/read/offsets)."""

    def __init__(self, partition: Any) -> None:
        self._partition = partition
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
