"""PartitionLog: the append-only log of one partition, as segments in one directory.

Contract: the log is synchronous and NOT thread-safe; the caller serialises every call per
partition (one thread, or one lock). Calls that may block on disk are marked "Blocks on disk"
(they fsync or read/write much) or "May block on disk" (a write or read to the page cache,
which the kernel may stall).

Durability: ``append`` writes to the page cache; ``flush`` fsyncs. The flush policy of the
config (``flush_messages``, ``flush_ms``, or neither: leave durability to replication) decides
when ``append`` flushes by itself. ``flushed_offset`` is the recovery point: every offset below
it is on disk. ``flush(up_to_offset)`` does nothing when already flushed past the offset, so
appenders that each ask for their own offset share one fsync (group commit). Rolling does not
fsync: the rolled segment is fsynced by the next ``flush``, ``flush_rolled_segments``, or a
flush up to ``rolled_offset`` (the node's maintenance, rilke.partition.maintenance). Truncation fsyncs at once (a Raft follower must not see
a removed suffix come back). The recovery point and the log start offset are written to a
checkpoint file (atomically) by ``checkpoint()`` (maintenance), truncation,
``delete_records_before`` and close; after a crash, recovery scans from the checkpointed
recovery point on.

For a caller that must not block on fsync (an event loop), a flush splits in three:
``begin_flush`` (on the log's thread) takes duplicated descriptors of what to sync as a
:class:`FlushJob`, ``job.run()`` fsyncs them on any thread, and ``end_flush`` (the log's thread
again) raises ``flushed_offset``. The log stays usable meanwhile (appends, rolls, retention,
truncation, close): the duplicates keep the files open, and a job taken before a truncation is
ignored. Likewise ``begin_checkpoint``/``end_checkpoint``, and compaction in
:mod:`rilke.storage.cleaner` (``plan_compaction``, ``plan.run()``, ``finish_compaction``). Only
``FlushJob.run``, ``Checkpoint.write`` and ``CompactionPlan.run`` may run on another thread.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, NoReturn

from crc32c import crc32c

from rilke.errors import (
    BatchTooLargeError,
    CorruptBatchError,
    CorruptLogDataError,
    CorruptRecordError,
    InvalidRecordError,
    LogClosedError,
    NonContiguousOffsetError,
    OffsetOutOfRangeError,
    RecordTooLargeError,
    StorageError,
)
from rilke.records.header import (
    ATTRIBUTES_POS,
    COMPRESSION_MASK,
    CRC_POS,
    CRC_START,
    HEADER_SIZE,
    LEADER_EPOCH_POS,
    LOG_OVERHEAD,
    MAGIC,
    MAX_COMPRESSION_ID,
    MAX_TIMESTAMP_POS,
    TIMESTAMP_TYPE_MASK,
    CheckedBatches,
    check_batch,
    header_struct,
    set_base_offset,
    set_partition_leader_epoch,
)
from rilke.storage import files, integrity, retention
from rilke.storage.config import LogConfig
from rilke.storage.handles import FileCache
from rilke.storage.index import TimeIndex
from rilke.storage.integrity import CorruptRange, RangeRepairer
from rilke.storage.recovery import (
    Checkpoint,
    RecoveryReport,
    list_segment_bases,
    open_segments,
)
from rilke.storage.segment import INT32_MAX, LogSegment, SegmentCorruptError

log = logging.getLogger(__name__)

# The fields append's fast path needs (the others skipped as padding).
_FAST_HEADER = header_struct(
    "base_offset",
    "batch_length",
    "magic",
    "crc",
    "attributes",
    "last_offset_delta",
    "max_timestamp",
    "records_count",
)
# The first 16 bytes: what stamping changes.
_BASE_LENGTH_EPOCH = header_struct("base_offset", "batch_length", "partition_leader_epoch")
_new_tuple = tuple.__new__  # builds AppendInfo without its Python-level __new__
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_IOV_MAX = 1000  # pieces per pwritev; Linux allows 1024
_ALL_OFFSETS = 1 << 63  # "every offset is durable": damage is recorded, never cut
_PRIVATE_CACHE_FILES = 1024  # descriptors of a log opened without a node's cache


def _refuse(view: memoryview, position: int) -> NoReturn:
    """Raise the precise CorruptBatchError for the batch at ``position`` (via check_batch)."""
    try:
        check_batch(view, position)
    except (CorruptRecordError, InvalidRecordError, RecordTooLargeError) as exc:
        raise CorruptBatchError(f"batch at byte {position} of the append: {exc}") from exc
    raise CorruptBatchError(f"batch at byte {position} of the append does not hold")


def _stamp(
    head: bytearray | memoryview,
    base: int,
    *,
    epoch: int | None,
    append_time_ms: int | None,
    rest: memoryview | None = None,
) -> None:
    """Stamp base offset, epoch and (LogAppendTime) the timestamp into a batch's header.

    ``head`` is the whole batch, or its first 61 bytes with ``rest`` the remainder. The base
    offset and epoch lie outside the CRC; the timestamp does not, so the CRC is recomputed.
    """
    set_base_offset(head, base)
    if epoch is not None:
        set_partition_leader_epoch(head, epoch)
    if append_time_ms is not None:
        attributes = int.from_bytes(head[ATTRIBUTES_POS : ATTRIBUTES_POS + 2], "big")
        head[ATTRIBUTES_POS : ATTRIBUTES_POS + 2] = (attributes | TIMESTAMP_TYPE_MASK).to_bytes(
            2, "big"
        )
        head[MAX_TIMESTAMP_POS : MAX_TIMESTAMP_POS + 8] = append_time_ms.to_bytes(
            8, "big", signed=True
        )
        crc: int = crc32c(head[CRC_START:])
        if rest is not None:
            crc = crc32c(rest, crc)
        head[CRC_POS : CRC_POS + 4] = crc.to_bytes(4, "big")


class FlushJob:
    """The fsyncs of one flush, taken from a log by :meth:`PartitionLog.begin_flush`.

    ``run`` may be called on any thread (it is the only storage code that may): it touches
    nothing but its own duplicated descriptors, so the log may meanwhile append, roll, delete
    segments by retention, truncate or close. Hand the job back to the log's thread
    afterwards: :meth:`PartitionLog.end_flush` once ``run`` returned, or
    :meth:`PartitionLog.abort_flush` if it raised. Run each job at most once.
    """

    __slots__ = ("_dir_fd", "_fds", "_generation", "_segments", "flushed_offset", "sync_seconds")

    def __init__(
        self,
        fds: list[int],
        dir_fd: int | None,
        segments: list[tuple[LogSegment, int]],
        flushed_offset: int,
        generation: tuple[int, int | None],
    ) -> None:
        self._fds = fds
        self._dir_fd = dir_fd
        self._segments = segments  # each with its size when the job was taken
        self.flushed_offset = flushed_offset  # what the log's recovery point becomes
        self._generation = generation  # (truncations, segment creations if it syncs the dir)
        self.sync_seconds = 0.0  # how long ``run``'s syncs took (for the fsync latency metric)

    def run(self) -> None:
        """fdatasync every file (fsync the directory if a segment was created). Blocks on
        disk; raises OSError when a sync fails. The descriptors are closed by ``end_flush``
        or ``abort_flush`` (on the log's thread: the fewer system calls here, the fewer
        times this thread must take the interpreter lock back from a busy event loop)."""
        started = time.perf_counter()
        for fd in self._fds:
            files.fdatasync(fd)
        if self._dir_fd is not None:
            files.fsync(self._dir_fd)
        self.sync_seconds = time.perf_counter() - started

    def close(self) -> None:
        """Close the descriptors (``end_flush``/``abort_flush`` do; also for a job that
        will not run). Idempotent."""
        fds, self._fds = self._fds, []
        if self._dir_fd is not None:
            fds.append(self._dir_fd)
            self._dir_fd = None
        for fd in fds:
            os.close(fd)


class AppendInfo(NamedTuple):
    """What one append wrote (an immutable record: a NamedTuple, cheap to build per append)."""

    first_offset: int  # base offset of the first batch appended
    last_offset: int  # last offset of the last batch appended
    max_timestamp: int
    log_append_time_ms: int  # -1 unless LogAppendTime
    num_batches: int
    size_bytes: int


@dataclass(frozen=True)
class ReadResult:
    """Whole batches back to back (``records`` may be empty) and the log's bounds."""

    records: bytes
    log_start_offset: int
    log_end_offset: int
    next_offset: int = -1  # where the next read should start (the requested offset if empty)


