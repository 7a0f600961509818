"""File names and durable file operations of the partition log.

Segment files are named by their base offset, zero-padded to 20 digits so that ``ls`` sorts
them numerically (``00000000000000000042.log``, ``.index``, ``.timeindex``). Small state files
are replaced atomically: written to a temporary name, fsynced, renamed over the old one, and the
directory fsynced so that the rename itself survives a crash.

Every function here may block on disk.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

from rilke.errors import KafkaStorageError

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIME_INDEX_SUFFIX = ".timeindex"
CLEANED_SUFFIX = ".cleaned"  # a compacted segment being written, not yet swapped in
TMP_SUFFIX = ".tmp"  # an atomic write in progress
DELETED_SUFFIX = ".deleted"  # a segment file renamed away by retention, to be unlinked

OFFSET_DIGITS = 20
# The longest file name, in bytes, of the file systems a data directory lives on (ext4, xfs,
# btrfs, tmpfs). Every name made from a topic name must fit it (see rilke.server.topics).
NAME_MAX_BYTES = 255


def name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system of ``directory`` allows, at most
    NAME_MAX_BYTES (NAME_MAX_BYTES when the system does not say). Blocks on disk."""
    try:
        limit = os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX_BYTES
    return min(limit, NAME_MAX_BYTES) if limit > 0 else NAME_MAX_BYTES


_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(error: BaseException) -> bool:
    """Whether ``error`` says the file system (or the user's quota) has no room left."""
    return isinstance(error, OSError) and error.errno in _DISK_FULL


def storage_error(error: OSError, directory: Path, action: str) -> KafkaStorageError:
    """The typed, retriable error for a disk operation that failed in ``directory`` (a
    partition's folder in a data directory): ``action`` says what was being done ("append
    to", "flush"). A full disk says so and names the data directory."""
    data_dir = directory.parent
    if is_disk_full(error):
        return KafkaStorageError(
            f"disk full: no space left on the file system of data dir {data_dir} (could not "
            f"{action} {directory.name}); writes succeed again once space is freed"
        )
    return KafkaStorageError(
        f"storage error in data dir {data_dir} (could not {action} {directory.name}): "
        f"{error.strerror or error}"
    )


SyncObserver = Callable[[int], None]
_sync_observers: list[SyncObserver] = []


def observe_syncs(observer: SyncObserver) -> Callable[[], None]:
    """Call ``observer(fd)`` after every sync of the partition log's files that returned (on
    the syncing thread); returns the function that stops it. For the deterministic
    simulation, which models a crash as the loss of everything not synced."""
    _sync_observers.append(observer)
    return lambda: _sync_observers.remove(observer)


def _synced(fd: int) -> None:
    for observer in _sync_observers:
        observer(fd)


def fdatasync(fd: int) -> None:
    """fdatasync where the platform has it (the file's data and the metadata needed to read
    it back, its size, without its timestamps), else fsync. Blocks on disk."""
    getattr(os, "fdatasync", os.fsync)(fd)
    if _sync_observers:
        _synced(fd)


def fsync(fd: int) -> None:
    """fsync (data and metadata; for a directory, its entries). Blocks on disk."""
    os.fsync(fd)
    if _sync_observers:
        _synced(fd)


def offset_to_name(offset: int) -> str:
    """The 20-digit zero-padded file stem for a base offset."""
    if offset < 0:
        raise ValueError(f"negative base offset {offset}")
    return f"{offset:0{OFFSET_DIGITS}d}"


def log_path(directory: Path, base_offset: int) -> Path:
    return directory / (offset_to_name(base_offset) + LOG_SUFFIX)


def index_path(directory: Path, base_offset: int) -> Path:
    return directory / (offset_to_name(base_offset) + INDEX_SUFFIX)


def time_index_path(directory: Path, base_offset: int) -> Path:
    return directory / (offset_to_name(base_offset) + TIME_INDEX_SUFFIX)


def parse_base_offset(name: str, suffix: str) -> int | None:
    """The base offset in a segment file name ending in ``suffix``, or None if it is not one."""
    if not name.endswith(suffix):
        return None
    stem = name[: -len(suffix)]
    if len(stem) != OFFSET_DIGITS or not stem.isdigit():
        return None
    return int(stem)


def fsync_dir(directory: Path) -> None:
    """fsync a directory, so that creations, renames and deletions in it are durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, unique_tmp: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    Writes ``path.tmp`` (``path.<random>.tmp`` with ``unique_tmp``, for writers that may
    overlap), fsyncs it, renames it over ``path`` and fsyncs the directory.
    """
    tmp = path.with_name(path.name + (f".{os.urandom(4).hex()}" if unique_tmp else "") + TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write all of ``data`` to ``fd`` (a regular file may take fewer bytes per call)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def unlink_if_exists(path: Path) -> bool:
    """Remove a file; True if it was there."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
