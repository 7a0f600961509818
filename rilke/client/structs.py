"""The small value types of the client API: topic partitions, offsets, metadata, records.

All are immutable named tuples (cheap to create, hashable, unpack like tuples), as Kafka
clients in Python use them.
"""

from __future__ import annotations

from typing import NamedTuple


class TopicPartition(NamedTuple):
    """One partition of one topic."""

    topic: str
    partition: int


class OffsetAndMetadata(NamedTuple):
    """An offset to commit (the next record to read) with optional metadata text."""

    offset: int
    metadata: str = ""


class RecordMetadata(NamedTuple):
    """Where an acknowledged record landed.

    ``offset`` is -1 when the producer sent with acks=0 (the broker does not say).
    ``timestamp`` is the record's create time, or the broker's append time for topics with
    ``message.timestamp.type=LogAppendTime``.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int


class ConsumerRecord(NamedTuple):
    """One record read by a consumer. ``timestamp_type`` is 0 (create time) or 1 (append time).

    ``key`` and ``value`` are bytes or None; ``headers`` a tuple of (str, bytes | None) pairs.
    """

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]


class NewTopic(NamedTuple):
    """A topic to create. ``configs`` use Kafka's names (retention.ms, cleanup.policy, ...)."""

    name: str
    num_partitions: int = 1
    replication_factor: int = 1
    configs: dict[str, str] | None = None


class OffsetAndTimestamp(NamedTuple):
    """The answer of offsets_for_times: the first offset at or after a time, and its timestamp."""

    offset: int
    timestamp: int


class BrokerMetadata(NamedTuple):
    node_id: int
    host: str
    port: int
    rack: str = ""

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class PartitionMetadata(NamedTuple):
    """A partition as the cluster metadata describes it; ``leader`` is -1 when it has none."""

    topic: str
    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    error_code: int = 0


class PartitionDescription(NamedTuple):
    """A partition as DescribeTopics reports it."""

    partition: int
    leader: int
    leader_epoch: int
    replicas: tuple[int, ...]
    isr: tuple[int, ...]
    log_start_offset: int
    high_watermark: int
    log_end_offset: int
    size_bytes: int
    target_replicas: tuple[int, ...] = ()
    """A running reassignment's target (empty: none runs)."""


class TopicDescription(NamedTuple):
    name: str
    internal: bool
    replication_factor: int
    partitions: list[PartitionDescription]
    configs: dict[str, str]


class TopicListing(NamedTuple):
    name: str
    num_partitions: int
    internal: bool


class ConfigEntry(NamedTuple):
    name: str
    value: str
    is_default: bool
