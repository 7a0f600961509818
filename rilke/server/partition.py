"""LocalPartition: a partition on this node only, over one storage PartitionLog.

It implements :class:`rilke.partition.interface.Partition` (re-exported here with its result
types, for the services and listeners) from the shared pieces of :mod:`rilke.partition`:
validation of produced batches, group commit (GroupFlush), producer state fed from the
batches it applies, and the one maintenance path. The Raft-replicated partition builds on
the same pieces.

Threading: everything runs on the broker's asyncio event loop thread, except the fsyncs,
checkpoint and snapshot writes and compaction's reading and rewriting, which run on worker
threads (``run_in_executor``) over what storage hands out for that (duplicated descriptors,
see rilke.storage.log), so a slow disk or a long compaction does not stall produce and fetch.
``append`` writes synchronously (so appends to one partition happen in call order) and returns
a future that resolves when the write is acknowledged per ``acks``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rilke.errors import InvalidRequestError, LogClosedError, OffsetOutOfRangeError
from rilke.partition.group_flush import FlushSlots, GroupFlush
from rilke.partition.interface import (
    ACKS_ALL,
    ACKS_LEADER,
    ACKS_NONE,
    VALID_ACKS,
    AppendResult,
    FetchedData,
    Leadership,
    Partition,
    PartitionFactory,
    PartitionOffsets,
    PartitionSpec,
)
from rilke.partition.maintenance import Maintenance
from rilke.partition.producer_state import PRODUCER_STATE_FILE, ProducerState
from rilke.partition.validation import validate_batches
from rilke.storage.config import LogConfig
from rilke.storage.files import storage_error
from rilke.storage.log import PartitionLog

__all__ = [
    "ACKS_ALL",
    "ACKS_LEADER",
    "ACKS_NONE",
    "PRODUCER_STATE_FILE",
    "VALID_ACKS",
    "AppendResult",
    "FetchedData",
    "FlushSlots",
    "Leadership",
    "LocalPartition",
    "LocalPartitionFactory",
    "Partition",
    "PartitionFactory",
    "PartitionOffsets",
    "PartitionSpec",
    "validate_batches",
]

log = logging.getLogger(__name__)


class LocalPartition:
    """A partition on this node only: this node leads it (epoch 0, the only replica), and the
    high watermark is the log end offset.

    When the topic's ``flush.messages`` is 1, acks=1 and acks=-1 are acknowledged once flushed;
    the first append of an idle partition starts its fsync at once, and every append that
    arrives while an fsync is in flight shares the next (group commit, :class:`GroupFlush`). Other
    ``flush.messages`` values flush the same way after that many messages, ``flush.ms`` at
    maintenance.
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        log_: PartitionLog,
        config: LogConfig,
        *,
        state_dir: Path | None = None,
        clock_ms: Callable[[], int] | None = None,
        flush_slots: FlushSlots | None = None,
        node_id: int = 0,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self._log = log_
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        name = f"{topic}-{partition}"
        self._leadership = Leadership(node_id, 0, (node_id,), (node_id,))
        self._producers = ProducerState(log_, state_dir)
        self._flusher: GroupFlush[AppendResult] = GroupFlush(name, log_, flush_slots)
        self._maintenance = Maintenance(
            name, log_, self._flusher, self._producers, lambda: self._closed
        )
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_subscriber = 0
        self._refusing_writes = False  # the last append failed on the disk (logged once)
        self._closed = False
        self._config = config
        self.update_config(config)

    # --- leadership: always this node ------------------------------------------------------

    @property
    def leadership(self) -> Leadership:
        return self._leadership

    @property
    def leader_epoch(self) -> int:
        return self._leadership.leader_epoch

    def subscribe_leadership(self, callback: Callable[[Leadership], None]) -> Callable[[], None]:
        # A partition of one node never changes leader: nothing to call, ever.
        return _nothing

    @property
    def log(self) -> PartitionLog:
        return self._log

    def update_config(self, config: LogConfig) -> None:
        """Apply a topic's new config. flush.messages is handled here (group commit), so the
        storage log is given a config without it."""
        self._config = config
        self._flush_messages = config.flush_messages
        self._flusher.flush_messages = config.flush_messages
        self._log.update_config(replace(config, flush_messages=None))

    # --- writes ------------------------------------------------------------------------------

    def append(self, records: bytes, acks: int) -> asyncio.Future[AppendResult]:
        if self._closed:
            raise LogClosedError(f"partition {self.topic}-{self.partition} is closed")
        if acks not in VALID_ACKS:
            raise InvalidRequestError(f"acks must be 0, 1 or -1, got {acks}")
        checked = validate_batches(records, self._config.max_message_bytes)
        headers = checked.headers
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        duplicate = self._producers.check(headers)
        if duplicate is not None:
            result = AppendResult(duplicate, -1, -1, self._log.log_start_offset, duplicate=True)
            if (
                self._flush_messages == 1
                and acks != ACKS_NONE
                and self._log.flushed_offset <= duplicate
            ):
                # The original may still be waiting for its fsync: so does its retry.
                self._flusher.wait_for(self._log.log_end_offset, future, result)
                self._flusher.schedule()
            else:
                future.set_result(result)
            return future
        # validate_batches has checked every batch's CRC (and refused any bad one with its
        # records error): the log checks everything else again but skips the CRC.
        try:
            info = self._log.append(
                checked,
                assign_offsets=True,
                leader_epoch=self.leader_epoch,
                now_ms=self._clock_ms(),
            )
        except OSError as e:
            # The log cut the file back: nothing was written (see PartitionLog.append).
            error = storage_error(e, self._log.directory, "append to")
            if not self._refusing_writes:
                self._refusing_writes = True
                log.error("%s-%d refuses writes: %s", self.topic, self.partition, error)
            raise error from e
        if self._refusing_writes:
            self._refusing_writes = False
            log.info("%s-%d takes writes again", self.topic, self.partition)
        # Applied to the log: producer state follows what the log holds.
        self._producers.apply(headers, info.first_offset)
        result = AppendResult(
            info.first_offset,
            info.last_offset,
            info.log_append_time_ms,
            self._log.log_start_offset,
        )
        self._flusher.count_appended(info.last_offset - info.first_offset + 1)
        if (
            self._flush_messages == 1
            and acks != ACKS_NONE
            and self._log.flushed_offset <= info.last_offset
        ):
            self._flusher.wait_for(info.last_offset + 1, future, result)
        else:
            future.set_result(result)
        self._notify()
        return future

    async def flush_async(self, up_to_offset: int | None = None) -> None:
        """Flush up to ``up_to_offset`` (default: everything) on a worker thread, after the
        one in flight if any (see :meth:`GroupFlush.flush_async`)."""
        await self._flusher.flush_async(up_to_offset)

    def flush(self) -> None:
        """Flush now, on this thread, and release every waiter (shutdown)."""
        self._flusher.flush()

    # --- maintenance and lifecycle -----------------------------------------------------------

    async def maintain(self, now_ms: int) -> None:
        """One pass of :class:`rilke.partition.maintenance.Maintenance` for this partition."""
        await self._maintenance.run(now_ms)

    def close(self) -> None:
        """Flush, snapshot producer state and fail anything still waiting. The log itself is
        closed by its LogManager."""
        if self._closed:
            return
        try:
            self._flusher.flush()
            self._producers.write_snapshot()
        finally:
            self._closed = True
            self._flusher.close()

    def forget_state(self) -> None:
        """Remove the producer state snapshot (the topic is being deleted)."""
        self._producers.forget()

    # --- reads -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> FetchedData:
        if self._closed:
            raise LogClosedError(f"partition {self.topic}-{self.partition} is closed")
        if offset < 0:
            raise OffsetOutOfRangeError(f"fetch offset {offset} is negative")
        high_watermark = self._log.log_end_offset
        result = self._log.read(offset, max_bytes, max_offset=high_watermark)
        return FetchedData(
            result.records,
            high_watermark,
            high_watermark,
            result.log_start_offset,
            result.next_offset,
        )

    def offsets(self) -> PartitionOffsets:
        end = self._log.log_end_offset
        return PartitionOffsets(self._log.log_start_offset, end, end)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        found: tuple[int, int] | None = self._log.offset_for_timestamp(timestamp_ms)
        return found

    def size_bytes(self) -> int:
        size: int = self._log.size_bytes()
        return size

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        key = self._next_subscriber
        self._next_subscriber += 1
        self._subscribers[key] = callback

        def unsubscribe() -> None:
            self._subscribers.pop(key, None)

        return unsubscribe

    def _notify(self) -> None:
        if self._subscribers:
            for callback in list(self._subscribers.values()):
                callback()


def _nothing() -> None:
    pass


class LocalPartitionFactory:
    """The broker's default :data:`PartitionFactory`: a LocalPartition per log, led by
    ``node_id``, its flushes bounded by the node's ``flush_slots``."""

    def __init__(
        self, *, node_id: int, clock_ms: Callable[[], int], flush_slots: FlushSlots
    ) -> None:
        self.node_id = node_id
        self._clock_ms = clock_ms
        self._flush_slots = flush_slots

    @property
    def flush_slots(self) -> FlushSlots:
        """The node's bound on flush jobs (a cluster's replicated partitions share it)."""
        return self._flush_slots

    def __call__(self, spec: PartitionSpec) -> Partition:
        return LocalPartition(
            spec.topic,
            spec.partition,
            spec.log,
            spec.config,
            state_dir=spec.state_dir,
            clock_ms=self._clock_ms,
            flush_slots=self._flush_slots,
            node_id=self.node_id,
        )
