"""Snapshot files of a Raft group whose state machine is not its log (the metadata group).

A partition's log is its own state machine, so its snapshot is only a log start. The metadata
group's state is the applied metadata; to trim its log, that state is kept as a snapshot file
in ``<group dir>/snapshots/``, one file per snapshot, named by its Raft index (20 digits, so
``ls`` sorts them): ``00000000000000001234.snapshot``. Restart is the newest snapshot that
holds, then the log's tail after its index.

A file is ``RSNP``, a u32 version, a u32 CRC32C of everything after it, a u32 length and the
JSON header (index, term, voters, learners), then the payload. It is written by atomic rename
(:func:`rilke.storage.files.atomic_write`), so a crash leaves the old file or the new one,
never half of one; a file that does not hold is refused (:class:`SnapshotFileError`), never
read in part. The newest :data:`KEEP_SNAPSHOTS` are kept.

Blocking file I/O: call :meth:`SnapshotFiles.save` on a worker thread when the payload is
large. Any thread may call any method; saves of different indexes may overlap (each writes
its own file, and pruning keeps the newest by index, so the newest file always stays).
"""

from __future__ import annotations

import json
import logging
import struct
from pathlib import Path

from crc32c import crc32c

from rilke.errors import ReplicationError
from rilke.replication.raft.types import ConfState, Snapshot
from rilke.storage import files

logger = logging.getLogger(__name__)

SNAPSHOT_DIR = "snapshots"
SNAPSHOT_SUFFIX = ".snapshot"
KEEP_SNAPSHOTS = 2
"""Snapshots kept on disk: the newest, and one before it (a reader of the older one is never
left without a file)."""

_MAGIC = b"RSNP"
_VERSION = 1
_HEAD = struct.Struct(">4sII")  # magic, version, CRC32C of the rest
_LEN = struct.Struct(">I")


class SnapshotFileError(ReplicationError):
    """A snapshot file that does not hold (bad magic, version, CRC, header)."""


def snapshot_file_name(index: int) -> str:
    return f"{index:020d}{SNAPSHOT_SUFFIX}"


def encode_snapshot_file(snap: Snapshot) -> bytes:
    """The bytes of the file holding ``snap``."""
    header = json.dumps(
        {
            "index": snap.index,
            "term": snap.term,
            "voters": sorted(snap.conf.voters),
            "learners": sorted(snap.conf.learners),
        },
        separators=(",", ":"),
    ).encode()
    body = _LEN.pack(len(header)) + header + snap.data
    return _HEAD.pack(_MAGIC, _VERSION, crc32c(body)) + body


def decode_snapshot_file(data: bytes, where: str) -> Snapshot:
    """The snapshot a file's bytes hold; raises SnapshotFileError naming ``where``."""
    if len(data) < _HEAD.size + _LEN.size:
        raise SnapshotFileError(f"{where}: {len(data)} bytes is too short for a snapshot file")
    magic, version, crc = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        raise SnapshotFileError(f"{where}: not a snapshot file (magic {magic!r})")
    if version != _VERSION:
        raise SnapshotFileError(f"{where}: snapshot file version {version}, this build reads 1")
    body = memoryview(data)[_HEAD.size :]
    if crc32c(body) != crc:
        raise SnapshotFileError(f"{where}: the CRC does not hold (a torn or damaged file)")
    (size,) = _LEN.unpack_from(body)
    try:
        doc = json.loads(bytes(body[_LEN.size : _LEN.size + size]))
        index, term = int(doc["index"]), int(doc["term"])
        conf = ConfState(
            frozenset(int(v) for v in doc["voters"]), frozenset(int(v) for v in doc["learners"])
        )
    except (ValueError, KeyError, TypeError) as e:
        raise SnapshotFileError(f"{where}: the header does not hold ({e})") from None
    if index < 1 or term < 0:
        raise SnapshotFileError(f"{where}: index {index}, term {term} is not a snapshot's")
    return Snapshot(index, term, conf, bytes(body[_LEN.size + size :]))


class SnapshotFiles:
    """The snapshot files of one group (see the module docstring)."""

    def __init__(self, group_dir: Path) -> None:
        self.directory = Path(group_dir) / SNAPSHOT_DIR

    def indexes(self) -> list[int]:
        """The indexes of the snapshot files present, ascending (whether they hold or not)."""
        if not self.directory.is_dir():
            return []
        out = []
        for path in self.directory.iterdir():
            stem = path.name.removesuffix(SNAPSHOT_SUFFIX)
            if path.name.endswith(SNAPSHOT_SUFFIX) and stem.isdigit() and len(stem) == 20:
                out.append(int(stem))
        return sorted(out)

    def read(self, index: int) -> Snapshot:
        """The snapshot at ``index``; raises SnapshotFileError (FileNotFoundError if none)."""
        path = self.directory / snapshot_file_name(index)
        snap = decode_snapshot_file(path.read_bytes(), str(path))
        if snap.index != index:
            raise SnapshotFileError(f"{path}: holds the snapshot at {snap.index}, not {index}")
        return snap

    def latest(self) -> Snapshot | None:
        """The newest snapshot that holds (None when there is none). A newer file that does
        not hold is logged and passed over; the caller decides whether the one returned is
        enough (it is not when the log was trimmed past it)."""
        for index in reversed(self.indexes()):
            try:
                return self.read(index)
            except (SnapshotFileError, OSError) as e:
                logger.error("%s: passing over snapshot %d: %s", self.directory, index, e)
        return None

    def remove_leftovers(self) -> int:
        """Remove the temporary files of saves a crash interrupted (``*.tmp``); returns how
        many. Call at open, before any save."""
        if not self.directory.is_dir():
            return 0
        removed = 0
        for path in self.directory.iterdir():
            if path.name.endswith(files.TMP_SUFFIX):
                files.unlink_if_exists(path)
                removed += 1
        return removed

    def save(self, snap: Snapshot) -> None:
        """Write ``snap`` durably (atomic rename, directory fsynced), then remove all but the
        newest KEEP_SNAPSHOTS files. Blocks on disk; raises OSError."""
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            files.fsync_dir(self.directory.parent)
        path = self.directory / snapshot_file_name(snap.index)
        files.atomic_write(path, encode_snapshot_file(snap), unique_tmp=True)
        for index in self.indexes()[:-KEEP_SNAPSHOTS]:
            files.unlink_if_exists(self.directory / snapshot_file_name(index))
