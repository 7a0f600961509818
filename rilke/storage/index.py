"""The sparse offset and time indexes of one segment.

OffsetIndex: 8-byte big-endian entries (relative offset int32, position int32). An entry is
added for a batch when more than ``index_interval_bytes`` were appended since the last entry;
its relative offset is the batch's base offset minus the segment's base offset, and its
position is where the batch starts in the ``.log`` file. Rilke indexes base offsets (Kafka
indexes last offsets): the batch found at an entry's position must then carry exactly that base
offset, which lets a lookup check the entry it used.

TimeIndex: 12-byte big-endian entries (timestamp int64, relative offset int32), added at the
same moments as offset entries when the segment's largest timestamp grew: the timestamp is the
largest so far and the offset that of the batch holding it. Both columns strictly increase.

Entries live in memory (``array``) for lookups by bisection; the file is appended to in
batches (``flush``) and fsynced by ``sync``; the file's descriptor is a
:class:`~rilke.storage.handles.CachedFile`, open only while written to. Neither class is
thread-safe.
"""

from __future__ import annotations

import errno
import operator
import os
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right
from pathlib import Path

from rilke.storage.files import fdatasync
from rilke.storage.handles import FileCache


class IndexCorruptError(Exception):
    """An index file does not hold (internal: the segment rebuilds the index)."""


_TIME_ENTRY = struct.Struct(">qi")


def _strictly_increasing(values: array[int]) -> bool:
    return all(map(operator.lt, values, values[1:]))


class _IndexFile:
    """Entries already in the file plus a buffer of entries not yet written.

    The descriptor comes from a :class:`FileCache` (a private one of one file if none is
    given): opened when first written, and again after the cache closed it.
    """

    def __init__(
        self, path: Path, entry_size: int, written_entries: int, cache: FileCache | None = None
    ) -> None:
        self.path = path
        self.entry_size = entry_size
        self._written = written_entries
        self._pending = bytearray()
        self._handle = (cache or FileCache(1)).file(path, os.O_WRONLY | os.O_CREAT)

    def _open(self) -> int:
        return self._handle.fd()

    def add(self, entries: bytes) -> None:
        self._pending += entries

    @property
    def written(self) -> int:
        """Entries in the file."""
        return self._written

    @property
    def pending_entries(self) -> int:
        """Entries buffered, not yet in the file."""
        return len(self._pending) // self.entry_size

    def flush(self) -> None:
        """Write buffered entries to the file (no fsync). May block on disk."""
        fd = self._open() if self._pending else -1
        while self._pending:
            # A short write (a disk filling up) counts only the whole entries it wrote; the
            # rest stays pending, to be written over any partial entry next time.
            whole = os.pwrite(fd, self._pending, self._written * self.entry_size)
            whole //= self.entry_size
            self._written += whole
            del self._pending[: whole * self.entry_size]
            if not whole:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))

    def sync(self) -> None:
        """Write buffered entries and fsync the file. Blocks on disk."""
        self.flush()
        fdatasync(self._open())

    def dup_fd(self) -> int:
        """Write buffered entries and return a duplicate of the file's descriptor (the
        caller closes it): for an fsync elsewhere that outlives a close of this file."""
        self.flush()
        return os.dup(self._open())

    def truncate_entries(self, count: int) -> None:
        """Keep only the first ``count`` entries. May block on disk."""
        if count >= self._written:
            del self._pending[(count - self._written) * self.entry_size :]
            return
        self._pending.clear()
        os.ftruncate(self._open(), count * self.entry_size)
        self._written = count

    def clear(self) -> None:
        """Empty the file, whatever it held. May block on disk."""
        self._pending.clear()
        os.ftruncate(self._open(), 0)
        self._written = 0

    def close(self) -> None:
        """Write buffered entries and close the file; closed even when the write fails."""
        try:
            self.flush()
        finally:
            self._handle.close()


