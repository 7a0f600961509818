"""The one narrow interface through which the gRPC layer reaches a partition.

:class:`Partition` is what the services call: append with acks, read up to the high watermark,
offsets, lookup by timestamp, and a subscription that fires when new data becomes readable (for
long-poll fetch). :class:`LocalPartition` implements it over one storage
:class:`~rilke.storage.log.PartitionLog` on a single node; the Raft-replicated partition of a
later issue implements the same protocol.

Threading: everything runs on the broker's asyncio event loop thread, except the fsyncs,
checkpoint and snapshot writes and compaction's reading and rewriting, which run on worker
threads (``run_in_executor``) over what storage hands out for that (duplicated descriptors,
see rilke.storage.log), so a slow disk or a long compaction does not stall produce and fetch.
``append`` writes synchronously (so appends to one partition happen in call order) and returns
a future that resolves when the write is acknowledged per ``acks``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from rilke.errors import (
    CorruptLogDataError,
    InvalidRecordError,
    InvalidRequestError,
    LogClosedError,
    OffsetOutOfRangeError,
    UnsupportedCompressionError,
)
from rilke.records.header import CheckedBatches, check_batches, read_header
from rilke.server.files import write_atomically
from rilke.server.producer_state import ProducerStateTable
from rilke.storage.cleaner import finish_compaction, plan_compaction
from rilke.storage.config import LogConfig
from rilke.storage.files import storage_error, unlink_if_exists
from rilke.storage.log import FlushJob, PartitionLog

log = logging.getLogger(__name__)

ACKS_NONE = 0
ACKS_LEADER = 1
ACKS_ALL = -1
VALID_ACKS = (ACKS_NONE, ACKS_LEADER, ACKS_ALL)
_MAX_COMPRESSION = 4  # Kafka's codecs: none, gzip, snappy, lz4, zstd
# How far back from the log end producer state is rebuilt when no snapshot covers the tail.
PRODUCER_STATE_TAIL_OFFSETS = 200_000
_SCAN_CHUNK_BYTES = 1 << 20
# How long a flush waits for more appends to share its fsync. Measured (16 KB requests,
# flush.messages=1, acks=-1, 16 in flight): 1 ms raised throughput from ~0.7-0.9k to ~2.9-4.7k
# requests/s over flushing on the next loop turn.
GROUP_COMMIT_WINDOW_S = 0.001
# Pause between two compacted segments' swaps (maintenance), so requests are not starved.
COMPACTION_SWAP_PAUSE_S = 0.01
# The producer state snapshot's name in ``state_dir`` (the broker uses the partition's own
# directory): a fixed name, so no file name grows with the topic's (issue 8).
PRODUCER_STATE_FILE = "producer-state.json"
# Flush jobs of a node in flight at once (queued for a worker thread or running). Each holds
# duplicated descriptors of the files it syncs, outside the storage's descriptor cache: this
# bounds them, whatever the number of partitions flushing. More do not help: the executor
# runs a handful at a time, and partitions that wait share their next fsync with the appends
# that arrive meanwhile.
MAX_FLUSHES_IN_FLIGHT = 64


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


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    log_start_offset: int
    high_watermark: int
    log_end_offset: int


class Partition(Protocol):
    """What the gRPC layer may do with a partition. Called on the event loop thread only."""

    topic: str
    partition: int

    @property
    def leader_epoch(self) -> int: ...

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

    def update_config(self, config: LogConfig) -> None: ...


def validate_batches(records: bytes, max_message_bytes: int) -> CheckedBatches:
    """Check every batch's header and CRC without decoding records, and the rules a produced
    batch keeps; return them checked (for the log, which then skips only the CRC pass).

    Raises CorruptRecordError (CRC, magic, length), RecordTooLargeError, InvalidRecordError,
    UnsupportedCompressionError or InvalidRequestError (no batches at all).
    """
    if not records:
        raise InvalidRequestError("the produce request carries no record batches")
    checked = check_batches(records, max_size=max_message_bytes)
    for header in checked.headers:
        if header.compression > _MAX_COMPRESSION:
            raise UnsupportedCompressionError(f"unknown compression codec {header.compression}")
        if header.is_transactional or header.is_control:
            raise InvalidRecordError("transactional and control batches are not accepted")
        if header.records_count != header.last_offset_delta + 1:
            # Compacted batches read back from a log may hold fewer records than offsets; a
            # produced one has exactly one offset per record (an empty batch fails here too).
            raise InvalidRecordError(
                f"batch header says {header.records_count} records in "
                f"{header.last_offset_delta + 1} offsets: a produced batch has one offset per "
                "record"
            )
    return checked


async def _in_thread(function: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run ``function`` on a worker thread. If the caller is cancelled, the thread's work is
    still awaited before the cancellation goes on (so shutdown never overlaps it)."""
    done = asyncio.get_running_loop().run_in_executor(None, partial(function, *args, **kwargs))
    try:
        await asyncio.shield(done)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await done
        raise


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        unlink_if_exists(path)


