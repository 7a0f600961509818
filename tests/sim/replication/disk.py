"""A disk that loses what was not synced: the real storage on a real temp dir, with crashes.

Every sync of the partition log's files (:func:`rilke.storage.files.observe_syncs`) records the
file's content at that moment, by inode (renames keep it: ``raft.state`` is written to a temp
name, synced, renamed). :meth:`SimDisk.crash` then puts every file of a node's directory back
to its last synced content, plus, with the seeded torn-write knobs, a prefix of what was written
after it, or garbage in its place (a write torn by the power cut). A file never synced is
removed, or kept as a torn prefix. Not modelled: unlinks and renames are durable at once (the
storage fsyncs the directory right after each), and a synced file's content is what it held at
the sync (no reordering of writes within one sync).
"""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rilke.storage import files


@dataclass
class DiskStats:
    syncs: int = 0
    crashes: int = 0
    files_cut: int = 0
    bytes_lost: int = 0
    torn_tails: int = 0
    garbage_tails: int = 0
    files_lost: int = 0


class SimDisk:
    """Sync tracking for every node's directory under ``root`` (one per run)."""

    def __init__(self, root: Path, rng: random.Random, *, torn_probability: float) -> None:
        self.root = root
        self._rng = rng
        self.torn_probability = torn_probability
        self._synced: dict[tuple[int, int], bytes] = {}
        self.stats = DiskStats()
        self._stop: Callable[[], None] | None = None

    def __enter__(self) -> SimDisk:
        self._stop = files.observe_syncs(self._observe)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._stop()
            self._stop = None

    def _observe(self, fd: int) -> None:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return  # a directory: entries are durable at once in this model
        self.stats.syncs += 1
        # Opened again for reading: the descriptor may be write-only (the indexes' are).
        with open(f"/proc/self/fd/{fd}", "rb") as f:
            self._synced[(st.st_dev, st.st_ino)] = f.read()

    def crash(self, directory: Path) -> None:
        """Power loss for the node whose files are all under ``directory``: every file goes
        back to what was synced (see the module docstring). The node's descriptors must be
        closed first (:func:`close_fds_under`)."""
        self.stats.crashes += 1
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            st = path.stat()
            current = path.read_bytes()
            synced = self._synced.get((st.st_dev, st.st_ino))
            if synced is None:
                if not current or self._rng.random() >= self.torn_probability:
                    path.unlink()
                    self.stats.files_lost += 1
                    continue
                synced = b""
            unsynced = current[len(synced) :] if current.startswith(synced) else b""
            kept = synced + self._torn(unsynced)
            if kept != current:
                self.stats.files_cut += 1
                self.stats.bytes_lost += max(0, len(current) - len(kept))
                path.write_bytes(kept)
                # What the restarted node finds is what a sync would have left.
                st = path.stat()
                self._synced[(st.st_dev, st.st_ino)] = kept

    def _torn(self, unsynced: bytes) -> bytes:
        """What survives of ``unsynced``: usually nothing; else a prefix, or garbage."""
        rng = self._rng
        if not unsynced or rng.random() >= self.torn_probability:
            return b""
        cut = rng.randrange(len(unsynced))
        if rng.random() < 0.5:
            self.stats.torn_tails += 1
            return unsynced[:cut]
        self.stats.garbage_tails += 1
        return unsynced[:cut] + rng.randbytes(rng.randint(1, 64))


def close_fds_under(directory: Path) -> int:
    """Close every descriptor of this process open on a file under ``directory`` (a crashed
    node's: nothing of it may write again); how many. Linux (/proc/self/fd)."""
    prefix = str(directory.resolve()) + os.sep
    closed = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith(prefix) or target == prefix[:-1]:
            try:
                os.close(int(name))
            except OSError:
                continue
            closed += 1
    return closed