class OffsetIndex:
    """Sparse index of relative base offset -> file position for one segment."""

    ENTRY_SIZE = 8

    def __init__(self, path: Path, base_offset: int, cache: FileCache | None = None) -> None:
        self.path = path
        self.base_offset = base_offset
        self.offsets: array[int] = array("i")  # relative offsets, strictly increasing
        self.positions: array[int] = array("i")  # file positions, strictly increasing
        self._file = _IndexFile(path, self.ENTRY_SIZE, 0, cache)

    @classmethod
    def load(
        cls, path: Path, base_offset: int, log_size: int, cache: FileCache | None = None
    ) -> OffsetIndex:
        """Read and check an index file. Raises FileNotFoundError or IndexCorruptError.

        Checks: whole entries, both columns strictly increasing, positions inside the log.
        Blocks on disk (reads the file).
        """
        data = path.read_bytes()
        if len(data) % cls.ENTRY_SIZE:
            raise IndexCorruptError(f"{path}: size {len(data)} is not a multiple of 8")
        both = array("i")
        both.frombytes(data)
        if sys.byteorder == "little":
            both.byteswap()
        index = cls(path, base_offset, cache)
        index.offsets = both[0::2]
        index.positions = both[1::2]
        index._file = _IndexFile(path, cls.ENTRY_SIZE, len(index.offsets), cache)
        if index.offsets:
            if index.offsets[0] < 0 or index.positions[0] < 0:
                raise IndexCorruptError(f"{path}: negative entry")
            if index.positions[-1] >= log_size:
                raise IndexCorruptError(f"{path}: position past the end of the log")
            if not (_strictly_increasing(index.offsets) and _strictly_increasing(index.positions)):
                raise IndexCorruptError(f"{path}: entries out of order")
        return index

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def size_bytes(self) -> int:
        return len(self.offsets) * self.ENTRY_SIZE

    def append(self, offset: int, position: int) -> None:
        """Add an entry for the batch with base ``offset`` (absolute) at ``position``.

        Only the arrays change; ``flush`` writes the entries not yet in the file.
        """
        self.offsets.append(offset - self.base_offset)
        self.positions.append(position)

    def lookup(self, target_offset: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry with offset <= target, else (base, 0)."""
        i = bisect_right(self.offsets, target_offset - self.base_offset) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self.offsets[i], self.positions[i]

    def lookup_position(self, position: int) -> tuple[int, int]:
        """(offset, position) of the greatest entry with position <= ``position``."""
        i = bisect_right(self.positions, position) - 1
        if i < 0:
            return self.base_offset, 0
        return self.base_offset + self.offsets[i], self.positions[i]

    def last_entry(self) -> tuple[int, int]:
        """(offset, position) of the last entry, else (base, 0)."""
        if not self.offsets:
            return self.base_offset, 0
        return self.base_offset + self.offsets[-1], self.positions[-1]

    def truncate_to_position(self, position: int) -> None:
        """Drop entries at positions >= ``position``. May block on disk."""
        keep = bisect_left(self.positions, position)
        if keep < len(self.positions):
            del self.offsets[keep:]
            del self.positions[keep:]
            self._file.truncate_entries(keep)

    def reset(self) -> None:
        """Drop every entry (the caller rebuilds them). May block on disk."""
        del self.offsets[:]
        del self.positions[:]
        self._file.clear()

    def _stage(self) -> None:
        """Hand the entries not yet in the file to the file's buffer, packed big-endian."""
        start = self._file.written + self._file.pending_entries
        end = len(self.offsets)
        if end > start:
            both = array("i", bytes(8 * (end - start)))
            both[0::2] = self.offsets[start:end]
            both[1::2] = self.positions[start:end]
            if sys.byteorder == "little":
                both.byteswap()
            self._file.add(both.tobytes())

    def flush(self) -> None:
        self._stage()
        self._file.flush()

    def sync(self) -> None:
        self._stage()
        self._file.sync()

    def dup_fd(self) -> int:
        """Hand every entry to the OS; a duplicate descriptor of the file, to fsync."""
        self._stage()
        return self._file.dup_fd()

    def close(self) -> None:
        self._stage()
        self._file.close()


class TimeIndex:
    """Sparse index of largest timestamp so far -> relative offset of the batch holding it."""

    ENTRY_SIZE = 12

    def __init__(self, path: Path, base_offset: int, cache: FileCache | None = None) -> None:
        self.path = path
        self.base_offset = base_offset
        self.timestamps: array[int] = array("q")
        self.offsets: array[int] = array("i")
        self._file = _IndexFile(path, self.ENTRY_SIZE, 0, cache)

    @classmethod
    def load(cls, path: Path, base_offset: int, cache: FileCache | None = None) -> TimeIndex:
        """Read and check a time index file. Raises FileNotFoundError or IndexCorruptError.

        Blocks on disk (reads the file).
        """
        data = path.read_bytes()
        if len(data) % cls.ENTRY_SIZE:
            raise IndexCorruptError(f"{path}: size {len(data)} is not a multiple of 12")
        index = cls(path, base_offset, cache)
        for timestamp, relative in _TIME_ENTRY.iter_unpack(data):
            index.timestamps.append(timestamp)
            index.offsets.append(relative)
        index._file = _IndexFile(path, cls.ENTRY_SIZE, len(index.offsets), cache)
        if index.offsets:
            if index.offsets[0] < 0:
                raise IndexCorruptError(f"{path}: negative offset")
            if not (_strictly_increasing(index.timestamps) and _strictly_increasing(index.offsets)):
                raise IndexCorruptError(f"{path}: entries out of order")
        return index

    def __len__(self) -> int:
        return len(self.offsets)

    def last_timestamp(self) -> int:
        return self.timestamps[-1] if self.timestamps else -1

    def maybe_append(self, timestamp: int, offset: int) -> bool:
        """Add (timestamp, offset) if ``timestamp`` is larger than the last entry's."""
        if self.timestamps and timestamp <= self.timestamps[-1]:
            return False
        relative = offset - self.base_offset
        if self.offsets and relative <= self.offsets[-1]:
            return False
        self.timestamps.append(timestamp)
        self.offsets.append(relative)
        self._file.add(_TIME_ENTRY.pack(timestamp, relative))
        return True

    def lookup_before(self, timestamp: int) -> tuple[int, int] | None:
        """(timestamp, offset) of the last entry with timestamp < ``timestamp``, or None."""
        i = bisect_left(self.timestamps, timestamp) - 1
        if i < 0:
            return None
        return self.timestamps[i], self.base_offset + self.offsets[i]

    def last_entry(self) -> tuple[int, int] | None:
        if not self.offsets:
            return None
        return self.timestamps[-1], self.base_offset + self.offsets[-1]

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries for offsets >= ``offset``. May block on disk."""
        keep = bisect_left(self.offsets, offset - self.base_offset)
        if keep < len(self.offsets):
            del self.timestamps[keep:]
            del self.offsets[keep:]
            self._file.truncate_entries(keep)

    def reset(self) -> None:
        del self.timestamps[:]
        del self.offsets[:]
        self._file.clear()

    def flush(self) -> None:
        self._file.flush()

    def sync(self) -> None:
        self._file.sync()

    def dup_fd(self) -> int:
        """Hand every entry to the OS; a duplicate descriptor of the file, to fsync."""
        return self._file.dup_fd()

    def close(self) -> None:
        self._file.close()