class FlushSlots:
    """At most ``limit`` flush jobs in flight across the partitions that share it; the
    others wait their turn in arrival order. On the event loop only."""

    def __init__(self, limit: int = MAX_FLUSHES_IN_FLIGHT) -> None:
        assert limit >= 1
        self.limit = limit
        self.in_flight = 0
        self._waiting: deque[LocalPartition] = deque()
        self._pumping = False

    def try_take(self) -> bool:
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return True
        return False

    def wait(self, part: LocalPartition) -> None:
        self._waiting.append(part)

    def release(self) -> None:
        """A job finished (or was never taken): start the next waiting partitions' flushes."""
        self.in_flight -= 1
        if self._pumping:  # a flush started below released its slot again at once
            return
        self._pumping = True
        try:
            while self._waiting and self.in_flight < self.limit:
                self.in_flight += 1
                self._waiting.popleft()._start_queued_flush()
        finally:
            self._pumping = False


class LocalPartition:
    """A partition on this node only: the high watermark is the log end offset.

    When the topic's ``flush.messages`` is 1, acks=1 and acks=-1 are acknowledged once flushed;
    fsyncs are shared by every append that arrives within GROUP_COMMIT_WINDOW_S of the first
    unflushed one, or while an fsync is in flight (group commit). The fsync itself runs on a
    worker thread (``PartitionLog.begin_flush``/``FlushJob.run``/``end_flush``): the loop
    keeps serving produce and fetch meanwhile; at most one is in flight per partition. Other
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
    ) -> None:
        self.topic = topic
        self.partition = partition
        self._log = log_
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))
        self._state_path = state_dir / PRODUCER_STATE_FILE if state_dir else None
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self._producers = ProducerStateTable()
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._next_subscriber = 0
        self._flush_waiters: deque[tuple[int, asyncio.Future[AppendResult], AppendResult]] = deque()
        self._flush_scheduled = False
        self._flush_job: FlushJob | None = None  # at most one in flight
        self._flush_slots = flush_slots  # shared by the node's partitions (None: no bound)
        self._slot_taken = False
        # Resolved (with its error or None) once that job is finished and counted.
        self._flush_finished: asyncio.Future[BaseException | None] | None = None
        self._flush_again = False  # appends arrived while it ran
        self._last_compaction_ms: int | None = None
        self._unflushed_messages = 0
        self._refusing_writes = False  # the last append failed on the disk (logged once)
        self._closed = False
        self._snapshot_offset = -1  # the log end offset of the last snapshot written
        self._config = config
        self.update_config(config)
        self._rebuild_producer_state()

    @property
    def leader_epoch(self) -> int:
        return 0

    @property
    def log(self) -> PartitionLog:
        return self._log

    def update_config(self, config: LogConfig) -> None:
        """Apply a topic's new config. flush.messages is handled here (group commit), so the
        storage log is given a config without it."""
        self._config = config
        self._flush_messages = config.flush_messages
        self._log.update_config(replace(config, flush_messages=None))

    # --- writes ------------------------------------------------------------------------------

    def append(self, records: bytes, acks: int) -> asyncio.Future[AppendResult]:
        if self._closed:
            raise LogClosedError(f"partition {self.topic}-{self.partition} is closed")
        if acks not in VALID_ACKS:
            raise InvalidRequestError(f"acks must be 0, 1 or -1, got {acks}")
        checked = validate_batches(records, self._config.max_message_bytes)
        headers = checked.headers
        loop = asyncio.get_running_loop()
        future: asyncio.Future[AppendResult] = loop.create_future()
        duplicate = self._producers.check(headers)
        if duplicate is not None:
            result = AppendResult(duplicate, -1, -1, self._log.log_start_offset, duplicate=True)
            if (
                self._flush_messages == 1
                and acks != ACKS_NONE
                and self._log.flushed_offset <= duplicate
            ):
                # The original may still be waiting for its fsync: so does its retry.
                self._flush_waiters.append((self._log.log_end_offset, future, result))
                self._schedule_flush(loop)
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
        offset = info.first_offset
        for header in headers:
            self._producers.record(header, offset)
            offset += header.last_offset_delta + 1
        result = AppendResult(
            info.first_offset,
            info.last_offset,
            info.log_append_time_ms,
            self._log.log_start_offset,
        )
        self._unflushed_messages += info.last_offset - info.first_offset + 1
        flush_each = self._flush_messages == 1
        if self._flush_messages is not None and self._unflushed_messages >= self._flush_messages:
            self._schedule_flush(loop)
        if flush_each and acks != ACKS_NONE and self._log.flushed_offset <= info.last_offset:
            self._flush_waiters.append((info.last_offset + 1, future, result))
        else:
            future.set_result(result)
        self._notify()
        return future

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Appends that arrive within the window share the one fsync (group commit).
            loop.call_later(GROUP_COMMIT_WINDOW_S, self._group_flush)

    def _group_flush(self) -> None:
        self._flush_scheduled = False
        if self._closed:
            return
        if self._flush_finished is not None:
            # One fsync at a time (in flight, or waiting for a slot): appends that arrive while it runs share the next one,
            # started as soon as it finishes (group commit).
            self._flush_again = True
            return
        self._start_flush(None)

    def _start_flush(self, up_to_offset: int | None) -> asyncio.Future[BaseException | None] | None:
        """Take a flush job from the log and run its fsyncs on a worker thread, so the loop
        keeps serving requests meanwhile. Returns a future resolved (with the error, or None)
        once the job is finished and counted, or None when there is nothing to flush (or
        taking the job failed: the waiters are failed then). Only when none is in flight."""
        assert self._flush_job is None
        loop = asyncio.get_running_loop()
        slots = self._flush_slots
        if slots is not None and not self._slot_taken:
            if not slots.try_take():
                # Wait for a slot; the flush then covers everything appended until it starts.
                if self._flush_finished is None:
                    self._flush_finished = loop.create_future()
                    slots.wait(self)
                return self._flush_finished
            self._slot_taken = True
        try:
            job = self._log.begin_flush(up_to_offset)
        except Exception as e:
            self._give_slot_back()
            self._flush_failed(e)
            self._resolve_waiting_flush(e)
            return None
        self._unflushed_messages = 0
        if job is None:
            self._give_slot_back()
            self._release_flushed()
            self._resolve_waiting_flush(None)
            return None
        self._flush_job = job
        finished = self._flush_finished or loop.create_future()  # a queued flush keeps its own
        self._flush_finished = finished
        loop.run_in_executor(None, job.run).add_done_callback(self._finish_flush)
        return finished

    def _finish_flush(self, done: asyncio.Future[None]) -> None:
        """On the loop, when a job's fsyncs have finished (or failed)."""
        job, finished = self._flush_job, self._flush_finished
        assert job is not None and finished is not None
        # Cleared before `finished` resolves: a waiter that wakes finds no stale job.
        self._flush_job = None
        self._flush_finished = None
        self._give_slot_back()
        error = LogClosedError("the flush was cancelled") if done.cancelled() else done.exception()
        if error is not None:
            self._log.abort_flush(job)
            if not self._closed:
                self._flush_failed(error)
            finished.set_result(error)
            return
        if self._closed:
            job.close()
            finished.set_result(None)
            return
        self._log.end_flush(job)
        self._release_flushed()
        finished.set_result(None)
        if self._flush_again or self._flush_waiters:
            self._flush_again = False
            self._start_flush(None)

    def _start_queued_flush(self) -> None:
        """FlushSlots gave this partition a slot (taken for it already)."""
        self._slot_taken = True
        if self._closed:
            self._give_slot_back()
            self._resolve_waiting_flush(None)
            return
        self._start_flush(None)

    def _give_slot_back(self) -> None:
        if self._slot_taken:
            self._slot_taken = False
            assert self._flush_slots is not None
            self._flush_slots.release()

    def _resolve_waiting_flush(self, error: BaseException | None) -> None:
        """Resolve the future of a flush that waited for a slot and then had nothing to do
        (or failed to start)."""
        finished, self._flush_finished = self._flush_finished, None
        if finished is not None and not finished.done():
            finished.set_result(error)

    def _flush_failed(self, error: BaseException) -> None:
        log.error("flush of %s-%d failed: %s", self.topic, self.partition, error)
        if isinstance(error, OSError):
            error = storage_error(error, self._log.directory, "flush")
        while self._flush_waiters:
            _, future, _ = self._flush_waiters.popleft()
            if not future.done():
                future.set_exception(error)

    def _release_flushed(self) -> None:
        flushed = self._log.flushed_offset
        while self._flush_waiters and self._flush_waiters[0][0] <= flushed:
            _, future, result = self._flush_waiters.popleft()
            if not future.done():
                future.set_result(result)

    async def flush_async(self, up_to_offset: int | None = None) -> None:
        """Flush up to ``up_to_offset`` (default: everything) with the fsyncs on a worker
        thread, after the one in flight if any; for maintenance. On return the flush is
        counted (``flushed_offset`` raised). Raises what the flush raised (OSError),
        LogClosedError when the partition closes meanwhile."""
        while self._flush_finished is not None:
            # (Never done while set: _finish_flush clears it first, so this always waits.)
            await asyncio.shield(self._flush_finished)  # its error went to its own waiters
        if self._closed:
            raise LogClosedError(f"partition {self.topic}-{self.partition} is closed")
        finished = self._start_flush(up_to_offset)
        if finished is not None:
            error = await asyncio.shield(finished)
            if error is not None:
                raise error

    def flush(self) -> None:
        """Flush now, on this thread, and release every waiter (shutdown). A job in flight
        meanwhile is harmless: the log syncs the same files again."""
        if not self._closed:
            self._log.flush()
            self._unflushed_messages = 0
            self._release_flushed()

    # --- maintenance -------------------------------------------------------------------------

    async def maintain(self, now_ms: int) -> None:
        """Periodic work for this partition, keeping the loop free for requests: roll by age;
        flush (rolled segments, or everything when ``flush.ms`` is due) and write the
        checkpoint and compact (the reading and rewriting) on worker threads; retention, and
        each cleaned segment's swap, on the loop between them. Runs of one partition must not
        overlap (the broker runs them one after another). Raises what storage raises;
        LogClosedError when the partition closes meanwhile.
        """
        plog = self._log
        if self._closed or plog.closed:
            return
        plog.maybe_roll(now_ms)
        await self.flush_async(None if plog.flush_due(now_ms) else plog.rolled_offset)
        if self._closed:
            return
        plog.apply_retention(now_ms, defer_unlink=True)
        deleted = plog.take_deleted_files()
        if deleted:
            # Renamed on the loop; the unlinks (slow for large cached files) on a thread.
            await _in_thread(_unlink_all, deleted)
        config = plog.config
        if config.compact and (
            self._last_compaction_ms is None
            or now_ms - self._last_compaction_ms
            >= min(max(config.delete_retention_ms // 2, 1000), 60_000)
        ):
            self._last_compaction_ms = now_ms
            await self._compact(now_ms)
        if self._closed or plog.closed:
            return
        taken = plog.begin_checkpoint()
        if taken is not None:
            await _in_thread(taken[0].write, plog.directory, unique_tmp=True)
            plog.end_checkpoint(taken)

    async def _compact(self, now_ms: int) -> None:
        plog = self._log
        # Cleaned segments must lie below the recovery point on disk (recovery trusts them):
        # flush what was rolled, write the checkpoint, and compact only what it covers.
        await self.flush_async(plog.rolled_offset)
        taken = plog.begin_checkpoint()
        recovery_point = plog.flushed_offset
        if taken is not None:
            recovery_point = taken[0].recovery_point
            await _in_thread(taken[0].write, plog.directory, unique_tmp=True)
            plog.end_checkpoint(taken)
        if self._closed or plog.closed:
            return
        plan = plan_compaction(plog, now_ms, up_to_offset=recovery_point)
        if plan is None:
            return
        try:
            await _in_thread(plan.run)
        except BaseException:
            plan.abort()
            raise
        freed = 0
        try:
            while plan.cleaned:
                if self._closed or plog.closed:
                    break
                freed += finish_compaction(plog, plan, max_segments=1)
                # A swap reopens and checks the cleaned segment on the loop (~20 ms for 1 MiB
                # here); a short pause after each lets the requests that arrived meanwhile
                # through (one loop turn was not enough: a request needs several).
                await asyncio.sleep(COMPACTION_SWAP_PAUSE_S)
        finally:
            plan.abort()  # removes cleaned files not swapped in
        if freed:
            log.info("compacted %s-%d: %d bytes freed", self.topic, self.partition, freed)

    # --- reads -------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> FetchedData:
        if self._closed:
            raise LogClosedError(f"partition {self.topic}-{self.partition} is closed")
        if offset < 0:
            raise OffsetOutOfRangeError(f"fetch offset {offset} is negative")
        high_watermark = self._log.log_end_offset
        result = self._log.read(offset, max_bytes, max_offset=high_watermark)
        return FetchedData(result.records, high_watermark, high_watermark, result.log_start_offset)

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

    # --- producer state ----------------------------------------------------------------------

    def _rebuild_producer_state(self) -> None:
        """Load the producer state snapshot, then replay batch headers after it.

        Without a usable snapshot (none, damaged, or ahead of the log after an unclean stop)
        the last PRODUCER_STATE_TAIL_OFFSETS offsets are scanned.
        """
        start = max(
            self._log.log_start_offset, self._log.log_end_offset - PRODUCER_STATE_TAIL_OFFSETS
        )
        snapshot_offset = self._load_snapshot()
        if snapshot_offset is not None:
            start = max(self._log.log_start_offset, snapshot_offset)
        else:
            self._producers.clear()
        offset = start
        end = self._log.log_end_offset
        while offset < end:
            try:
                chunk = self._log.read(offset, _SCAN_CHUNK_BYTES).records
            except CorruptLogDataError as exc:
                # Its batches cannot be read (reported by the log); sequences of producers
                # that wrote there are checked from what follows.
                offset = exc.next_offset
                continue
            if not chunk:
                break
            pos = 0
            while pos < len(chunk):
                header = read_header(chunk, pos)
                if header.last_offset >= offset:
                    self._producers.record(header, header.base_offset)
                pos += header.size
                offset = header.next_offset

    def _load_snapshot(self) -> int | None:
        if self._state_path is None:
            return None
        try:
            document = json.loads(self._state_path.read_text(encoding="utf-8"))
            offset = int(document["offset"])
            if not self._log.log_start_offset <= offset <= self._log.log_end_offset:
                return None
            self._producers.load(document["producers"])
            self._snapshot_offset = offset
            return offset
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("producer state snapshot %s is damaged; rebuilding", self._state_path)
            self._producers.clear()
            return None

    def write_snapshot(self) -> None:
        """Persist the producer state up to the flushed offset (shutdown). Blocks on disk.

        Only flushed data is covered, so a snapshot is never ahead of what survives a crash.
        """
        taken = self._take_snapshot()
        if taken is not None:
            write_atomically(self._state_path_or_fail(), taken[1])
            self._snapshot_offset = taken[0]

    async def write_snapshot_async(self) -> None:
        """``write_snapshot`` with the file written on a worker thread (maintenance)."""
        taken = self._take_snapshot()
        if taken is not None:
            await _in_thread(
                write_atomically, self._state_path_or_fail(), taken[1], unique_tmp=True
            )
            self._snapshot_offset = max(self._snapshot_offset, taken[0])

    def _take_snapshot(self) -> tuple[int, bytes] | None:
        """(log end offset, document) of a snapshot due now, or None."""
        if self._state_path is None or self._closed:
            return None
        end = self._log.log_end_offset
        if self._log.flushed_offset < end or end == self._snapshot_offset:
            return None
        if end == self._log.log_start_offset and not self._producers:
            return None  # nothing to rebuild from, nothing to keep (an idle, empty partition)
        document = {"offset": end, "producers": self._producers.dump()}
        return end, json.dumps(document).encode()

    def _state_path_or_fail(self) -> Path:
        assert self._state_path is not None
        return self._state_path

    def close(self) -> None:
        """Flush, snapshot producer state and fail anything still waiting. The log itself is
        closed by its LogManager."""
        if self._closed:
            return
        try:
            self.flush()
            self.write_snapshot()
        finally:
            self._closed = True
            if self._flush_job is None:
                self._resolve_waiting_flush(None)  # waiting for a slot: flushed just now
            while self._flush_waiters:
                _, future, _ = self._flush_waiters.popleft()
                if not future.done():
                    future.set_exception(LogClosedError("the partition closed"))

    def forget_state(self) -> None:
        """Remove the producer state snapshot (the topic is being deleted)."""
        if self._state_path is not None:
            self._state_path.unlink(missing_ok=True)
