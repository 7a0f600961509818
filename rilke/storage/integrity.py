"""Corrupt ranges: bytes of a segment that do not form valid batches, found and kept.

A segment's bytes can go bad after they were written and fsynced (a bit flip on the disk, a
firmware bug, an operator's editor). Such damage is not a torn tail: the batches after it are
intact, acknowledged and durable. So damage found anywhere but in the unflushed tail after an
unclean stop is never cut: it becomes a :class:`CorruptRange` of the segment, from the first
batch that does not hold to the next batch that does (found again by :func:`find_next_batch`),
and the offsets it held. Reads over a range answer CORRUPT_MESSAGE with the offset to skip to;
everything before and after it stays served. The ranges of a partition are kept in its
``corrupt-ranges`` file (written atomically), so they survive restarts: on open each range is
checked again and kept while its bytes still do not hold.

A replicated partition will repair a range from another replica through
:class:`RangeRepairer`. This module holds the pure parts (the range, its file, the scans over
a descriptor); the segment and the log hold the ranges. The scans read with ``pread`` on the
descriptor they are given and touch nothing else, so they may run on any thread (the
scrubber runs them on a worker thread over a duplicated descriptor).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rilke.errors import RecordsError
from rilke.records.header import (
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    MAGIC_POS,
    check_batch,
    header_struct,
)
from rilke.storage import files

log = logging.getLogger(__name__)

CORRUPT_RANGES_FILE = "corrupt-ranges"
_FILE_MAGIC = "rilke-corrupt-ranges 1"
_MIN_LENGTH = HEADER_SIZE - LOG_OVERHEAD
_BASE_LENGTH = header_struct("base_offset", "batch_length")
_MAGIC_BYTE = bytes([MAGIC])
_SCAN_CHUNK = 1 << 20


@dataclass(frozen=True, order=True)
class CorruptRange:
    """Bytes ``[position, end)`` of the segment ``segment_base`` that do not form valid
    batches, and the offsets ``[first_offset, next_offset)`` they held.

    ``position`` is where the first batch that does not hold begins (the end of the last good
    batch before it); ``end`` is where the next good batch begins, or the file's end.
    ``next_offset`` is the offset to skip to: the base offset of that next good batch, or the
    next segment's base offset. Invariants: position < end, first_offset <= next_offset (equal
    for bytes that held no offsets of their own: garbage between two good batches).
    """

    segment_base: int
    position: int
    end: int
    first_offset: int
    next_offset: int

    def __post_init__(self) -> None:
        assert self.position < self.end, self
        assert self.first_offset <= self.next_offset, self

    def describe(self, directory: Path) -> str:
        """One line for the log: the file, the byte positions and the offsets."""
        return (
            f"{files.log_path(directory, self.segment_base)}: bytes {self.position}-"
            f"{self.end - 1} ({self.end - self.position} bytes) do not hold; offsets "
            f"{self.first_offset}-{self.next_offset - 1} cannot be served (next good offset "
            f"{self.next_offset})"
        )


class RangeRepairer(Protocol):
    """Whoever can replace a corrupt range with good bytes: a replicated partition, from
    another replica. Nothing implements it yet (a single node has no other copy, so its
    ranges stay reported and refused).

    The log (:meth:`PartitionLog.set_repairer`) calls ``corrupt_range_found`` on its own
    thread right after recording a range found by a read or the scrubber; it must not block.
    The repairer fetches the batches of offsets ``[first_offset, next_offset)`` from a
    replica whose copy holds and hands them to :meth:`PartitionLog.repair_corrupt_range` on
    the log's thread, which checks them (CRC, offsets: a replica never trusts the wire),
    rewrites the segment with them and forgets the range. Ranges found at open are in
    :meth:`PartitionLog.corrupt_ranges` for the repairer to take on when it starts.
    """

    def corrupt_range_found(self, directory: Path, corrupt: CorruptRange) -> None: ...


def check_batch_at(fd: int, position: int, end: int) -> tuple[int, int] | None:
    """(size, last offset) of a whole batch at ``position`` whose header and CRC hold and that
    ends within ``end``, else None. Reads the batch (one pread)."""
    head = os.pread(fd, LOG_OVERHEAD, position)
    if len(head) < LOG_OVERHEAD:
        return None
    _, length = _BASE_LENGTH.unpack(head)
    if length < _MIN_LENGTH or position + LOG_OVERHEAD + length > end:
        return None
    data = os.pread(fd, LOG_OVERHEAD + length, position)
    try:
        header = check_batch(data)
    except RecordsError:
        return None
    return header.size, header.last_offset


def find_next_batch(
    fd: int, start: int, end: int, *, min_base: int, max_next: int | None
) -> tuple[int, int] | None:
    """(position, base offset) of the first whole batch that holds (header and CRC) in
    ``[start, end)``, with a base offset >= ``min_base`` and (when given) a last offset below
    ``max_next``; None if there is none.

    The search tries every position whose magic byte is 2 and whose base offset and length
    are plausible, so it costs a pass over the bytes and a CRC per candidate: it runs only
    where damage was found. A false match would need a matching CRC32C as well. Blocks on
    disk.
    """
    position = start
    while position + HEADER_SIZE <= end:
        chunk = os.pread(fd, min(_SCAN_CHUNK, end - position), position)
        if len(chunk) < HEADER_SIZE:
            return None
        limit = len(chunk) - HEADER_SIZE  # the last candidate whose header is in the chunk
        i = chunk.find(_MAGIC_BYTE, MAGIC_POS) - MAGIC_POS
        while 0 <= i <= limit:
            base, length = _BASE_LENGTH.unpack_from(chunk, i)
            candidate = position + i
            if (
                base >= min_base
                and (max_next is None or base < max_next)
                and length >= _MIN_LENGTH
                and candidate + LOG_OVERHEAD + length <= end
            ):
                found = check_batch_at(fd, candidate, end)
                if found is not None and (max_next is None or found[1] < max_next):
                    return candidate, base
            i = chunk.find(_MAGIC_BYTE, i + MAGIC_POS + 1) - MAGIC_POS
        position += limit + 1
    return None


def locate(
    fd: int,
    segment_base: int,
    position: int,
    end: int,
    *,
    first_offset: int,
    next_offset_hint: int | None,
) -> CorruptRange | None:
    """The corrupt range that starts at ``position`` (a batch that does not hold) in a
    segment whose whole batches end at ``end``: up to the next batch that holds, or to
    ``end``, in which case its offsets end at ``next_offset_hint`` (the next segment's base
    offset, or the log end known otherwise). ``first_offset``: one past the last good
    offset before ``position``. None when the offsets cannot be known (the damage reaches
    ``end`` and there is no hint past ``first_offset``). Blocks on disk.
    """
    found = find_next_batch(fd, position + 1, end, min_base=first_offset, max_next=next_offset_hint)
    if found is not None:
        return CorruptRange(segment_base, position, found[0], first_offset, found[1])
    if next_offset_hint is None or next_offset_hint < first_offset:
        return None
    return CorruptRange(segment_base, position, end, first_offset, next_offset_hint)


# --- the corrupt-ranges file ----------------------------------------------------------------


def read_ranges(directory: Path) -> list[CorruptRange]:
    """The ranges recorded in ``directory`` (empty when none; an unreadable file is logged
    and ignored: the ranges are then found again by reads and the scrubber)."""
    path = directory / CORRUPT_RANGES_FILE
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        log.error("%s: unreadable: %s", path, exc)
        return []
    ranges: list[CorruptRange] = []
    try:
        if not lines or lines[0] != _FILE_MAGIC:
            raise ValueError("bad magic")
        for line in lines[1:]:
            if line.strip():
                a, b, c, d, e = (int(word) for word in line.split())
                ranges.append(CorruptRange(a, b, c, d, e))
    except (ValueError, AssertionError) as exc:
        log.error("%s: unreadable: %s", path, exc)
        return []
    return sorted(ranges)


def write_ranges(directory: Path, ranges: list[CorruptRange]) -> None:
    """Replace the ranges recorded in ``directory`` (atomically; removes the file when there
    are none). Blocks on disk (fsyncs)."""
    path = directory / CORRUPT_RANGES_FILE
    if not ranges:
        if path.exists():
            path.unlink()
            files.fsync_dir(directory)
        return
    lines = [_FILE_MAGIC] + [
        f"{r.segment_base} {r.position} {r.end} {r.first_offset} {r.next_offset}"
        for r in sorted(ranges)
    ]
    files.atomic_write(path, ("\n".join(lines) + "\n").encode())
