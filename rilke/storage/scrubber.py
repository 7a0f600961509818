"""The scrubber: checks the CRCs of what the broker stored, in the background.

A batch is checked when it is appended, and never again: a bit that flips on the disk later
would be served as is (a client that does not check CRCs, librdkafka's default, would take it
as data). The scrubber walks the sealed segments of every partition, partition by partition
and segment by segment, and checks every batch (header, CRC, offsets that increase), a
bounded number of bytes per step. A batch that does not hold is handed to
:meth:`PartitionLog.record_corrupt_range`, the same handling as damage found by a read or at
start (reported, refused by reads with the offset to skip to, kept across restarts).

Split in three like compaction, so that the reading runs off the log's thread:
:meth:`Scrubber.plan` (on the logs' thread) takes a duplicated descriptor of the next stretch
of a segment as a :class:`ScrubJob`; ``job.run()`` reads and checks it on any thread (it
touches only that descriptor); :meth:`Scrubber.finish` (the logs' thread again) records what
it found and moves the cursor on. The rate is the caller's to bound (bytes per step, and the
pause between steps). The active segment is not scrubbed (it is being written; its torn
tail, if any, is recovery's to cut).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rilke.errors import RecordsError
from rilke.records.header import check_batch, peek_size
from rilke.storage import integrity
from rilke.storage.integrity import CorruptRange
from rilke.storage.log import PartitionLog
from rilke.storage.segment import LogSegment

log = logging.getLogger(__name__)

_MIN_READ = 64 << 10  # one pread per step at least this large (fewer system calls)

PartitionKey = tuple[str, int]


@dataclass
class ScrubStats:
    """Counters since the scrubber started (for the log and, later, the metrics endpoint).

    ``corrupt_batches_found`` counts batches found not to hold (each begins one corrupt
    range; the range may hold more bad bytes after it)."""

    batches_scrubbed: int = 0
    bytes_scrubbed: int = 0
    corrupt_batches_found: int = 0
    segments_scrubbed: int = 0
    passes_completed: int = 0


@dataclass
class _Cursor:
    key: PartitionKey
    segment: LogSegment
    position: int  # a batch boundary
    expected: int  # the least base offset the batch at position may have


class ScrubJob:
    """Check the batches of one segment in ``[start, end)``, up to about ``max_bytes``.

    ``run`` may run on any thread; afterwards hand the job to :meth:`Scrubber.finish` on the
    logs' thread (also when ``run`` raised: then set ``failed``, and the rest of the segment
    is skipped for this pass). Results: ``position`` and ``expected`` (where the
    next step goes on), ``batches`` and ``bytes_checked``, and ``damage`` (a corrupt range that
    begins at ``position``, or None).
    """

    def __init__(
        self,
        cursor: _Cursor,
        fd: int,
        *,
        end: int,
        next_offset_hint: int,
        max_bytes: int,
        known: list[CorruptRange],
    ) -> None:
        self.key = cursor.key
        self.segment = cursor.segment
        self._fd = fd
        self._end = end
        self._hint = next_offset_hint
        self._max_bytes = max_bytes
        self._known = known
        self.position = cursor.position
        self.expected = cursor.expected
        self.batches = 0
        self.bytes_checked = 0
        self.damage: CorruptRange | None = None
        self.failed = False

    def run(self) -> None:
        """Read and check; stops after ``max_bytes`` (at least one batch), at the segment's
        end, or at the first batch that does not hold (then locates the corrupt range).
        Blocks on disk."""
        position, expected = self.position, self.expected
        budget = self._max_bytes
        while position < self._end and self.bytes_checked < budget and self.damage is None:
            known = next((r for r in self._known if r.position == position), None)
            if known is not None:
                position, expected = known.end, known.next_offset
                continue
            stop = min([self._end] + [r.position for r in self._known if r.position > position])
            want = min(max(budget - self.bytes_checked, _MIN_READ), stop - position)
            buf = os.pread(self._fd, want, position)
            rel = 0
            while rel < len(buf):
                size = peek_size(buf, rel)
                if (
                    size is not None
                    and size > len(buf) - rel
                    and rel == 0
                    and size <= stop - position
                ):
                    buf = os.pread(self._fd, size, position)  # one batch larger than a step
                if size is None or size > len(buf) - rel:
                    if rel == 0:
                        self._found(position, expected)
                    break
                try:
                    header = check_batch(buf, rel)
                except RecordsError:
                    self._found(position, expected)
                    break
                if header.base_offset < expected:
                    self._found(position, expected)
                    break
                self.batches += 1
                self.bytes_checked += size
                position += size
                rel += size
                expected = header.next_offset
                if self.bytes_checked >= budget:
                    break
        self.position, self.expected = position, expected

    def _found(self, position: int, expected: int) -> None:
        bad = integrity.locate(
            self._fd,
            self.segment.base_offset,
            position,
            self._end,
            first_offset=expected,
            next_offset_hint=self._hint,
        )
        if bad is None:  # cannot happen with a hint; be safe: note bytes to the end
            bad = CorruptRange(self.segment.base_offset, position, self._end, expected, expected)
        self.damage = bad

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Scrubber:
    """Walks the sealed segments of the logs ``logs()`` returns, one step at a time.

    Not thread-safe: ``plan`` and ``finish`` run on the logs' thread; only ``ScrubJob.run``
    may run elsewhere. One job at a time.
    """

    def __init__(self, logs: Callable[[], Mapping[PartitionKey, PartitionLog]]) -> None:
        self._logs = logs
        self._cursor: _Cursor | None = None
        self._pass_bytes = 0
        self.stats = ScrubStats()

    def plan(self, max_bytes: int) -> ScrubJob | None:
        """The next step (about ``max_bytes``, at least one batch), or None at the end of a
        pass or when there is nothing sealed to check (the caller waits before asking
        again). May block on disk (dup of a descriptor)."""
        assert max_bytes > 0
        logs = self._logs()
        cursor = self._next_cursor(logs)
        if cursor is None:
            return None
        plog = logs[cursor.key]
        segments = plog.segments
        index = next(i for i, s in enumerate(segments) if s is cursor.segment)
        hint = segments[index + 1].base_offset
        fd = cursor.segment.dup_log_fd()
        return ScrubJob(
            cursor,
            fd,
            end=cursor.segment.size,
            next_offset_hint=hint,
            max_bytes=max_bytes,
            known=list(cursor.segment.corrupt),
        )

    def finish(self, job: ScrubJob) -> None:
        """Record what ``job`` found (a corrupt range goes to the log, reported there) and
        move on. Blocks on disk when it records a range (the ranges file)."""
        job.close()
        stats = self.stats
        stats.batches_scrubbed += job.batches
        stats.bytes_scrubbed += job.bytes_checked
        self._pass_bytes += job.bytes_checked
        position, expected = job.position, job.expected
        if job.damage is not None:
            stats.corrupt_batches_found += 1
            plog = self._logs().get(job.key)
            if plog is not None and not plog.closed:
                plog.record_corrupt_range(job.segment, job.damage)
            position, expected = job.damage.end, job.damage.next_offset
        if job.failed:  # the caller could not run it (a read error, logged there)
            position = job.segment.size
        self._cursor = _Cursor(job.key, job.segment, position, expected)
        if position >= job.segment.size:
            stats.segments_scrubbed += 1

    def _next_cursor(self, logs: Mapping[PartitionKey, PartitionLog]) -> _Cursor | None:
        """Where the next step starts: on in the cursor's segment, else the next sealed
        segment of its log, else the first of the next log; None at the end of a pass."""
        keys = sorted(logs)
        cursor = self._cursor
        if cursor is not None:
            plog = logs.get(cursor.key)
            if plog is not None and not plog.closed:
                sealed = plog.segments[:-1]
                if any(s is cursor.segment for s in sealed):
                    if cursor.position < cursor.segment.size:
                        return cursor
                    after = [s for s in sealed if s.base_offset > cursor.segment.base_offset]
                    if after:
                        return _Cursor(cursor.key, after[0], 0, after[0].base_offset)
                else:
                    # Replaced (compaction) or deleted: on with the next segment after its base.
                    after = [s for s in sealed if s.base_offset >= cursor.segment.base_offset]
                    if after:
                        return _Cursor(cursor.key, after[0], 0, after[0].base_offset)
            later = [k for k in keys if k > cursor.key]
        else:
            later = keys
        for key in later:
            plog = logs[key]
            if plog.closed:
                continue
            sealed = plog.segments[:-1]
            if sealed:
                return _Cursor(key, sealed[0], 0, sealed[0].base_offset)
        if cursor is not None:
            self.stats.passes_completed += 1
            log.info(
                "scrub pass %d done: %d bytes checked; %d corrupt batch(es) found so far",
                self.stats.passes_completed,
                self._pass_bytes,
                self.stats.corrupt_batches_found,
            )
            self._pass_bytes = 0
        self._cursor = None
        return None