class PartitionLog:
    """The log of one partition: segments named by base offset in ``directory``.

    Invariants: ``log_start_offset <= flushed_offset <= log_end_offset`` once opened (the
    flushed offset may lag the start only transiently), segments are ordered by base offset,
    the last is the active one, and every segment's offsets lie below the next one's base.
    Use :meth:`open`; not thread-safe (see the module docstring).
    """

    def __init__(  # noqa: PLR0917 (built by open only)
        self,
        directory: Path,
        config: LogConfig,
        segments: list[LogSegment],
        log_start_offset: int,
        recovery: RecoveryReport,
        cache: FileCache,
    ) -> None:
        assert segments
        self.directory = directory
        self.config = config
        self.file_cache = cache  # the descriptors of the segments' files (shared by a node)
        self._segments = segments
        self._bases = [segment.base_offset for segment in segments]
        self.log_end_offset = segments[-1].next_offset
        self.log_start_offset = min(
            max(log_start_offset, segments[0].base_offset), self.log_end_offset
        )
        self.flushed_offset = self.log_end_offset
        self.recovery = recovery
        self._checkpointed = Checkpoint(-1, -1)
        self._unflushed_messages = 0
        self._first_unflushed_ms: int | None = None
        self._dir_dirty = False  # a segment file was created since the directory's last fsync
        self._dir_changes = 0  # segment files created so far (a flush job notes the count)
        self._deleted_files: list[Path] = []  # renamed by retention, for the caller to unlink
        self._generation = 0  # bumped by truncation: a flush job from before it is stale
        self._closed = False
        self._repairer: RangeRepairer | None = None
        self._ranges_written = [bad for segment in segments for bad in segment.corrupt]
        # Called on the log's thread by end_flush with each finished job's sync time (the
        # broker's fsync latency histogram); None: not observed.
        self.flush_observer: Callable[[float], None] | None = None
        self._cache_config()

    # --- opening and closing ------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        directory: Path,
        config: LogConfig,
        *,
        now_ms: int,
        recover: bool,
        cache: FileCache | None = None,
    ) -> PartitionLog:
        """Open (or create) the log in ``directory``.

        ``recover=False`` after a clean shutdown: the segments are trusted and not scanned.
        ``recover=True`` after a crash: segments from the recovery-point checkpoint on are
        checked batch by batch and the log is cut at the first batch that does not hold (see
        :mod:`rilke.storage.recovery`). Indexes that are missing or wrong are rebuilt either
        way. ``recovery`` on the result says what was done. ``cache``: the node's descriptor
        cache, shared by its logs (default: a private one). Blocks on disk.
        """
        cache = cache or FileCache(_PRIVATE_CACHE_FILES)
        directory.mkdir(parents=True, exist_ok=True)
        checkpoint = Checkpoint.read(directory)
        bases = list_segment_bases(directory)
        report = RecoveryReport(clean=not recover)
        recovery_point: int | None = None
        if recover:
            recovery_point = checkpoint.recovery_point if checkpoint else -1
            report.recovery_point = recovery_point
        known_ranges = integrity.read_ranges(directory)
        segments = open_segments(
            directory,
            bases,
            config.index_interval_bytes,
            now_ms,
            recovery_point=recovery_point,
            report=report,
            contiguous=not config.compact,
            # After a clean stop the checkpoint's recovery point is the log end offset.
            log_end_hint=checkpoint.recovery_point if checkpoint else None,
            known_ranges=known_ranges,
            cache=cache,
        )
        log_start = checkpoint.log_start_offset if checkpoint else 0
        created = False
        if not segments:
            segments = [
                LogSegment.create(
                    directory, log_start, config.index_interval_bytes, now_ms, cache=cache
                )
            ]
            created = True
        result = cls(directory, config, segments, log_start, report, cache)
        if result._active.corrupt:
            # The damaged file is sealed; appends go to a new one.
            result.roll(now_ms)
        if sorted(known_ranges) != result._ranges_written:
            integrity.write_ranges(directory, result._ranges_written)
        for bad in result._ranges_written:
            log.error("corrupt data: %s", bad.describe(directory))
        if report.segments_scanned or report.segments_deleted or created:
            # What recovery kept is now the log: make it durable before anything trusts it.
            for segment in segments:
                if segment.base_offset in report.segments_scanned or created:
                    segment.sync_all()
            files.fsync_dir(directory)
            result.checkpoint()
        elif checkpoint is None and result.log_end_offset == 0:
            # A new, empty log: no checkpoint reads as recovery point -1 and log start 0,
            # which for it is the same as (0, 0): nothing to write until it has data.
            result._checkpointed = Checkpoint(0, 0)
        else:
            result._checkpointed = checkpoint or Checkpoint(-1, -1)
        if report.segments_scanned or report.bytes_truncated:
            log.info(
                "%s: recovered: scanned %d segment(s) %s (%d bytes), cut %d bytes, "
                "deleted %d segment(s), log end offset %d",
                directory,
                len(report.segments_scanned),
                report.segments_scanned,
                report.bytes_scanned,
                report.bytes_truncated,
                len(report.segments_deleted),
                result.log_end_offset,
            )
        return result

    def close(self) -> None:
        """Flush everything, write the checkpoint and close the files. Blocks on disk.

        Idempotent. Every later call but ``close`` raises LogClosedError.
        """
        if self._closed:
            return
        try:
            self._sync_everything()
            self.flushed_offset = self.log_end_offset
            self._unflushed_messages = 0
            self._first_unflushed_ms = None
            self.checkpoint()
        finally:
            # Closed even when the flush fails (a full disk): the error propagates, and
            # without the clean-shutdown marker the next open recovers.
            self._closed = True
            error: OSError | None = None
            for segment in self._segments:
                try:
                    segment.close()
                except OSError as e:
                    error = error or e
            if error is not None:
                raise error

    def delete(self) -> None:
        """Close the files (without flushing) and remove the directory. Blocks on disk."""
        if not self._closed:
            for segment in self._segments:
                segment.close()
            self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def update_config(self, config: LogConfig) -> None:
        """Use ``config`` from now on (the index interval applies to new index entries)."""
        self.config = config
        self._cache_config()
        for segment in self._segments:
            segment.index_interval_bytes = config.index_interval_bytes

    def _cache_config(self) -> None:
        # Read once per append: plain attributes are cheaper than the config's properties.
        config = self.config
        self._max_index_entries = config.segment_index_bytes // TimeIndex.ENTRY_SIZE - 1
        self._max_message_bytes = config.max_message_bytes
        self._segment_bytes = config.segment_bytes
        self._segment_ms = config.segment_ms
        self._log_append_time = config.log_append_time
        self._flush_policy = config.flush_messages is not None or config.flush_ms is not None

    # --- appending ----------------------------------------------------------------------------

    def append(
        self,
        batches: bytes | bytearray | memoryview | CheckedBatches,
        *,
        assign_offsets: bool = True,
        leader_epoch: int | None = None,
        now_ms: int,
    ) -> AppendInfo:
        """Append one or more whole batches, all or nothing. May block on disk.

        Each batch is checked (header, magic, length, CRC, record count) and must be at most
        ``max_message_bytes``. With ``assign_offsets`` the log stamps base offsets from
        ``log_end_offset`` on (and, with LogAppendTime, the timestamp type and max timestamp,
        recomputing the CRC); without it, each batch's base offset must equal the offset the
        log expects next. ``leader_epoch``, when given, is stamped into every batch.

        When ``batches`` is writable (a bytearray or writable memoryview) the stamping is done
        in place, so the caller holds exactly the bytes that were stored (to forward them to
        replicas); read-only bytes are not copied but written around their stamped headers.

        :class:`~rilke.records.header.CheckedBatches` (made only by ``check_batches``, which
        checked every CRC of exactly these immutable bytes) are not CRC-checked again; every
        other check still runs (the CRC is the only costly one: a pass over all the bytes).
        Plain bytes, from anywhere (a replica, a file), are checked in full.

        Raises CorruptBatchError (bytes that do not form valid batches), BatchTooLargeError,
        NonContiguousOffsetError (preset offsets that do not continue the log),
        LogClosedError; on any of these nothing is written. Applies the flush policy: with
        ``flush_messages``/``flush_ms`` due it fsyncs (blocks on disk). Rolls a new segment
        first when the active one is full or old (fsyncs the old one).
        """
        if self._closed:
            raise LogClosedError(f"the log in {self.directory} is closed")
        if isinstance(batches, CheckedBatches):
            crc_checked = True
            view = memoryview(batches.data)
        else:
            crc_checked = False
            view = memoryview(batches)
        if type(batches) is memoryview and (view.ndim != 1 or view.itemsize != 1):
            view = view.cast("B")
        total = len(view)
        if total >= HEADER_SIZE and not self._log_append_time:
            # One batch, the produce path's common case: checks, stamping and the write kept
            # inline, since this runs once per batch (every attribute lookup and temporary
            # object here costs a measurable share of a 16 KiB append). The general loop in
            # _append_many does the same checks and gives the precise error for any refusal.
            batch_base, length, magic, crc, attributes, delta, max_timestamp, count = (
                _FAST_HEADER.unpack_from(view)
            )
            if (
                length + LOG_OVERHEAD == total
                and magic == MAGIC
                and total <= self._max_message_bytes
                and delta >= 0
                and 0 <= count <= delta + 1
                and attributes & COMPRESSION_MASK <= MAX_COMPRESSION_ID
                and (crc_checked or crc32c(view[CRC_START:]) == crc)
            ):
                base = self.log_end_offset
                if not assign_offsets and batch_base != base:
                    raise NonContiguousOffsetError(
                        f"batch has base offset {batch_base}, the log expects {base}"
                    )
                next_offset = base + delta + 1
                active = self._segments[-1]
                size = active.size
                if size and (
                    size + total > self._segment_bytes
                    or now_ms - active.rolling_base_ms >= self._segment_ms
                    or delta + base - active.base_offset > INT32_MAX
                    or len(active.offset_index.offsets) >= self._max_index_entries
                ):
                    self.roll(now_ms)
                    active = self._segments[-1]
                if not assign_offsets:
                    if leader_epoch is None:
                        data: memoryview | list[bytes | memoryview] = view
                    elif view.readonly:
                        data = [_BASE_LENGTH_EPOCH.pack(base, length, leader_epoch), view[16:]]
                    else:
                        _INT32.pack_into(view, LEADER_EPOCH_POS, leader_epoch)
                        data = view
                elif view.readonly:
                    # Read-only bytes are written around a stamped copy of their first 8 or
                    # 16 bytes (one small pack instead of copying the header or the batch).
                    if leader_epoch is None:
                        data = [_INT64.pack(base), view[8:]]
                    else:
                        data = [_BASE_LENGTH_EPOCH.pack(base, length, leader_epoch), view[16:]]
                else:
                    if leader_epoch is None:
                        _INT64.pack_into(view, 0, base)
                    else:
                        _BASE_LENGTH_EPOCH.pack_into(view, 0, base, length, leader_epoch)
                    data = view
                active.append_one(data, total, base, next_offset, max_timestamp, now_ms)
                self.log_end_offset = next_offset
                if self._flush_policy:
                    self._apply_flush_policy(next_offset - base, now_ms)
                return _new_tuple(AppendInfo, (base, next_offset - 1, max_timestamp, -1, 1, total))
        if total == 0:
            raise CorruptBatchError("nothing to append: no batch in the buffer")
        return self._append_many(view, assign_offsets, leader_epoch, now_ms, crc_checked)

    def _append_many(
        self,
        view: memoryview,
        assign_offsets: bool,
        leader_epoch: int | None,
        now_ms: int,
        crc_checked: bool = False,
    ) -> AppendInfo:
        """``append`` for several batches, LogAppendTime, and every refusal."""
        total = len(view)
        config = self.config
        max_size = config.max_message_bytes
        first_offset = next_offset = self.log_end_offset
        checked: list[tuple[int, int, int, int, int]] = []  # position, size, base, delta, max_ts
        position = 0
        unpack = _FAST_HEADER.unpack_from
        while position < total:
            # The checks of records.header.check_batch, without building a BatchHeader: this
            # runs once per batch on the produce path. Anything odd goes to check_batch itself
            # for the precise error.
            if total - position < HEADER_SIZE:
                _refuse(view, position)
            batch_base, length, magic, crc, attributes, delta, batch_max_ts, count = unpack(
                view, position
            )
            size = length + LOG_OVERHEAD
            end = position + size
            if size > max_size:
                if magic == MAGIC and end <= total:
                    raise BatchTooLargeError(
                        f"batch of {size} bytes exceeds max.message.bytes {max_size}"
                    )
                _refuse(view, position)
            if (
                magic != MAGIC
                or length < HEADER_SIZE - LOG_OVERHEAD
                or end > total
                or delta < 0
                or count < 0
                or count > delta + 1
                or attributes & COMPRESSION_MASK > MAX_COMPRESSION_ID
                or (not crc_checked and crc32c(view[position + CRC_START : end]) != crc)
            ):
                _refuse(view, position)
            if assign_offsets:
                base = next_offset
            else:
                base = batch_base
                if base != next_offset:
                    raise NonContiguousOffsetError(
                        f"batch has base offset {base}, the log expects {next_offset}"
                    )
            checked.append((position, size, base, delta, batch_max_ts))
            next_offset = base + delta + 1
            position = end

        active = self._active
        if active.size and (
            active.size + total > config.segment_bytes
            or now_ms - active.rolling_base_ms >= config.segment_ms
            or next_offset - 1 - active.base_offset > INT32_MAX
            or len(active.offset_index.offsets) >= self._max_index_entries
        ):
            self.roll(now_ms)
            active = self._active

        log_append_time = assign_offsets and config.log_append_time
        append_time_ms = now_ms if log_append_time else None
        stamp = assign_offsets or leader_epoch is not None
        entries: list[tuple[int, int, int, int]] = []
        data: memoryview | list[bytes | bytearray | memoryview] = view
        max_timestamp = -1
        if stamp and append_time_ms is None:
            # Only the first 8 (or 16) bytes change, outside the CRC: read-only input is
            # written around small packed stamps, writable input is stamped in place.
            pieces: list[bytes | bytearray | memoryview] = []
            add = pieces.append
            readonly = view.readonly
            for position, size, base, delta, batch_max_ts in checked:
                if leader_epoch is None:
                    if readonly:
                        add(_INT64.pack(base))
                        add(view[position + 8 : position + size])
                    else:
                        _INT64.pack_into(view, position, base)
                elif readonly:
                    add(_BASE_LENGTH_EPOCH.pack(base, size - LOG_OVERHEAD, leader_epoch))
                    add(view[position + 16 : position + size])
                else:
                    _BASE_LENGTH_EPOCH.pack_into(
                        view, position, base, size - LOG_OVERHEAD, leader_epoch
                    )
                entries.append((size, base, base + delta, batch_max_ts))
                max_timestamp = max(max_timestamp, batch_max_ts)
            if readonly:
                data = pieces if len(pieces) <= _IOV_MAX else [b"".join(pieces)]
        elif stamp and view.readonly:
            pieces = []
            for position, size, base, delta, batch_max_ts in checked:
                head = bytearray(view[position : position + HEADER_SIZE])
                rest = view[position + HEADER_SIZE : position + size]
                _stamp(head, base, epoch=leader_epoch, append_time_ms=append_time_ms, rest=rest)
                pieces.append(head)
                if size > HEADER_SIZE:
                    pieces.append(rest)
                max_ts = batch_max_ts if append_time_ms is None else append_time_ms
                entries.append((size, base, base + delta, max_ts))
                max_timestamp = max(max_timestamp, max_ts)
            data = pieces if len(pieces) <= _IOV_MAX else [b"".join(pieces)]
        else:
            for position, size, base, delta, batch_max_ts in checked:
                if stamp:
                    batch = view[position : position + size]
                    _stamp(batch, base, epoch=leader_epoch, append_time_ms=append_time_ms)
                max_ts = batch_max_ts if append_time_ms is None else append_time_ms
                entries.append((size, base, base + delta, max_ts))
                max_timestamp = max(max_timestamp, max_ts)
        active.append(data, total, entries, now_ms)
        self.log_end_offset = next_offset
        if config.flush_messages is not None or config.flush_ms is not None:
            self._apply_flush_policy(next_offset - first_offset, now_ms)
        return _new_tuple(
            AppendInfo,
            (
                first_offset,
                next_offset - 1,
                max_timestamp,
                now_ms if log_append_time else -1,
                len(checked),
                total,
            ),
        )

    def _apply_flush_policy(self, messages: int, now_ms: int) -> None:
        config = self.config
        if config.flush_messages is not None:
            self._unflushed_messages += messages
            if self._unflushed_messages >= config.flush_messages:
                self.flush()
                return
        if config.flush_ms is not None:
            if self._first_unflushed_ms is None:
                self._first_unflushed_ms = now_ms
            if now_ms - self._first_unflushed_ms >= config.flush_ms:
                self.flush()

    # --- reading ------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int, max_offset: int | None = None) -> ReadResult:
        """Whole batches from the one holding ``offset``, as bytes. May block on disk.

        Returns batches up to ``max_bytes`` in total, but always at least one whole batch if
        one is available (so a consumer makes progress), from one segment, never including a
        batch whose base offset is >= ``max_offset`` (the high watermark). The first batch may
        start before ``offset`` (batches are not split). ``offset == log_end_offset`` gives
        empty records. Raises OffsetOutOfRangeError when ``offset`` is below the log start
        offset or above the log end offset, LogClosedError when closed.
        """
        self._check_open()
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} is outside [{self.log_start_offset}, {self.log_end_offset}]"
            )
        for attempt in range(2):
            try:
                return self._read(offset, max_bytes, max_offset)
            except SegmentCorruptError as exc:
                if attempt:
                    raise StorageError(
                        f"{self.directory}: cannot read offset {offset}: {exc}"
                    ) from exc
                log.warning("%s: %s; checking the segment", self.directory, exc)
                self._examine(exc)
        raise AssertionError("unreachable")

    def _read(self, offset: int, max_bytes: int, max_offset: int | None) -> ReadResult:
        empty = ReadResult(b"", self.log_start_offset, self.log_end_offset, offset)
        if offset >= self.log_end_offset:
            return empty
        i = max(bisect_right(self._bases, offset) - 1, 0)
        for segment in self._segments[i:]:
            batch = segment.find_batch(offset)
            if batch is None:
                continue
            if max_offset is not None and batch.base_offset >= max_offset:
                return empty
            start = batch.position
            end = segment.size
            next_offset = segment.next_offset
            if segment.corrupt:
                bad = segment.corrupt_range_at(start)
                if bad is not None:
                    raise self._corrupt_error(bad)
                following = segment.corrupt_range_after(start)
                if following is not None:  # stop before it: the next read meets it alone
                    end, next_offset = following.position, following.first_offset
            if max_offset is not None and max_offset < next_offset:
                end, next_offset = segment.first_batch_at_or_after(max_offset)
            limit = start + max(max_bytes, batch.size)
            if limit < end:
                end, next_offset = segment.find_end(start, limit)
            return ReadResult(
                segment.read(start, end - start),
                self.log_start_offset,
                self.log_end_offset,
                next_offset,
            )
        return empty

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        """(offset, max timestamp) of the first batch whose max timestamp >= ``timestamp_ms``.

        The offset is the batch's base offset (or the log start offset if that is higher);
        None if no batch qualifies. May block on disk (reads a few headers).
        """
        self._check_open()
        for attempt in range(2):
            try:
                for segment in self._segments:
                    if segment.next_offset <= self.log_start_offset:
                        continue
                    batch = segment.batch_for_timestamp(timestamp_ms)
                    while batch is not None and batch.last_offset < self.log_start_offset:
                        batch = next(
                            (
                                b
                                for b in segment.walk(batch.position + batch.size, segment.size)
                                if b.max_timestamp >= timestamp_ms
                            ),
                            None,
                        )
                    if batch is not None:
                        return max(batch.base_offset, self.log_start_offset), batch.max_timestamp
                return None
            except SegmentCorruptError as exc:
                if attempt:
                    raise StorageError(f"{self.directory}: {exc}") from exc
                self._examine(exc)
        raise AssertionError("unreachable")

    # --- corrupt ranges -----------------------------------------------------------------------

    def corrupt_ranges(self) -> list[CorruptRange]:
        """The ranges of this log known not to hold, oldest first."""
        return [bad for segment in self._segments for bad in segment.corrupt]

    def set_repairer(self, repairer: RangeRepairer | None) -> None:
        """Who is told of each corrupt range recorded from now on (a replicated partition
        repairs it from another replica; see :class:`RangeRepairer`)."""
        self._repairer = repairer

    def record_corrupt_range(self, segment: LogSegment, bad: CorruptRange) -> bool:
        """Handle damage found in ``segment`` (by the scrubber, or a read): record ``bad`` so
        reads over it answer CorruptLogDataError, report it (an ERROR line naming the file,
        bytes and offsets), persist it (the ``corrupt-ranges`` file, so it survives restarts)
        and tell the repairer. Nothing is deleted: reads before and after it go on. False
        (nothing done) when ``segment`` is no longer in the log or the range overlaps a known
        one. Blocks on disk (writes the ranges file)."""
        self._check_open()
        if not any(s is segment for s in self._segments) or not segment.add_corrupt_range(bad):
            return False
        self._ranges_changed([bad])
        return True

    def repair_corrupt_range(self, bad: CorruptRange, batches: bytes, *, now_ms: int) -> None:
        """Replace the corrupt range ``bad`` with ``batches``: good copies of the batches that
        held its offsets (from another replica; see :class:`RangeRepairer`), on the log's
        thread. They are checked first (each batch whole, its CRC holding, the first starting
        at ``bad.first_offset``, offsets increasing, the last ending at ``bad.next_offset``);
        then the segment is rewritten with them in place of the bad bytes (a new file, fsynced,
        renamed over the old one: a crash leaves one or the other) and its indexes rebuilt.

        Raises StorageError when ``bad`` is not a range of this log (any more), and
        CorruptBatchError when ``batches`` do not fit it; on either nothing changes. Blocks on
        disk (copies the segment, fsyncs).
        """
        self._check_open()
        from rilke.storage.repair import repair_range

        old, repaired = repair_range(self, bad, batches, now_ms=now_ms)
        log.info(
            "%s: repaired offsets %d-%d", self.directory, bad.first_offset, bad.next_offset - 1
        )
        self._ranges_changed([r for r in repaired.corrupt if r not in old.corrupt])

    def _ranges_changed(self, new: list[CorruptRange]) -> None:
        for bad in new:
            log.error("corrupt data: %s", bad.describe(self.directory))
        current = self.corrupt_ranges()
        if current != self._ranges_written:
            integrity.write_ranges(self.directory, current)
            self._ranges_written = current
        if self._repairer is not None:
            for bad in new:
                self._repairer.corrupt_range_found(self.directory, bad)

    def _corrupt_error(self, bad: CorruptRange) -> CorruptLogDataError:
        return CorruptLogDataError(
            f"{self.directory.name}: offsets {bad.first_offset}-{bad.next_offset - 1} are "
            f"corrupt on this broker (bytes {bad.position}-{bad.end - 1} of segment "
            f"{bad.segment_base} do not hold); seek() to offset {bad.next_offset} to skip them",
            first_offset=bad.first_offset,
            next_offset=bad.next_offset,
        )

    def _examine(self, exc: SegmentCorruptError) -> None:
        """After a walk failed in use: check the segment it names (every batch, CRC included)
        and record what does not hold, or, when all holds, rebuild its indexes (they were
        wrong). Never cuts. Blocks on disk (reads the whole segment: an exceptional path)."""
        for i, segment in enumerate(self._segments):
            if exc.base_offset is not None and segment.base_offset != exc.base_offset:
                continue
            known = list(segment.corrupt)
            following = self._bases[i + 1] if i + 1 < len(self._bases) else None
            end_offset = segment.next_offset if following is None else following
            segment.recover(0, durable_before=_ALL_OFFSETS, next_offset_hint=end_offset)
            if segment is self._active:
                segment.flush_indexes()
            else:
                segment.seal()
            segment.needs_sync = True
            self._ranges_changed([bad for bad in segment.corrupt if bad not in known])

    # --- durability ---------------------------------------------------------------------------

    def flush(self, up_to_offset: int | None = None) -> None:
        """Make every offset below ``up_to_offset`` (default: all) durable. Blocks on disk.

        A no-op when ``flushed_offset`` is already past it. Otherwise fsyncs the segments
        rolled since the last flush and, if ``up_to_offset`` reaches into it, the active one:
        one fsync covers every append so far, whoever asked for it (group commit).
        """
        self._check_open()
        end = self.log_end_offset
        target = end if up_to_offset is None else min(up_to_offset, end)
        if target <= self.flushed_offset:
            return
        active = self._active
        rolled = []
        for segment in reversed(self._segments[:-1]):
            if not segment.needs_sync:
                break
            rolled.append(segment)
        for segment in reversed(rolled):
            segment.sync_all()
        if target > active.base_offset:
            active.flush_indexes()
            active.sync()
            flushed = end
            self._unflushed_messages = 0
            self._first_unflushed_ms = None
        else:
            flushed = active.base_offset
        if self._dir_dirty:
            files.fsync_dir(self.directory)
            self._dir_dirty = False
        self.flushed_offset = flushed

    def begin_flush(self, up_to_offset: int | None = None) -> FlushJob | None:
        """``flush`` split in three, for a caller that fsyncs on another thread.

        Takes on this thread what the flush must sync (duplicated descriptors of the segments
        rolled since the last flush and, if ``up_to_offset`` reaches into it, the active one;
        buffered index entries handed to the OS) and returns it as a :class:`FlushJob`, or
        None when ``flushed_offset`` is already there. Then ``job.run()`` anywhere, then
        :meth:`end_flush` (or :meth:`abort_flush`) here. Until ``end_flush`` nothing counts as
        flushed: a ``flush`` meanwhile syncs the same files again. Jobs may overlap; each
        covers the appends made before it was taken. May block on disk (small index writes).
        """
        self._check_open()
        end = self.log_end_offset
        target = end if up_to_offset is None else min(up_to_offset, end)
        if target <= self.flushed_offset:
            return None
        active = self._active
        rolled = []
        for segment in reversed(self._segments[:-1]):
            if not segment.needs_sync:
                break
            rolled.append(segment)
        fds: list[int] = []
        taken: list[tuple[LogSegment, int]] = []
        dir_fd: int | None = None
        try:
            for segment in reversed(rolled):
                fds += segment.dup_sync_fds(with_indexes=True)
                taken.append((segment, segment.size))
            if target > active.base_offset:
                fds += active.dup_sync_fds(with_indexes=False)
                taken.append((active, active.size))
                flushed = end
            else:
                flushed = active.base_offset
            if self._dir_dirty:
                dir_fd = os.open(self.directory, os.O_RDONLY)
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        # _dir_dirty stays set until end_flush: a flush() meanwhile fsyncs the directory too.
        dir_changes = self._dir_changes if dir_fd is not None else None
        return FlushJob(fds, dir_fd, taken, flushed, (self._generation, dir_changes))

    def end_flush(self, job: FlushJob) -> bool:
        """Count a finished job (``job.run()`` returned): raise ``flushed_offset`` to what it
        synced. Ignored (False) when the log was truncated or closed since it was taken."""
        job.close()
        if self.flush_observer is not None:
            self.flush_observer(job.sync_seconds)
        generation, dir_changes = job._generation
        if self._closed or generation != self._generation:
            return False
        if dir_changes == self._dir_changes:  # no segment created since the directory's fsync
            self._dir_dirty = False
        for segment, size in job._segments:
            if segment.size == size:  # nothing written to it since the job was taken
                segment.needs_sync = False
        if job.flushed_offset > self.flushed_offset:
            self.flushed_offset = job.flushed_offset
            if job.flushed_offset == self.log_end_offset:
                self._unflushed_messages = 0
                self._first_unflushed_ms = None
        return True

    def abort_flush(self, job: FlushJob) -> None:
        """Give back a job whose ``run`` failed (or will not run): nothing counts as flushed,
        and the next flush syncs the same files (and the directory) again."""
        job.close()

    def flush_rolled_segments(self) -> None:
        """fsync the segments rolled since the last flush (not the active one): what Kafka
        does in the background after a roll. Blocks on disk when there are some."""
        self.flush(self._active.base_offset)

    def _sync_everything(self) -> None:
        for segment in self._segments:
            # An empty active segment never written to has nothing to sync (its files were
            # made durable when it was created): a node of many idle partitions closes fast.
            if segment.needs_sync or (segment is self._active and segment.size):
                segment.sync_all()
        if self._dir_dirty:
            files.fsync_dir(self.directory)
            self._dir_dirty = False

    def maybe_flush(self, now_ms: int) -> bool:
        """Flush if ``flush_ms`` says the oldest unflushed append is due; whether it did."""
        self._check_open()
        flush_ms = self.config.flush_ms
        if (
            flush_ms is not None
            and self._first_unflushed_ms is not None
            and now_ms - self._first_unflushed_ms >= flush_ms
        ):
            self.flush()
            return True
        return False

    def flush_due(self, now_ms: int) -> bool:
        """Whether ``flush_ms`` says the oldest unflushed append is due (``maybe_flush``'s
        test, for a caller that flushes with ``begin_flush``)."""
        flush_ms = self.config.flush_ms
        return (
            flush_ms is not None
            and self._first_unflushed_ms is not None
            and now_ms - self._first_unflushed_ms >= flush_ms
        )

    def begin_checkpoint(self) -> tuple[Checkpoint, Checkpoint] | None:
        """``checkpoint`` split in two, for a caller that writes the file on another thread:
        (the checkpoint to write, the one it replaces) if it changed, else None. Write it with
        ``Checkpoint.write(directory, unique_tmp=True)`` anywhere, then :meth:`end_checkpoint`
        here."""
        current = Checkpoint(self.flushed_offset, self.log_start_offset)
        if current == self._checkpointed:
            return None
        return current, self._checkpointed

    def end_checkpoint(self, taken: tuple[Checkpoint, Checkpoint]) -> None:
        """Note a checkpoint from ``begin_checkpoint`` as written. If another was written here
        meanwhile, the file may hold either: the next ``checkpoint`` writes it again."""
        written, replaced = taken
        if self._checkpointed == replaced:
            self._checkpointed = written
        else:
            self._checkpointed = Checkpoint(-1, -1)

    def checkpoint(self) -> None:
        """Write the recovery point and log start offset if they changed. Blocks on disk."""
        current = Checkpoint(self.flushed_offset, self.log_start_offset)
        if current != self._checkpointed:
            current.write(self.directory)
            self._checkpointed = current

    # --- rolling, truncating, deleting --------------------------------------------------------

    def roll(self, now_ms: int) -> None:
        """Start a new active segment at ``log_end_offset``; no-op if the active one is empty.

        May block on disk (creates the new files). The old segment is not fsynced here: the
        next ``flush`` (or ``flush_rolled_segments``, which maintenance calls) does it.
        """
        self._check_open()
        active = self._active
        if active.size == 0:
            return
        active.seal()
        segment = LogSegment.create(
            self.directory,
            self.log_end_offset,
            self.config.index_interval_bytes,
            now_ms,
            cache=self.file_cache,
        )
        self._dir_dirty = True
        self._dir_changes += 1
        self._segments.append(segment)
        self._bases.append(segment.base_offset)

    def maybe_roll(self, now_ms: int) -> bool:
        """Roll if the active segment is older than ``segment_ms``; whether it did."""
        self._check_open()
        active = self._active
        if active.size and now_ms - active.rolling_base_ms >= self.config.segment_ms:
            self.roll(now_ms)
            return True
        return False

    def truncate_to(self, offset: int) -> None:
        """Remove every batch holding an offset >= ``offset``. Blocks on disk (fsyncs).

        A batch that straddles ``offset`` is removed whole, so ``log_end_offset`` becomes
        ``offset`` or the base offset of that batch. No-op when ``offset >= log_end_offset``;
        an ``offset`` at or below the first segment's base or below the log start offset, or
        a cut that would remove the batch holding the log start offset, empties the log and
        restarts it at ``offset``. Raises OffsetOutOfRangeError for a
        negative offset.
        """
        self._check_open()
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot truncate to negative offset {offset}")
        if offset >= self.log_end_offset:
            return
        if offset <= self._segments[0].base_offset or offset < self.log_start_offset:
            self.truncate_fully_and_start_at(offset)
            return
        holder = self._segments[max(bisect_right(self._bases, offset) - 1, 0)]
        straddling = holder.find_batch(offset)
        if straddling is not None and straddling.base_offset < self.log_start_offset:
            # The cut would take the log end below the log start.
            self.truncate_fully_and_start_at(offset)
            return
        deleted = False
        while self._segments[-1].base_offset >= offset:
            self._segments.pop().delete()
            self._bases.pop()
            deleted = True
        active = self._active
        new_end = offset
        batch = active.find_batch(offset)
        if batch is not None:
            active.truncate_to_position(batch.position, batch.base_offset)
            active.needs_sync = True  # the cut must be synced, even to an empty segment
            new_end = min(offset, batch.base_offset)
        self._generation += 1
        self._sync_everything()
        if deleted:
            files.fsync_dir(self.directory)
        self.log_end_offset = new_end
        self.flushed_offset = new_end
        self._unflushed_messages = 0
        self._first_unflushed_ms = None
        self.checkpoint()
        if self._ranges_written:
            self._ranges_changed([])

    def truncate_fully_and_start_at(self, offset: int) -> None:
        """Delete every segment and start an empty log at ``offset``. Blocks on disk."""
        self._check_open()
        if offset < 0:
            raise OffsetOutOfRangeError(f"cannot start the log at negative offset {offset}")
        now_ms = self._active.rolling_base_ms
        self._generation += 1
        for segment in self._segments:
            segment.delete()
        segment = LogSegment.create(
            self.directory, offset, self.config.index_interval_bytes, now_ms, cache=self.file_cache
        )
        segment.sync_all()
        files.fsync_dir(self.directory)
        self._dir_dirty = False
        self._segments = [segment]
        self._bases = [offset]
        self.log_start_offset = self.log_end_offset = self.flushed_offset = offset
        self._unflushed_messages = 0
        self._first_unflushed_ms = None
        self.checkpoint()
        if self._ranges_written:
            self._ranges_changed([])

    def delete_records_before(self, offset: int) -> None:
        """Raise the log start offset to ``offset`` and drop segments wholly below it.

        No-op when ``offset <= log_start_offset``. Raises OffsetOutOfRangeError when
        ``offset > log_end_offset``. Blocks on disk (writes the checkpoint).
        """
        self._check_open()
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"cannot delete records before {offset}: the log ends at {self.log_end_offset}"
            )
        if offset <= self.log_start_offset:
            return
        self.log_start_offset = offset
        self.checkpoint()
        self._delete_leading(retention.below_log_start(self._stats(), self.log_start_offset))

    def apply_retention(
        self, now_ms: int, *, defer_unlink: bool = False, high_watermark: int | None = None
    ) -> int:
        """Delete old segments by retention time and bytes (delete policy) and those wholly
        below the log start offset; never the active one, and with ``high_watermark`` (a
        replica's) none that holds an offset at or above it. Returns the segments deleted.

        May block on disk (unlinks files). With ``defer_unlink`` the files are only renamed
        (``.deleted``) and the caller unlinks what :meth:`take_deleted_files` returns,
        wherever it likes (a worker thread): unlinking a large segment can take a second.
        """
        self._check_open()
        count = retention.segments_to_delete(
            self._stats(),
            delete_policy=self.config.delete,
            retention_ms=self.config.retention_ms,
            retention_bytes=self.config.retention_bytes,
            log_start_offset=self.log_start_offset,
            now_ms=now_ms,
            high_watermark=high_watermark,
        )
        self._delete_leading(count, defer_unlink=defer_unlink)
        return count

    def take_deleted_files(self) -> list[Path]:
        """The files ``apply_retention(defer_unlink=True)`` renamed, for the caller to unlink
        (``files.unlink_if_exists``, on any thread); forgotten here. Left behind, they are
        removed when the log is next opened."""
        deleted, self._deleted_files = self._deleted_files, []
        return deleted

    def _stats(self) -> list[retention.SegmentStat]:
        return [
            retention.SegmentStat(s.base_offset, s.size, s.max_timestamp) for s in self._segments
        ]

    def _delete_leading(self, count: int, *, defer_unlink: bool = False) -> None:
        count = min(count, len(self._segments) - 1)
        if count <= 0:
            return
        for segment in self._segments[:count]:
            log.info("%s: deleting segment %d", self.directory, segment.base_offset)
            if defer_unlink:
                self._deleted_files += segment.retire()
            else:
                segment.delete()
        had_ranges = any(segment.corrupt for segment in self._segments[:count])
        del self._segments[:count]
        del self._bases[:count]
        self.log_start_offset = max(self.log_start_offset, self._segments[0].base_offset)
        if had_ranges:
            self._ranges_changed([])

    def compact(self, now_ms: int) -> int:
        """Compact the non-active segments (cleanup policy with "compact"); bytes freed.

        Keeps the newest record per key; tombstones (null values) are dropped once their batch
        is older than ``delete_retention_ms``. Blocks on disk (rewrites segments).
        """
        self._check_open()
        if not self.config.compact:
            return 0
        from rilke.storage.cleaner import compact_log

        freed: int = compact_log(self, now_ms)
        return freed

    def replace_segment(self, old: LogSegment, new: LogSegment) -> None:
        """Put ``new`` in the place of ``old`` (same base offset; for the cleaner)."""
        assert old.base_offset == new.base_offset and old is not self._active
        self._segments[self._segments.index(old)] = new

    # --- state --------------------------------------------------------------------------------

    def size_bytes(self) -> int:
        """Bytes of batches in all segments."""
        return sum(segment.size for segment in self._segments)

    @property
    def segments(self) -> list[LogSegment]:
        """The segments, oldest first (read-only use: the log owns them)."""
        return list(self._segments)

    @property
    def rolled_offset(self) -> int:
        """The active segment's base offset: every offset below it is in a rolled segment
        (``flush(rolled_offset)`` is ``flush_rolled_segments``)."""
        return self._segments[-1].base_offset

    @property
    def _active(self) -> LogSegment:
        return self._segments[-1]

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"the log in {self.directory} is closed")

    def __repr__(self) -> str:
        return (
            f"PartitionLog({self.directory}, start={self.log_start_offset}, "
            f"end={self.log_end_offset}, segments={len(self._segments)})"
        )
