"""LogSegment: one ``.log`` file of whole batches with its offset and time indexes.

A segment holds the batches whose offsets start at ``base_offset`` (its file names) and end
before the next segment's base offset. Only the last segment of a log (the active one) is
written to; it is written with ``pwrite`` at ``size`` and read with ``pread``, so there is no
user-space buffer between a write and a later read.

This class is not thread-safe; the partition log serialises access to it. Every method that
touches files may block on disk; the ones that fsync say so. Its three files are
:class:`~rilke.storage.handles.CachedFile`s of the node's :class:`FileCache`: a descriptor is
open only while the file is in use, and ``_fd`` opens it again when the cache closed it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from rilke.errors import RecordsError
from rilke.records.header import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    check_batch,
    header_struct,
    peek_size,
)
from rilke.storage import files, integrity
from rilke.storage.config import LogConfig
from rilke.storage.files import fdatasync
from rilke.storage.handles import CachedFile, FileCache
from rilke.storage.index import IndexCorruptError, OffsetIndex, TimeIndex
from rilke.storage.integrity import CorruptRange

log = logging.getLogger(__name__)

INT32_MAX = (1 << 31) - 1

# The header fields a segment needs: base offset, length, epoch, magic, crc, attributes,
# last offset delta, base timestamp, max timestamp (the first 43 of the 61 bytes).
_PEEK = header_struct(
    "base_offset",
    "batch_length",
    "partition_leader_epoch",
    "magic",
    "crc",
    "attributes",
    "last_offset_delta",
    "base_timestamp",
    "max_timestamp",
)
_PEEK_SIZE = _PEEK.size
_WALK_CHUNK = 8192
_RECOVERY_CHUNK = 8 << 20
_MIN_LENGTH = HEADER_SIZE - LOG_OVERHEAD
_pwrite = os.pwrite  # module globals: one lookup instead of two on the per-batch path
_pwritev = os.pwritev


class SegmentCorruptError(Exception):
    """The segment's bytes or indexes do not hold where they were trusted (internal).

    ``base_offset`` names the segment when known, so the log can examine that one."""

    def __init__(self, message: str, base_offset: int | None = None) -> None:
        super().__init__(message)
        self.base_offset = base_offset


class BatchInfo(NamedTuple):
    """Where one batch lies in a segment and what its header says."""

    position: int
    base_offset: int
    size: int
    last_offset: int
    max_timestamp: int


class LogSegment:
    """One segment: the ``.log`` file, its OffsetIndex and TimeIndex, and its tail state.

    Invariants: ``size`` is the byte length of whole batches in the file; ``next_offset`` is one
    past the last batch's last offset (``base_offset`` when empty); ``max_timestamp`` is the
    largest batch max timestamp (-1 when empty) and ``offset_of_max_timestamp`` the base
    offset of the batch holding it. ``corrupt`` lists the byte ranges known not to hold
    (:mod:`rilke.storage.integrity`), sorted and apart; header walks pass over each as one
    opaque entry (a BatchInfo with max timestamp -1), and readers must refuse them.
    """

    def __init__(  # noqa: PLR0917
        self,
        directory: Path,
        base_offset: int,
        log_file: CachedFile,
        index_interval_bytes: int,
        now_ms: int,
        cache: FileCache,
    ) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.log_path = files.log_path(directory, base_offset)
        self.index_interval_bytes = index_interval_bytes
        self._log_file = log_file
        self.size = 0
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.offset_of_max_timestamp = base_offset
        self.rolling_base_ms = now_ms
        self.needs_sync = False  # written to since its last fsync
        self.corrupt: list[CorruptRange] = []
        self._bytes_since_last_index = 0
        self.offset_index = OffsetIndex(
            files.index_path(directory, base_offset), base_offset, cache
        )
        self.time_index = TimeIndex(
            files.time_index_path(directory, base_offset), base_offset, cache
        )

    @property
    def _fd(self) -> int:
        """The log file's descriptor, (re)opened through the cache: take it at the call that
        uses it, never keep it (see rilke.storage.handles)."""
        return self._log_file.fd()

    # --- opening -----------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        base_offset: int,
        index_interval_bytes: int,
        now_ms: int,
        *,
        cache: FileCache | None = None,
    ) -> LogSegment:
        """A new empty segment (any files of that name are emptied). Blocks on disk.

        ``cache``: the node's descriptor cache (default: a private one for this segment)."""
        cache = cache or FileCache(3)
        log_file = cache.create(files.log_path(directory, base_offset))
        segment = cls(directory, base_offset, log_file, index_interval_bytes, now_ms, cache)
        try:
            segment.offset_index.reset()
            segment.time_index.reset()
        except BaseException:
            segment.close()  # no descriptor left open when the disk refuses an index file
            raise
        return segment

    @classmethod
    def open(
        cls,
        directory: Path,
        base_offset: int,
        index_interval_bytes: int,
        now_ms: int,
        *,
        cache: FileCache | None = None,
    ) -> tuple[LogSegment, bool]:
        """Open an existing segment, trusting its bytes; return it and whether its indexes held.

        When the indexes are missing or do not hold, the segment comes back with empty indexes
        and False: the caller must ``recover(0)`` it. Otherwise the caller either trusts the
        bytes (``load_tail``) or checks them (``recover``). The log file is not opened here
        (its size comes from ``stat``); reads open it through ``cache``. Blocks on disk.
        """
        cache = cache or FileCache(3)
        log_path = files.log_path(directory, base_offset)
        size = os.stat(log_path).st_size
        segment = cls(
            directory, base_offset, cache.file(log_path), index_interval_bytes, now_ms, cache
        )
        segment.size = size
        try:
            segment.offset_index = OffsetIndex.load(
                segment.offset_index.path, base_offset, max(segment.size, 1), cache
            )
            segment.time_index = TimeIndex.load(segment.time_index.path, base_offset, cache)
        except (FileNotFoundError, IndexCorruptError) as exc:
            log.log(
                logging.INFO if isinstance(exc, FileNotFoundError) else logging.WARNING,
                "segment %s: indexes need rebuilding: %s",
                segment.log_path,
                exc,
            )
            segment.offset_index = OffsetIndex(segment.offset_index.path, base_offset, cache)
            segment.time_index = TimeIndex(segment.time_index.path, base_offset, cache)
            return segment, False
        return segment, True

    def load_tail(self) -> None:
        """Compute the tail state of the whole file from the indexes and a short header walk.

        Raises SegmentCorruptError if the indexes or the headers after them do not hold.
        """
        self._load_tail(self.size)

    def position_of(self, offset: int) -> int | None:
        """Position of the batch with base offset ``offset``, found through trusted bytes.

        Walks headers (no CRC) from the index entry before ``offset``; the bytes from that
        batch on may be torn. None when the chain of headers does not lead there exactly.
        """
        entry_offset, position = self.offset_index.lookup(offset)
        expect = entry_offset if position else None
        next_expected = expect
        walked = False
        try:
            for batch in self.walk(position, self.size, expect_base=expect):
                walked = True
                if batch.base_offset >= offset:
                    return batch.position if batch.base_offset == offset else None
                if batch.last_offset >= offset:
                    return None
                position, next_expected = batch.position + batch.size, batch.last_offset + 1
        except SegmentCorruptError:
            pass
        return position if walked and next_expected == offset else None

    def _load_tail(self, end: int) -> None:
        """Compute the tail state for the batches in [0, end) from the indexes and a short walk.

        Raises SegmentCorruptError if an index entry or a header it leads to does not hold.
        """
        entry_offset, entry_position = self.offset_index.last_entry()
        max_timestamp = -1
        offset_of_max = self.base_offset
        time_entry = self.time_index.last_entry()
        if time_entry is not None:
            timestamp, offset = time_entry
            batch = self.find_batch(offset)
            if batch is None or batch.base_offset != offset or batch.max_timestamp != timestamp:
                raise SegmentCorruptError(
                    f"time index entry {time_entry} does not match the log", self.base_offset
                )
            max_timestamp, offset_of_max = timestamp, offset
        next_offset = self.base_offset
        position = entry_position
        expect = entry_offset if len(self.offset_index) else None
        for batch in self.walk(entry_position, end, expect_base=expect):
            if batch.max_timestamp > max_timestamp:
                max_timestamp, offset_of_max = batch.max_timestamp, batch.base_offset
            next_offset = batch.last_offset + 1
            position = batch.position + batch.size
        if position != end:
            raise SegmentCorruptError(f"walk ended at {position}, expected {end}", self.base_offset)
        self.size = end
        self.next_offset = next_offset
        self.max_timestamp = max_timestamp
        self.offset_of_max_timestamp = offset_of_max
        self._bytes_since_last_index = end - entry_position

    # --- reading -----------------------------------------------------------------------------

    def walk(self, start: int, end: int, *, expect_base: int | None = None) -> Iterator[BatchInfo]:
        """Yield the headers of the batches in [start, end), reading ahead in small chunks.

        Checks each header's magic and length (not the CRC). ``expect_base``: the base offset
        the first batch must carry. Raises SegmentCorruptError when a header does not hold.
        A known corrupt range comes as one entry (its position, first offset, size, last
        offset and max timestamp -1), also when ``start`` lies inside it.
        """
        if self.corrupt:
            return self._walk_around_ranges(start, end, expect_base)
        return self._walk(start, end, expect_base)

    def _walk_around_ranges(
        self, start: int, end: int, expect_base: int | None
    ) -> Iterator[BatchInfo]:
        ranges = [r for r in self.corrupt if r.end > start and r.position < end]
        position = start
        for bad in ranges:
            if position < bad.position:
                yield from self._walk(position, bad.position, expect_base)
                position = bad.position
            yield BatchInfo(
                bad.position,
                bad.first_offset,
                bad.end - bad.position,
                bad.next_offset - 1,
                -1,
            )
            position = bad.end
            expect_base = None
        if position < end:
            yield from self._walk(position, end, expect_base)

    def corrupt_range_at(self, position: int) -> CorruptRange | None:
        """The known corrupt range holding byte ``position``, if any."""
        for bad in self.corrupt:
            if bad.position <= position < bad.end:
                return bad
        return None

    def corrupt_range_after(self, position: int) -> CorruptRange | None:
        """The first known corrupt range that starts at or after ``position``, if any."""
        for bad in self.corrupt:
            if bad.position >= position:
                return bad
        return None

    def add_corrupt_range(self, bad: CorruptRange) -> bool:
        """Record ``bad`` (found by the scrubber or a read); False if it overlaps a known one
        or lies outside the segment. Nothing else changes: walks pass over it from now on."""
        if bad.segment_base != self.base_offset or bad.end > self.size:
            return False
        if any(r.position < bad.end and bad.position < r.end for r in self.corrupt):
            return False
        self.corrupt = sorted([*self.corrupt, bad])
        return True

    def attach_ranges(self, known: list[CorruptRange]) -> list[CorruptRange]:
        """Take the ranges recorded for this segment before (its file of ranges) whose bytes
        still do not hold; returns the ones dropped (outside the file, or holding now: a
        repaired range). Blocks on disk (reads the first batch of each)."""
        kept: list[CorruptRange] = []
        dropped: list[CorruptRange] = []
        for bad in sorted(known):
            if (
                bad.segment_base != self.base_offset
                or bad.end > self.size
                or (kept and bad.position < kept[-1].end)
                or integrity.check_batch_at(self._fd, bad.position, bad.end) is not None
            ):
                dropped.append(bad)
            else:
                kept.append(bad)
        self.corrupt = kept
        return dropped

    def _walk(self, start: int, end: int, expect_base: int | None) -> Iterator[BatchInfo]:
        position = start
        buf = b""
        buf_start = start
        while position < end:
            rel = position - buf_start
            if rel + _PEEK_SIZE > len(buf):
                buf = os.pread(self._fd, min(_WALK_CHUNK, end - position), position)
                buf_start = position
                rel = 0
                if len(buf) < _PEEK_SIZE:
                    raise SegmentCorruptError(
                        f"{self.log_path}: short header at {position}", self.base_offset
                    )
            base, length, _, magic, _, _, delta, _, max_ts = _PEEK.unpack_from(buf, rel)
            size = length + LOG_OVERHEAD
            if magic != MAGIC or length < _MIN_LENGTH or position + size > end or delta < 0:
                raise SegmentCorruptError(
                    f"{self.log_path}: bad header at {position}", self.base_offset
                )
            if expect_base is not None:
                if base != expect_base:
                    raise SegmentCorruptError(
                        f"{self.log_path}: index says offset {expect_base} at {position}, "
                        f"the batch there has {base}",
                        self.base_offset,
                    )
                expect_base = None
            yield BatchInfo(position, base, size, base + delta, max_ts)
            position += size

    def find_batch(self, offset: int, end: int | None = None) -> BatchInfo | None:
        """The first batch whose last offset is >= ``offset``, or None if none is in here.

        Raises SegmentCorruptError if the index entry it starts from does not hold.
        """
        entry_offset, position = self.offset_index.lookup(offset)
        # Entries never point at position 0 (the first batch is not indexed), so position 0
        # means "no entry": the first batch may have any base offset >= the segment's.
        expect = entry_offset if position else None
        for batch in self.walk(position, self.size if end is None else end, expect_base=expect):
            if batch.last_offset >= offset:
                return batch
        return None

    def find_end(self, start: int, limit: int) -> tuple[int, int]:
        """The end of the last whole batch in [start, limit) and the base offset after it.

        ``start`` is a batch boundary and ``limit`` < ``size``; the first batch at ``start``
        must end within ``limit``. Returns (end position, base offset of the batch at end).
        """
        entry_offset, entry_position = self.offset_index.lookup_position(limit)
        expect: int | None = entry_offset
        if entry_position <= start:
            entry_position, expect = start, None
        for batch in self.walk(entry_position, self.size, expect_base=expect):
            if batch.position + batch.size > limit:
                return batch.position, batch.base_offset
        raise SegmentCorruptError(f"{self.log_path}: no batch crosses {limit}", self.base_offset)

    def first_batch_at_or_after(self, offset: int) -> tuple[int, int]:
        """(position, base offset) of the first batch with base offset >= ``offset``.

        (size, next_offset) when there is none. Used to stop reads at a high watermark.
        """
        batch = self.find_batch(offset)
        if batch is None:
            return self.size, self.next_offset
        if batch.base_offset >= offset:
            return batch.position, batch.base_offset
        after = batch.position + batch.size
        if after >= self.size:
            return self.size, self.next_offset
        for following in self.walk(after, self.size):
            return following.position, following.base_offset
        return self.size, self.next_offset

    def read(self, position: int, length: int) -> bytes:
        """``length`` bytes from ``position`` (one pread). May block on disk."""
        data = os.pread(self._fd, length, position)
        if len(data) != length:
            raise SegmentCorruptError(
                f"{self.log_path}: short read at {position}", self.base_offset
            )
        return data

    def batch_for_timestamp(self, timestamp: int) -> BatchInfo | None:
        """The first batch with max timestamp >= ``timestamp``, or None if none is in here."""
        if self.max_timestamp < timestamp:
            return None
        start = 0
        expect: int | None = None
        entry = self.time_index.lookup_before(timestamp)
        if entry is not None:
            found = self.find_batch(entry[1])
            if found is None or found.base_offset != entry[1] or found.max_timestamp != entry[0]:
                raise SegmentCorruptError(
                    f"{self.log_path}: time index entry {entry} is wrong", self.base_offset
                )
            start, expect = found.position, found.base_offset
        for batch in self.walk(start, self.size, expect_base=expect):
            if batch.max_timestamp >= timestamp:
                return batch
        return None

    # --- writing -----------------------------------------------------------------------------

    def should_roll(
        self, append_bytes: int, last_offset: int, now_ms: int, config: LogConfig
    ) -> bool:
        """Whether an append of ``append_bytes`` ending at ``last_offset`` needs a new segment."""
        if self.size == 0:
            return False
        return (
            self.size + append_bytes > config.segment_bytes
            or now_ms - self.rolling_base_ms >= config.segment_ms
            or (len(self.offset_index) + 1) * OffsetIndex.ENTRY_SIZE > config.segment_index_bytes
            or (len(self.time_index) + 1) * TimeIndex.ENTRY_SIZE > config.segment_index_bytes
            or last_offset - self.base_offset > INT32_MAX
        )

    def append(
        self,
        data: bytes | bytearray | memoryview | list[bytes | bytearray | memoryview],
        total: int,
        batches: list[tuple[int, int, int, int]],
        now_ms: int,
    ) -> None:
        """Write whole batches at the end and index them. May block on disk (no fsync).

        ``data`` is the bytes or a list of pieces (written with one pwritev) of ``total`` bytes
        in all; ``batches`` is
        (size, base offset, last offset, max timestamp) for each, in order. On an OSError the
        file is cut back to its old size and the error propagates.
        """
        position = self.size
        if position == 0:
            self.rolling_base_ms = now_ms
        try:
            if isinstance(data, list):
                written = os.pwritev(self._fd, data, position)
                if written != total:
                    # A short write to a regular file: finish it piece by piece.
                    rest = b"".join(bytes(piece) for piece in data)[written:]
                    self._pwrite_all(rest, position + written)
            else:
                written = os.pwrite(self._fd, data, position)
                if written != total:
                    self._pwrite_all(memoryview(data)[written:], position + written)
        except OSError:
            os.ftruncate(self._fd, position)
            raise
        # The index bookkeeping of append_one, per batch, with the state in locals.
        interval = self.index_interval_bytes
        since = self._bytes_since_last_index
        max_timestamp = self.max_timestamp
        offset_of_max = self.offset_of_max_timestamp
        offsets = self.offset_index.offsets
        positions = self.offset_index.positions
        time_index = self.time_index
        timestamps = time_index.timestamps
        segment_base = self.base_offset
        for size, base, _, max_ts in batches:
            if max_ts > max_timestamp:
                max_timestamp, offset_of_max = max_ts, base
            if since > interval:
                offsets.append(base - segment_base)
                positions.append(position)
                if not timestamps or max_timestamp > timestamps[-1]:
                    time_index.maybe_append(max_timestamp, offset_of_max)
                since = size
            else:
                since += size
            position += size
        self.max_timestamp = max_timestamp
        self.offset_of_max_timestamp = offset_of_max
        self._bytes_since_last_index = since
        if batches:
            self.next_offset = batches[-1][2] + 1
        self.size = position
        self.needs_sync = True

    def append_one(  # noqa: PLR0917 (the per-batch hot path: positional is cheaper)
        self,
        data: memoryview | list[bytes | memoryview],
        size: int,
        base_offset: int,
        next_offset: int,
        max_timestamp: int,
        now_ms: int,
    ) -> None:
        """``append`` for a single batch of ``size`` bytes (the produce path's common case).

        ``data`` is the batch, or a list of pieces (its stamped first bytes and the rest)
        written with one pwritev.
        """
        position = self.size
        if not position:
            self.rolling_base_ms = now_ms
        try:
            if isinstance(data, list):
                written = _pwritev(self._fd, data, position)
                if written != size:
                    rest = b"".join(bytes(piece) for piece in data)[written:]
                    self._pwrite_all(rest, position + written)
            else:
                written = _pwrite(self._fd, data, position)
                if written != size:
                    self._pwrite_all(memoryview(data)[written:], position + written)
        except OSError:
            os.ftruncate(self._fd, position)
            raise
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
            self.offset_of_max_timestamp = base_offset
        since = self._bytes_since_last_index
        if since > self.index_interval_bytes:
            index = self.offset_index
            index.offsets.append(base_offset - self.base_offset)
            index.positions.append(position)
            timestamps = self.time_index.timestamps
            if not timestamps or self.max_timestamp > timestamps[-1]:
                self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_last_index = size
        else:
            self._bytes_since_last_index = since + size
        self.size = position + size
        self.next_offset = next_offset
        self.needs_sync = True

    def _pwrite_all(self, data: bytes | memoryview, position: int) -> None:
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, position)
            view = view[written:]
            position += written

    def _note_batch(self, batch: BatchInfo) -> None:
        """Index a batch found by recovery exactly as an append would have."""
        if batch.max_timestamp > self.max_timestamp:
            self.max_timestamp = batch.max_timestamp
            self.offset_of_max_timestamp = batch.base_offset
        if self._bytes_since_last_index > self.index_interval_bytes:
            self.offset_index.append(batch.base_offset, batch.position)
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
            self._bytes_since_last_index = 0
        self._bytes_since_last_index += batch.size
        self.next_offset = batch.last_offset + 1

    def truncate_to(self, offset: int) -> int:
        """Remove every batch holding an offset >= ``offset``; return the bytes removed.

        Blocks on disk (ftruncate; no fsync).
        """
        batch = self.find_batch(offset)
        if batch is None:
            return 0
        return self.truncate_to_position(batch.position, batch.base_offset)

    def truncate_to_position(self, position: int, base_offset_at_position: int) -> int:
        """Cut the file at ``position`` (a batch boundary holding ``base_offset_at_position``)."""
        removed = self.size - position
        os.ftruncate(self._fd, position)
        self.size = position
        self.corrupt = [bad for bad in self.corrupt if bad.end <= position]
        self.offset_index.truncate_to_position(position)
        self.time_index.truncate_to_offset(base_offset_at_position)
        self._load_tail(position)
        return removed

    def recover(
        self,
        start: int,
        base_offset_at_start: int | None = None,
        *,
        contiguous: bool = False,
        durable_before: int | None = None,
        next_offset_hint: int | None = None,
    ) -> tuple[int, int]:
        """Check every batch from ``start`` (CRC included); cut the unflushed tail at the first
        that does not hold, and record damage to durable batches as corrupt ranges.

        ``start`` is 0 (the whole segment; indexes rebuilt from scratch) or a batch boundary
        trusted to hold ``base_offset_at_start`` (indexes kept before it). Batches must be whole,
        pass :func:`check_batch`, and have offsets that increase from the segment's base
        offset (with ``contiguous``, each batch must start right after the one before: true
        of every log that compaction has not thinned, and it catches damage to the base
        offset, which the CRC does not cover).

        Where a batch does not hold: when its offsets lie at or past ``durable_before`` (None:
        nothing here is known durable, the torn tail after an unclean stop), the file is cut
        there. Below it (fsynced data, intact batches may follow) nothing is cut: the bytes up
        to the next batch that holds become a :class:`CorruptRange` in ``corrupt``, and the
        scan goes on after it. A range that reaches the end of the file ends at offset
        ``next_offset_hint`` (the next segment's base, or the log end known otherwise);
        without a hint its offsets cannot be known and the file is cut there (logged as an
        error). Known ranges from ``start`` on are dropped and found again.

        Returns (bytes scanned, bytes cut off). Blocks on disk (reads the file, ftruncate;
        no fsync).
        """
        file_size = os.fstat(self._fd).st_size
        if start:
            assert base_offset_at_start is not None
            try:
                self.offset_index.truncate_to_position(start)
                self.time_index.truncate_to_offset(base_offset_at_start)
                self.size = start
                self._load_tail(start)
            except SegmentCorruptError as exc:
                log.warning("%s: %s; checking the whole segment", self.log_path, exc)
                start = 0
        self.corrupt = [bad for bad in self.corrupt if bad.end <= start]
        if start == 0:
            self.offset_index.reset()
            self.time_index.reset()
            self.size = 0
            self.next_offset = self.base_offset
            self.max_timestamp = -1
            self.offset_of_max_timestamp = self.base_offset
            self._bytes_since_last_index = 0
        position = start
        expected = self.next_offset
        buf = bytearray()
        buf_start = position
        while position < file_size:
            rel = position - buf_start
            size = peek_size(buf, rel)
            if size is None or rel + size > len(buf):
                want = max(_RECOVERY_CHUNK, size or 0)
                want = min(want, file_size - position)
                buf = bytearray(want)
                got = os.preadv(self._fd, [buf], position)
                del buf[got:]
                buf_start = position
                rel = 0
                size = peek_size(buf, 0)
            problem = ""
            if size is None or size > len(buf) - rel:
                problem = "a partial batch"
            else:
                try:
                    header = check_batch(buf, rel)
                except RecordsError as exc:
                    problem = str(exc)
                else:
                    if (
                        header.base_offset < expected
                        or (contiguous and header.base_offset != expected)
                        or header.base_offset < self.base_offset
                        or header.last_offset - self.base_offset > INT32_MAX
                    ):
                        problem = f"base offset {header.base_offset}, expected >= {expected}"
            if not problem:
                assert size is not None
                self._note_batch(
                    BatchInfo(
                        position, header.base_offset, size, header.last_offset, header.max_timestamp
                    )
                )
                expected = header.next_offset
                position += size
                continue
            if durable_before is None or expected >= durable_before:
                log.warning("%s: batch at %d does not hold: %s", self.log_path, position, problem)
                break
            bad = integrity.locate(
                self._fd,
                self.base_offset,
                position,
                file_size,
                first_offset=expected,
                next_offset_hint=next_offset_hint,
            )
            if bad is None:
                log.error(
                    "%s: batch at %d does not hold (%s) and nothing after it does, and the "
                    "offsets it held are unknown: cutting the segment there",
                    self.log_path,
                    position,
                    problem,
                )
                break
            log.debug("%s: %s at %d", self.log_path, problem, position)
            self.corrupt.append(bad)
            self._note_range(bad)
            expected = bad.next_offset
            position = bad.end
            buf = bytearray()
            buf_start = position
        self.size = position
        if position < file_size:
            os.ftruncate(self._fd, position)
        return file_size - start, file_size - position

    def _note_range(self, bad: CorruptRange) -> None:
        """Account for a corrupt range in the tail state (never indexed)."""
        self._bytes_since_last_index += bad.end - bad.position
        self.next_offset = bad.next_offset

    # --- durability and lifetime --------------------------------------------------------------

    def flush_indexes(self) -> None:
        """Hand buffered index entries to the OS (no fsync)."""
        self.offset_index.flush()
        self.time_index.flush()

    def sync(self) -> None:
        """fsync the log file. Blocks on disk."""
        fdatasync(self._fd)
        self.needs_sync = False

    def dup_log_fd(self) -> int:
        """A duplicate of the log file's descriptor, to read the file elsewhere (another
        thread) even if this segment is closed meanwhile. The caller closes it."""
        return os.dup(self._fd)

    def dup_sync_fds(self, *, with_indexes: bool) -> list[int]:
        """Duplicates of the descriptors a flush must fsync, for a sync run elsewhere (on
        another thread: duplicates stay valid if this segment is closed or deleted meanwhile).

        The log file's, and with ``with_indexes`` (a sealed segment) both indexes' too, after
        handing their buffered entries to the OS. The caller closes them. May block on disk
        (small index writes; no fsync).
        """
        fds = [os.dup(self._fd)]
        try:
            if with_indexes:
                self.seal()
                fds.append(self.offset_index.dup_fd())
                fds.append(self.time_index.dup_fd())
            else:
                self.flush_indexes()
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        return fds

    def seal(self) -> None:
        """Add the final time index entry (the segment's largest timestamp) and hand buffered
        index entries to the OS; for a segment that stops being the active one. No fsync."""
        if self.size:
            self.time_index.maybe_append(self.max_timestamp, self.offset_of_max_timestamp)
        self.flush_indexes()

    def sync_all(self) -> None:
        """``seal`` and fsync the log and both indexes. Blocks on disk."""
        self.seal()
        fdatasync(self._fd)
        self.offset_index.sync()
        self.time_index.sync()
        self.needs_sync = False

    def close(self) -> None:
        """Close the files (no fsync); every one, even when writing an index's buffered
        entries fails (a full disk: the error propagates)."""
        try:
            try:
                self.offset_index.close()
            finally:
                self.time_index.close()
        finally:
            self._log_file.close()

    def retire(self) -> list[Path]:
        """Close the segment and rename its files to ``<name>.deleted`` (log first), for the
        caller to unlink later, on any thread: unlinking a large file that is in the page
        cache takes long (about a second per GiB measured here), a rename does not. The names
        are free at once for a new segment. Returns the renamed paths. May block on disk."""
        self.close()
        renamed = []
        for path in (self.log_path, self.offset_index.path, self.time_index.path):
            target = path.with_name(path.name + files.DELETED_SUFFIX)
            try:
                path.rename(target)
            except FileNotFoundError:
                continue
            renamed.append(target)
        return renamed

    def delete(self) -> None:
        """Close and remove the segment's files (log first). May block on disk."""
        self.close()
        files.unlink_if_exists(self.log_path)
        files.unlink_if_exists(self.offset_index.path)
        files.unlink_if_exists(self.time_index.path)

    def __repr__(self) -> str:
        return (
            f"LogSegment(base_offset={self.base_offset}, size={self.size}, "
            f"next_offset={self.next_offset})"
        )
