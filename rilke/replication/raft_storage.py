"""The Raft log of a partition is its PartitionLog: a Raft :class:`Storage` over it.

There is no second copy of the data: an entry is the record batch stored in the log, its term
is the batch's partition leader epoch, and its index follows :mod:`rilke.replication.offsets`
(the batch's last offset + 1). No-op and configuration entries are control batches
(``RAFT_NOOP``, ``RAFT_CONFIG``), which consumers skip.

Next to the segments, the partition's folder holds ``raft.state``: the hard state (term, vote,
commit), the log start (snapshot index, term and configuration), the start of every term in
the log (Kafka's leader-epoch cache) and every configuration entry, plus how far of the log
those two lists cover. It is a CRC32C followed by JSON, replaced by atomic rename. So a
restart reads one small file and at most the tail of the log that was appended after the
file's last write, never the whole log.

Durability: :meth:`PartitionRaftStorage.persist` writes a Ready's snapshot, truncation and
entries to the log (a truncation is made durable at once, state file included, so an older
suffix cannot come back) and stages the hard state; :meth:`begin_flush` takes what must be
synced, ``FlushJob.run`` (any thread) fsyncs the log and then writes the state file, and
:meth:`end_flush` (the loop) counts it. The runtime runs one such window for every group of
the node at once (group commit). A commit-only hard state is written with the next state
write, or at close: a commit index lost in a crash is learnt again from the leader.

A group whose state machine is not its log (the metadata group) gives ``snapshots`` (its
:class:`SnapshotFiles`): a snapshot then carries the state as its payload, is saved as a file
before the log is trimmed (:meth:`PartitionRaftStorage.compact`) or reset to it (a snapshot
from the leader, in :meth:`persist`), and opening finishes a trim or reset that a crash
interrupted (the newest snapshot file that holds is the truth).

Not thread-safe except ``FlushJob.run``: one event loop drives a storage.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crc32c import crc32c

from rilke.errors import CorruptBatchError, ReplicationError
from rilke.records.builder import ControlType, build_control_batch
from rilke.records.header import (
    BASE_OFFSET_POS,
    LEADER_EPOCH_POS,
    BatchHeader,
    iter_headers,
    read_header,
)
from rilke.records.reader import read_records
from rilke.replication import offsets
from rilke.replication.raft.types import (
    NO_NODE,
    ConfChange,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Ready,
    Snapshot,
)
from rilke.replication.snapshot_files import SnapshotFiles
from rilke.storage import files
from rilke.storage.log import FlushJob, PartitionLog

logger = logging.getLogger(__name__)

STATE_FILE = "raft.state"
_STATE_VERSION = 1
# Control batches of Raft's own entries carry this timestamp on every replica, so the bytes
# of an entry are the same wherever it is stored (a clock read would differ per node).
CONTROL_TIMESTAMP_MS = 0
# Bytes read from the log per call when gathering entries.
_READ_CHUNK_BYTES = 1 << 20


class RaftStateError(ReplicationError):
    """A ``raft.state`` file that does not hold (bad CRC, not our format): refusing to guess
    a term or vote, which could let this node vote twice in a term."""


class EntryMismatchError(ReplicationError):
    """An entry whose batch disagrees with the entry (offset count, kind): bytes from another
    node are checked again before they are written, never trusted."""


@dataclass
class _State:
    term: int = 0
    vote: int = NO_NODE
    commit: int = 0
    snapshot_index: int = 0
    snapshot_term: int = 0
    snapshot_voters: list[int] = field(default_factory=list)
    snapshot_learners: list[int] = field(default_factory=list)
    epochs: list[tuple[int, int]] = field(default_factory=list)
    """(first Raft offset, term) of every term that starts in the log, ascending."""
    configs: list[tuple[int, int, str]] = field(default_factory=list)
    """(index, term, encoded ConfChange) of every CONFIG entry, ascending."""
    indexed_end: int = 0
    """The log end (Raft last index) that ``epochs`` and ``configs`` cover."""
    recovering: bool = False
    """HardState.recovering: the group's state was lost and has not yet caught up."""

    def encode(self) -> bytes:
        body = json.dumps(
            {
                "version": _STATE_VERSION,
                "term": self.term,
                "vote": self.vote,
                "commit": self.commit,
                "snapshot": [self.snapshot_index, self.snapshot_term],
                "voters": self.snapshot_voters,
                "learners": self.snapshot_learners,
                "epochs": self.epochs,
                "configs": self.configs,
                "indexed_end": self.indexed_end,
                "recovering": self.recovering,
            },
            separators=(",", ":"),
        ).encode()
        return crc32c(body).to_bytes(4, "big") + body

    @classmethod
    def decode(cls, data: bytes, path: Path) -> _State:
        if len(data) < 4 or int.from_bytes(data[:4], "big") != crc32c(data[4:]):
            raise RaftStateError(f"{path}: the CRC does not hold")
        try:
            doc: dict[str, Any] = json.loads(data[4:])
            if doc.get("version") != _STATE_VERSION:
                raise RaftStateError(f"{path}: unknown version {doc.get('version')!r}")
            snapshot_index, snapshot_term = doc["snapshot"]
            return cls(
                term=int(doc["term"]),
                vote=int(doc["vote"]),
                commit=int(doc["commit"]),
                snapshot_index=int(snapshot_index),
                snapshot_term=int(snapshot_term),
                snapshot_voters=[int(v) for v in doc["voters"]],
                snapshot_learners=[int(v) for v in doc["learners"]],
                epochs=[(int(a), int(b)) for a, b in doc["epochs"]],
                configs=[(int(a), int(b), str(c)) for a, b, c in doc["configs"]],
                indexed_end=int(doc["indexed_end"]),
                recovering=bool(doc.get("recovering", False)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise RaftStateError(f"{path}: not a Raft state file ({exc})") from exc


class StorageFlush:
    """What one group-commit window syncs for one group: the log's fsyncs, then the state file.

    ``run`` may be called on any thread; hand the object back to
    :meth:`PartitionRaftStorage.end_flush` (or ``abort_flush``) on the loop.
    """

    __slots__ = ("after_state", "job", "state_bytes", "state_path")

    def __init__(
        self,
        job: FlushJob | None,
        state_path: Path,
        state_bytes: bytes | None,
        after_state: Callable[[], None] | None = None,
    ) -> None:
        self.job = job
        self.state_path = state_path
        self.state_bytes = state_bytes
        self.after_state = after_state
        """Run right after the state file was written (the first one of a group here)."""

    def run(self) -> None:
        """fsync the log, then replace the state file (it must never describe entries the log
        might not hold durably). Blocks on disk; raises OSError."""
        if self.job is not None:
            self.job.run()
        if self.state_bytes is not None:
            files.atomic_write(self.state_path, self.state_bytes)
            if self.after_state is not None:
                self.after_state()


class PartitionRaftStorage:
    """The Raft Storage of one group over its PartitionLog (see the module docstring).

    Invariants: ``first_index() == log.log_start_offset + 1``, ``last_index() ==
    log.log_end_offset``; ``_state.epochs`` and ``_state.configs`` describe exactly the log's
    entries once opened; each persisted Ready is durable after its window's ``end_flush``.
    """

    def __init__(
        self,
        log: PartitionLog,
        state: _State,
        path: Path,
        snapshots: SnapshotFiles | None = None,
    ) -> None:
        self.log = log
        self._state = state
        self._path = path
        self.snapshots = snapshots
        self._snapshot_data = b""  # the payload of the snapshot at the log start
        self._state_dirty = False  # something beyond commit changed since the last write
        self.fresh = False
        """No state file was found at open (a new group here, or a wiped data dir)."""
        self.on_first_state: Callable[[], None] | None = None
        """While no state file has been synced here yet: run on the flush's thread right
        after the first one was (the node records the group as held: HeldGroups)."""
        self._commit_dirty = False

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        log: PartitionLog,
        *,
        state_dir: Path | None = None,
        snapshots: SnapshotFiles | None = None,
    ) -> PartitionRaftStorage:
        """The storage over ``log``, with ``raft.state`` in ``state_dir`` (default: the log's
        folder). Reconciles the state file with the log: lists beyond the log end (a tail cut
        by recovery) are dropped, and the tail appended after the file's last write is read.
        With ``snapshots``, the newest snapshot file that holds becomes the log start (a trim
        or reset interrupted by a crash is finished). Raises RaftStateError for a state file
        that does not hold, or a log trimmed past every snapshot file that holds."""
        path = (state_dir or log.directory) / STATE_FILE
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            state = _State()
            state.snapshot_index = offsets.snapshot_index(log.log_start_offset)
            state.indexed_end = state.snapshot_index
            fresh = True
        else:
            state = _State.decode(data, path)
            fresh = False
        storage = cls(log, state, path, snapshots)
        storage.fresh = fresh
        storage._reconcile()
        if snapshots is not None:
            storage._adopt_snapshot_files(snapshots)
        return storage

    def _adopt_snapshot_files(self, snapshots: SnapshotFiles) -> None:
        state = self._state
        start = state.snapshot_index
        snapshots.remove_leftovers()
        snap = snapshots.latest()
        if snap is None or snap.index < start:
            if start > 0:
                raise RaftStateError(
                    f"{self.log.directory}: the log starts after index {start}, but no snapshot "
                    f"file that holds covers it (files at {snapshots.indexes()} in "
                    f"{snapshots.directory}): the state cannot be rebuilt from this disk"
                )
            return
        _hard_state, conf = self.initial_state()
        if snap.index > start or (state.snapshot_term, conf) != (snap.term, snap.conf):
            # A trim or a reset a crash interrupted (or whose state file a window overwrote
            # with older bytes: the log start moved, the file's term and configuration rule).
            if snap.index <= self.last_index() and self.term(snap.index) == snap.term:
                logger.info("%s: finishing the trim to snapshot %d", self.log.directory, snap.index)
                self._trim_to(snap)
            else:
                logger.info(
                    "%s: finishing the reset to snapshot %d", self.log.directory, snap.index
                )
                self._reset_to(snap)
        self._snapshot_data = snap.data

    def _reconcile(self) -> None:
        state = self._state
        log = self.log
        end = offsets.last_index(log.log_end_offset)
        start = offsets.snapshot_index(log.log_start_offset)
        if start > state.snapshot_index:
            # Retention moved the log start: the entry ending there becomes the snapshot.
            state.snapshot_term = self._term_from_epochs(start) or state.snapshot_term
            state.snapshot_index = start
        if state.indexed_end > end:
            self._cut_lists(end + 1)
            state.indexed_end = end
            self._state_dirty = True
        if state.indexed_end < end:
            lo = max(state.indexed_end, state.snapshot_index) + 1
            logger.info(
                "%s: indexing Raft entries %d..%d appended after the last state write",
                log.directory,
                lo,
                end,
            )
            for entry in self._read_entries(lo, end, 1 << 62):
                self._index_entry(entry)
            state.indexed_end = end
            self._state_dirty = True
        state.commit = min(state.commit, end)

    # --- the Storage interface (read by the core) ---------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        state = self._state
        conf = ConfState(frozenset(state.snapshot_voters), frozenset(state.snapshot_learners))
        start = state.snapshot_index
        for index, _term, data in state.configs:
            if index <= start:  # below the log start (retention): part of the start's conf
                conf = ConfChange.decode(data.encode()).apply_to(conf)
        return HardState(state.term, state.vote, state.commit, state.recovering), conf

    def seed_conf(self, voters: Sequence[int]) -> bool:
        """Give a state that holds no log-start configuration ``voters`` as one (a new group,
        or a state file written before groups were seeded), so that the configuration at the
        log start, and the snapshot a lagging or new member is sent, are whole even once
        retention has moved the log start past CONFIG entries. Replaying the log's CONFIG
        entries over any seed that agrees on the members they never name gives the group's
        configuration (each change sets one node's role outright). Whether it seeded."""
        state = self._state
        if state.snapshot_voters or state.snapshot_learners or not voters:
            return False
        state.snapshot_voters = sorted(voters)
        self._state_dirty = True
        return True

    def first_index(self) -> int:
        return self._state.snapshot_index + 1

    def last_index(self) -> int:
        return offsets.last_index(self.log.log_end_offset)

    def term(self, index: int) -> int | None:
        state = self._state
        if index == state.snapshot_index:
            return state.snapshot_term
        if index < state.snapshot_index or index > self.last_index():
            return None
        return self._term_from_epochs(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        assert self.first_index() <= lo <= hi <= self.last_index(), (lo, hi)
        return self._read_entries(lo, hi, max_bytes)

    def snapshot(self) -> Snapshot:
        hard_state, conf = self.initial_state()
        del hard_state
        state = self._state
        return Snapshot(state.snapshot_index, state.snapshot_term, conf, self._snapshot_data)

    def config_entries(self) -> list[Entry]:
        start = self._state.snapshot_index
        return [
            Entry(term, index, data.encode(), EntryKind.CONFIG)
            for index, term, data in self._state.configs
            if index > start
        ]

    # --- what the caller writes ---------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        state = self._state
        return HardState(state.term, state.vote, state.commit, state.recovering)

    def persist(self, ready: Ready, *, now_ms: int) -> None:
        """Step 1 of the I/O order for ``ready``, up to the fsync: snapshot (the log reset to
        start after its index), truncation (durable at once), entries, hard state (staged).
        The window's :meth:`begin_flush` / ``run`` / :meth:`end_flush` make it durable.
        Raises EntryMismatchError, CorruptBatchError or NonContiguousOffsetError for entries
        that do not hold; nothing of the failing entry is written."""
        state = self._state
        if ready.snapshot is not None:
            if self.snapshots is not None:
                # The payload is durable before the log that it replaces is gone.
                self.snapshots.save(ready.snapshot)
            self._reset_to(ready.snapshot)
        if ready.truncate_from is not None:
            self.log.truncate_to(offsets.truncation_offset(ready.truncate_from))
            self._cut_lists(ready.truncate_from)
            state.indexed_end = self.last_index()
            self._write_state_now()
        for entry in ready.entries:
            self._append(entry, now_ms)
        if ready.entries:
            state.indexed_end = self.last_index()
        hs = ready.hard_state
        if hs is not None:
            if (hs.term, hs.vote, hs.recovering) != (state.term, state.vote, state.recovering):
                self._state_dirty = True
            elif hs.commit != state.commit:
                self._commit_dirty = True
            state.term, state.vote, state.commit = hs.term, hs.vote, hs.commit
            state.recovering = hs.recovering

    def rewind(self, ready: Ready) -> None:
        """Cut the log back to before ``ready``'s entries, so that persisting ``ready`` again
        (after a :meth:`persist` or a window of it failed, e.g. ENOSPC) writes them all again,
        contiguous, and syncs them: what the failed attempt left written (maybe not durable,
        maybe marked clean by a failed fsync) is removed. The entries before ``ready``'s were
        made durable by earlier windows. No-op when the log does not reach them. Blocks on
        disk (the truncation)."""
        if not ready.entries:
            return
        first = ready.entries[0].first_index
        cut = offsets.truncation_offset(first)
        if self.log.log_end_offset <= cut:
            return
        self.log.truncate_to(cut)
        self._cut_lists(first)
        self._state.indexed_end = self.last_index()
        self._state_dirty = True

    def _reset_to(self, snap: Snapshot) -> None:
        """Drop the whole log and start it after ``snap`` (durable at once)."""
        state = self._state
        self.log.truncate_fully_and_start_at(offsets.log_end_offset(snap.index))
        state.snapshot_index, state.snapshot_term = snap.index, snap.term
        state.snapshot_voters = sorted(snap.conf.voters)
        state.snapshot_learners = sorted(snap.conf.learners)
        state.epochs, state.configs = [], []
        state.indexed_end = snap.index
        self._snapshot_data = snap.data
        self._write_state_now()

    # --- trimming (a state machine's snapshot) -------------------------------------------------

    def snapshot_at(self, index: int, data: bytes, bootstrap: ConfState) -> Snapshot:
        """The snapshot whose payload ``data`` is the state machine after applying up to
        ``index`` (an entry boundary, committed, after the log start): its term and the
        configuration in force there (``bootstrap``, the group's Config voters and learners,
        when the log never had a snapshot, then every CONFIG entry up to ``index``). Save it,
        then :meth:`compact` to it. Raises ValueError for an index outside (log start,
        commit]."""
        state = self._state
        if not state.snapshot_index < index <= min(state.commit, self.last_index()):
            raise ValueError(
                f"{self.log.directory}: a snapshot at {index} is outside the log start "
                f"{state.snapshot_index} .. commit {state.commit}"
            )
        term = self.term(index)
        assert term is not None
        _hard_state, conf = self.initial_state()
        if not conf.voters and not conf.learners:
            conf = bootstrap
        for at, _term, data_text in state.configs:
            if state.snapshot_index < at <= index:
                conf = ConfChange.decode(data_text.encode()).apply_to(conf)
        return Snapshot(index, term, conf, data)

    def compact(self, snap: Snapshot) -> bool:
        """Trim the log below ``snap`` (from :meth:`snapshot_at`, already saved when the
        storage has ``snapshots``): it becomes the log start, the entries after it stay, and
        the segments wholly below it are deleted. False (nothing done) when the log already
        starts at or after it. Blocks on disk (the state file, segment deletion)."""
        if snap.index <= self._state.snapshot_index:
            return False
        assert snap.index <= self.last_index() and self.term(snap.index) == snap.term, (
            f"compacting to {snap.index}@{snap.term}, not an entry of this log"
        )
        self._trim_to(snap)
        return True

    def _trim_to(self, snap: Snapshot) -> None:
        state = self._state
        index = snap.index
        before = [e for e in state.epochs if e[0] <= index + 1]
        state.epochs = before[-1:] + [e for e in state.epochs if e[0] > index + 1]
        state.configs = [c for c in state.configs if c[0] > index]
        state.snapshot_index, state.snapshot_term = index, snap.term
        state.snapshot_voters = sorted(snap.conf.voters)
        state.snapshot_learners = sorted(snap.conf.learners)
        self._snapshot_data = snap.data
        # The state file first: a crash before the segments go leaves a log that merely holds
        # more than it needs (the log start is the state file's). A trim may run while a
        # group-commit window writes the state file on a worker thread (with bytes taken
        # before the trim): a temporary name of its own, and the next window writes it again,
        # so the file cannot stay older than the trim. Were it older at a crash, the log
        # start (the log's checkpoint) and the snapshot file still give the trim at open.
        files.atomic_write(self._path, self._state.encode(), unique_tmp=True)
        self._state_dirty = True
        self.log.delete_records_before(offsets.log_end_offset(index))

    def _append(self, entry: Entry, now_ms: int) -> None:
        base = offsets.base_offset(entry.first_index)
        if entry.kind is EntryKind.NORMAL:
            data = bytearray(entry.data)
            header = read_header(data)
            if header.last_offset_delta + 1 != entry.offset_count:
                raise EntryMismatchError(
                    f"{self.log.directory}: entry {entry.index} spans {entry.offset_count} "
                    f"offsets, its batch {header.last_offset_delta + 1}"
                )
            # Base offset and leader epoch lie outside the CRC: every replica stamps the same.
            data[BASE_OFFSET_POS : BASE_OFFSET_POS + 8] = base.to_bytes(8, "big", signed=True)
            data[LEADER_EPOCH_POS : LEADER_EPOCH_POS + 4] = entry.term.to_bytes(
                4, "big", signed=True
            )
            self.log.append(data, assign_offsets=False, now_ms=now_ms)
        else:
            if entry.offset_count != 1:
                raise EntryMismatchError(f"control entry {entry.index} must span one offset")
            control = (
                ControlType.RAFT_NOOP if entry.kind is EntryKind.NO_OP else ControlType.RAFT_CONFIG
            )
            batch = build_control_batch(
                control,
                entry.data,
                timestamp_ms=CONTROL_TIMESTAMP_MS,
                base_offset=base,
                partition_leader_epoch=entry.term,
            )
            self.log.append(batch, assign_offsets=False, now_ms=now_ms)
        self._index_entry(entry)

    def _index_entry(self, entry: Entry) -> None:
        state = self._state
        if not state.epochs or state.epochs[-1][1] < entry.term:
            state.epochs.append((entry.first_index, entry.term))
            self._state_dirty = True
        if entry.kind is EntryKind.CONFIG:
            state.configs.append((entry.index, entry.term, entry.data.decode("ascii")))
            self._state_dirty = True

    def _cut_lists(self, from_index: int) -> None:
        """Forget the terms and CONFIG entries at or after Raft offset ``from_index``."""
        state = self._state
        state.epochs = [(start, term) for start, term in state.epochs if start < from_index]
        state.configs = [c for c in state.configs if c[0] < from_index]

    def write_state(self) -> None:
        """Write the state file now (e.g. at once for a new group, so that its absence later
        means it was lost). Blocks on disk."""
        self._write_state_now()

    def _write_state_now(self) -> None:
        files.atomic_write(self._path, self._state.encode())
        self._state_dirty = self._commit_dirty = False
        first, self.on_first_state = self.on_first_state, None
        if first is not None:
            first()

    # --- group commit ---------------------------------------------------------------------------

    def begin_flush(self) -> StorageFlush | None:
        """Take what the next window must sync (None when nothing): the log's unsynced appends
        and, when term, vote, terms or configurations changed, the state file."""
        job = self.log.begin_flush()
        state_bytes = None
        if self._state_dirty:
            state_bytes = self._state.encode()
            self._state_dirty = self._commit_dirty = False
        if job is None and state_bytes is None:
            return None
        return self._flush(job, state_bytes)

    def _flush(self, job: FlushJob | None, state_bytes: bytes | None) -> StorageFlush:
        after = self.on_first_state if state_bytes is not None else None
        return StorageFlush(job, self._path, state_bytes, after)

    def end_flush(self, flush: StorageFlush) -> None:
        """Count a finished window (its ``run`` returned)."""
        if flush.job is not None:
            self.log.end_flush(flush.job)
        if flush.after_state is not None:
            self.on_first_state = None

    def abort_flush(self, flush: StorageFlush) -> None:
        """Give back a window whose ``run`` raised: the state is written again next time."""
        if flush.job is not None:
            self.log.abort_flush(flush.job)
        if flush.state_bytes is not None:
            self._state_dirty = True

    def close(self) -> None:
        """Write the state file if anything (even only the commit index) changed. The caller
        closes the log."""
        if self._state_dirty or self._commit_dirty:
            self.log.flush()
            self._write_state_now()

    # --- reading ------------------------------------------------------------------------------

    def _term_from_epochs(self, index: int) -> int | None:
        epochs = self._state.epochs
        pos = bisect.bisect_right(epochs, (index, 1 << 62)) - 1
        if pos < 0:
            return None
        return epochs[pos][1]

    def _read_entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        out: list[Entry] = []
        total = 0
        offset = offsets.storage_offset_of(lo)
        stop = offsets.log_end_offset(hi)  # batches whose base offset is below it
        while offset < stop:
            result = self.log.read(offset, _READ_CHUNK_BYTES, stop)
            buf = result.records
            if not buf:
                break
            for pos, header in iter_headers(buf, check=True):
                if header.base_offset >= stop:
                    return out
                batch = buf[pos : pos + header.size]
                entry = _entry_of(batch, header.partition_leader_epoch, header)
                if out and total + entry.size_bytes > max_bytes:
                    return out
                out.append(entry)
                total += entry.size_bytes
                offset = header.next_offset
        return out


def _entry_of(batch: bytes, term: int, header: BatchHeader) -> Entry:
    index = offsets.raft_index(header.last_offset)
    count = header.last_offset_delta + 1
    if not header.is_control:
        return Entry(term, index, batch, EntryKind.NORMAL, count)
    record = next(read_records(batch), None)
    if record is None:
        raise CorruptBatchError(f"control batch at offset {header.base_offset} has no record")
    control = record.control_type
    if control == ControlType.RAFT_NOOP:
        return Entry(term, index, b"", EntryKind.NO_OP, count)
    if control == ControlType.RAFT_CONFIG:
        return Entry(term, index, bytes(record.value or b""), EntryKind.CONFIG, count)
    # Another control batch (a transaction marker) is data to Raft.
    return Entry(term, index, batch, EntryKind.NORMAL, count)
