"""FileCache: a bounded LRU of the open descriptors of segment files, shared by a node.

Kafka keeps every segment's files open, so a node's descriptors grow with its partitions
times their segments; Redpanda bounds them with a cache. Here every segment file (a ``.log``
and its two indexes) is a :class:`CachedFile`: a path and the flags to open it with, and a
descriptor only while the file is in the cache. ``fd()`` returns the open descriptor (marking
the file most recently used) or opens it again; opening one more than ``max_open`` closes
the least recently used. A file closed that way loses nothing: writes went to the kernel
already (``pwrite``), buffered index entries live in memory until their next flush, and an
fsync through a descriptor opened later syncs the same file (Linux syncs the inode, whatever
descriptor wrote it). The active segment of a partition is the file its appends hit, so it
stays in the cache while it is busy; an idle one costs a path and a few integers.

Rules for callers: take ``fd()`` right at the system call that uses it and never keep the
number across a call that may open another cached file (that call may close it). Hand
another thread a duplicate (``os.dup(handle.fd())``), which the cache never closes and
which stays valid if the file is evicted, closed or renamed meanwhile (the flush and
compaction jobs of rilke.storage.log and rilke.storage.cleaner do so). Not thread-safe, like
the partition logs that use it: one thread (the event loop) uses a cache.
"""

from __future__ import annotations

import os
import resource
from collections import OrderedDict
from pathlib import Path

DEFAULT_MAX_OPEN_FILES_MIN = 64
# The share of the process's descriptor limit the cache may hold; the rest is left for
# sockets, the duplicates flush jobs hold meanwhile, and short-lived files.
_SHARE_OF_LIMIT = 0.5


def default_max_open_files() -> int:
    """Half of the soft RLIMIT_NOFILE (at least 64): the default budget of a node's cache."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 1 << 20
    return max(DEFAULT_MAX_OPEN_FILES_MIN, int(soft * _SHARE_OF_LIMIT))


class CachedFile:
    """One file of a segment: its path, how to open it again, and its descriptor while open.

    ``flags`` must not truncate (the file is reopened with them after an eviction): a file
    that must start empty is created with :meth:`FileCache.create`.
    """

    __slots__ = ("_cache", "_fd", "flags", "path")

    def __init__(self, cache: FileCache, path: Path, flags: int) -> None:
        assert not flags & os.O_TRUNC, "a cached file is reopened with its flags"
        self._cache = cache
        self.path = path
        self.flags = flags
        self._fd = -1

    def fd(self) -> int:
        """The open descriptor, opening the file (and maybe closing the least recently used
        one) if it is not in the cache. Raises OSError when the file cannot be opened."""
        fd = self._fd
        if fd >= 0:
            self._cache._lru.move_to_end(self)
            return fd
        return self._cache._open(self)

    @property
    def is_open(self) -> bool:
        """Whether the file holds a descriptor now (it is in the cache)."""
        return self._fd >= 0

    def close(self) -> None:
        """Close the descriptor if open; ``fd()`` opens it again. Idempotent."""
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            del self._cache._lru[self]
            os.close(fd)

    def __repr__(self) -> str:
        return f"CachedFile({self.path}, open={self.is_open})"


class FileCache:
    """At most ``max_open`` descriptors of :class:`CachedFile`s open at once, least recently
    used closed first. Counters ``opens`` and ``evictions`` say how often it had to."""

    def __init__(self, max_open: int) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self.max_open = max_open
        self._lru: OrderedDict[CachedFile, None] = OrderedDict()
        self.opens = 0
        self.evictions = 0

    def file(self, path: Path, flags: int = os.O_RDWR) -> CachedFile:
        """A cached file for ``path``, not opened yet (the first ``fd()`` opens it)."""
        return CachedFile(self, path, flags)

    def create(self, path: Path, flags: int = os.O_RDWR) -> CachedFile:
        """Create (or empty) ``path`` and return it open as a cached file, to be reopened
        later with ``flags``. Raises OSError. May block on disk."""
        handle = CachedFile(self, path, flags)
        self._admit(handle, os.open(path, flags | os.O_CREAT | os.O_TRUNC, 0o644))
        return handle

    @property
    def open_count(self) -> int:
        """Descriptors open now (never more than ``max_open``)."""
        return len(self._lru)

    def _open(self, handle: CachedFile) -> int:
        fd = os.open(handle.path, handle.flags, 0o644)
        self.opens += 1
        self._admit(handle, fd)
        return fd

    def _admit(self, handle: CachedFile, fd: int) -> None:
        handle._fd = fd
        lru = self._lru
        lru[handle] = None
        while len(lru) > self.max_open:
            victim, _ = lru.popitem(last=False)
            victim_fd, victim._fd = victim._fd, -1
            self.evictions += 1
            os.close(victim_fd)

    def close_all(self) -> None:
        """Close every descriptor (files reopen on their next ``fd()``)."""
        while self._lru:
            handle, _ = self._lru.popitem(last=False)
            fd, handle._fd = handle._fd, -1
            os.close(fd)

    def __repr__(self) -> str:
        return f"FileCache(open={len(self._lru)}/{self.max_open}, evictions={self.evictions})"
