"""The one interface through which the broker and its listeners reach a partition.

:class:`Partition` is what the gRPC services (and the Kafka listener) call: append with acks,
read up to the high watermark, offsets, lookup by timestamp, a subscription that fires when
new data becomes readable (long-poll fetch), who leads it (leader id and epoch, replicas and
in-sync replicas, a subscription to leadership changes), and its lifecycle, which the broker
drives (maintenance, close, forgetting its state on delete). ``rilke.server.partition``'s
:class:`~rilke.server.partition.LocalPartition` implements it on a single node; the
Raft-replicated partition implements the same protocol, so the broker builds partitions
through a :data:`PartitionFactory` and never names the kind.

Everything here is called on the broker's event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

ACKS_NONE = 0
ACKS_LEADER = 1
ACKS_ALL = -1
VALID_ACKS = (ACKS_NONE, ACKS_LEADER, ACKS_ALL)


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append landed. ``log_append_time_ms`` is -1 unless the topic uses it."""

    base_offset: int
    last_offset: int
    log_append_time_ms: int
    log_start_offset: int
    duplicate: bool = False  # a retried idempotent batch, answered with its original offset


@dataclass(frozen=True, slots=True)
class FetchedData:
    records: bytes  # whole batches back to back, possibly empty
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    # Where the next read starts: after the batches in records, or past offsets the log no
    # longer holds (compacted away); -1: not known.
    next_offset: int = -1


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    log_start_offset: int
    high_watermark: int
    log_end_offset: int


@dataclass(frozen=True, slots=True)
class Leadership:
    """Who leads a partition, as this node knows it. ``leader_id`` is None while there is no
    leader (an election); ``leader_epoch`` only grows; ``in_sync_replicas`` is a subset of
    ``replicas`` and holds the leader when there is one."""

    leader_id: int | None
    leader_epoch: int
    replicas: tuple[int, ...]
    in_sync_replicas: tuple[int, ...]


class Partition(Protocol):
    """What the broker and its listeners may do with a partition. On the event loop only."""

    topic: str
    partition: int

    # --- leadership --------------------------------------------------------------------------

    @property
    def leadership(self) -> Leadership:
        """Who leads it now (see :class:`Leadership`)."""
        ...

    @property
    def leader_epoch(self) -> int:
        """``leadership.leader_epoch``: stamped into every batch this leader writes."""
        ...

    def subscribe_leadership(self, callback: Callable[[Leadership], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop) with the new value whenever the leadership changes;
        returns a function that unsubscribes."""
        ...

    # --- produce and fetch -------------------------------------------------------------------

    def append(self, records: bytes, acks: int) -> asyncio.Future[AppendResult]:
        """Validate and write whole batches; offsets are assigned here.

        Raises (nothing written) CorruptRecordError, InvalidRecordError, RecordTooLargeError,
        UnsupportedCompressionError, OutOfOrderSequenceError, InvalidProducerEpochError,
        InvalidRequestError, LogClosedError, NotLeaderError. Returns a future resolved with
        the AppendResult once the write is acknowledged per ``acks`` (0 and 1: written; -1:
        durable per the partition's policy), or failed if that cannot happen.
        """
        ...

    def read(self, offset: int, max_bytes: int) -> FetchedData:
        """Whole batches from the one holding ``offset``, up to ``max_bytes`` (at least one
        batch if any is readable), never past the high watermark. Raises
        OffsetOutOfRangeError for an offset outside [log start, log end]."""
        ...

    def offsets(self) -> PartitionOffsets: ...

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first batch with a timestamp >= ``timestamp_ms``."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop) whenever the high watermark moves; returns a
        function that unsubscribes."""
        ...

    def size_bytes(self) -> int: ...

    # --- lifecycle (the broker's) ------------------------------------------------------------

    def update_config(self, config: LogConfig) -> None:
        """Apply the topic's new config."""
        ...

    async def maintain(self, now_ms: int) -> None:
        """One pass of periodic work (rilke.partition.maintenance): roll, flush, retention,
        compaction, checkpoint, producer state snapshot. Passes must not overlap. Raises
        what storage raises; LogClosedError when the partition closes meanwhile."""
        ...

    def close(self) -> None:
        """Flush, snapshot what it keeps, and fail every acknowledgement still waiting.
        Blocks on disk. The log itself is closed by its LogManager. Idempotent."""
        ...

    def forget_state(self) -> None:
        """Remove the files it keeps beside the log (the topic is being deleted; after
        :meth:`close`)."""
        ...


@dataclass(frozen=True, slots=True)
class PartitionSpec:
    """What a factory needs to build one partition over its opened log."""

    topic: str
    partition: int
    log: PartitionLog
    config: LogConfig  # the topic's effective config
    state_dir: Path  # where it keeps its own files (the log's directory)
    # A replicated partition's replicas (node ids, the preferred leader first) and its Raft
    # group's name ("<topic_id>/<partition>"); a LocalPartition ignores both.
    replicas: tuple[int, ...] = ()
    group: str = ""
    topic_id: str = ""  # the topic's id in the broker's registry ("" if not known)
    # A replicated partition's leader epoch (Raft term) as the metadata records it: > 0 means
    # its group already had a leader, so a replica without Raft state here lost it (wiped).
    leader_epoch: int = 0


PartitionFactory = Callable[[PartitionSpec], Partition]
