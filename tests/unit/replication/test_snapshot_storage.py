"""Snapshot files and the trimming of a Raft log below a state machine's snapshot: files that
do not hold are refused, a trimmed log restarts from the snapshot plus its tail, a snapshot
from the leader is saved before the log is reset, and a crash in the middle of either is
finished at the next open."""

from __future__ import annotations

from pathlib import Path

import pytest

from rilke.replication.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Ready,
    Snapshot,
)
from rilke.replication.raft_storage import PartitionRaftStorage, RaftStateError
from rilke.replication.snapshot_files import (
    KEEP_SNAPSHOTS,
    SnapshotFileError,
    SnapshotFiles,
    decode_snapshot_file,
    encode_snapshot_file,
    snapshot_file_name,
)
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

from .helpers import batch

LEARNER_4 = ConfChange(ConfChangeType.ADD_LEARNER, 4).encode()
VOTER_4 = ConfChange(ConfChangeType.ADD_VOTER, 4).encode()
VOTERS = ConfState(frozenset({1, 2, 3}))


def open_storage(directory: Path, segment_bytes: int = 1 << 30) -> PartitionRaftStorage:
    log = PartitionLog.open(
        directory, LogConfig(segment_bytes=segment_bytes), now_ms=0, recover=True
    )
    return PartitionRaftStorage.open(log, snapshots=SnapshotFiles(directory))


def sync(storage: PartitionRaftStorage) -> None:
    flush = storage.begin_flush()
    if flush is not None:
        flush.run()
        storage.end_flush(flush)


def fill(storage: PartitionRaftStorage, entries: int = 30, term: int = 1) -> None:
    """A no-op, a learner added and promoted, then data entries of 3 records each."""
    out = [
        Entry(term, 1, b"", EntryKind.NO_OP),
        Entry(term, 2, LEARNER_4, EntryKind.CONFIG),
        Entry(term, 3, VOTER_4, EntryKind.CONFIG),
    ]
    index = 3
    for _ in range(entries):
        index += 3
        out.append(
            Entry(
                term if index < 40 else term + 1, index, batch(3, b"x" * 200), EntryKind.NORMAL, 3
            )
        )
    storage.persist(Ready(entries=out, hard_state=HardState(term + 1, 1, index)), now_ms=0)
    sync(storage)


def close(storage: PartitionRaftStorage) -> None:
    storage.close()
    storage.log.close()


def test_a_snapshot_file_round_trips_and_damage_is_refused(tmp_path: Path) -> None:
    snap = Snapshot(42, 7, ConfState(frozenset({1, 2}), frozenset({5})), b"the state")
    data = encode_snapshot_file(snap)
    assert decode_snapshot_file(data, "f") == snap
    for i in (0, 5, 12, len(data) - 1):
        damaged = bytearray(data)
        damaged[i] ^= 0x40
        with pytest.raises(SnapshotFileError, match="f: "):
            decode_snapshot_file(bytes(damaged), "f")
    with pytest.raises(SnapshotFileError, match="too short"):
        decode_snapshot_file(data[:6], "f")


def test_the_newest_files_are_kept_and_a_damaged_newest_is_passed_over(tmp_path: Path) -> None:
    files = SnapshotFiles(tmp_path)
    assert files.latest() is None and files.indexes() == []
    for index in (10, 20, 30, 40):
        files.save(Snapshot(index, 1, VOTERS, str(index).encode()))
    assert files.indexes() == [30, 40][-KEEP_SNAPSHOTS:]
    latest = files.latest()
    assert latest is not None and latest.data == b"40"
    path = files.directory / snapshot_file_name(40)
    path.write_bytes(path.read_bytes()[:-1])  # torn
    latest = files.latest()
    assert latest is not None and latest.index == 30
    # A save a crash interrupted leaves a temporary file: removed, the snapshots kept.
    (files.directory / (snapshot_file_name(50) + ".1a2b3c4d.tmp")).write_bytes(b"half")
    assert files.remove_leftovers() == 1
    assert files.indexes() == [30, 40]


def test_compact_trims_below_the_snapshot_and_restart_is_snapshot_plus_tail(
    tmp_path: Path,
) -> None:
    storage = open_storage(tmp_path / "m", segment_bytes=2048)
    fill(storage)
    segments_before = len(storage.log.segments)
    last = storage.last_index()
    with pytest.raises(ValueError, match="outside"):
        storage.snapshot_at(last + 3, b"", VOTERS)
    snap = storage.snapshot_at(45, b"state at 45", VOTERS)
    # The configuration in force at 45: the learner promoted.
    assert snap == Snapshot(45, 2, ConfState(frozenset({1, 2, 3, 4})), b"state at 45")
    assert storage.snapshots is not None
    storage.snapshots.save(snap)
    assert storage.compact(snap)
    assert not storage.compact(snap)  # once
    assert storage.first_index() == 46 and storage.last_index() == last
    assert storage.snapshot() == snap
    assert storage.term(45) == 2 and storage.term(44) is None and storage.term(48) == 2
    assert storage.config_entries() == []
    assert len(storage.log.segments) < segments_before  # whole segments below it are gone
    assert storage.entries(46, last, 1 << 30)[0].index == 48
    close(storage)

    again = open_storage(tmp_path / "m")
    assert again.snapshot() == snap
    hard_state, conf = again.initial_state()
    assert conf == snap.conf and hard_state.commit == last
    assert again.first_index() == 46 and again.last_index() == last
    assert [e.index for e in again.entries(46, last, 1 << 30)][-1] == last
    close(again)


def test_a_trim_interrupted_after_the_file_was_saved_is_finished_at_open(
    tmp_path: Path,
) -> None:
    storage = open_storage(tmp_path / "m")
    fill(storage)
    snap = storage.snapshot_at(30, b"state at 30", VOTERS)
    assert storage.snapshots is not None
    storage.snapshots.save(snap)
    close(storage)  # a crash before compact
    again = open_storage(tmp_path / "m")
    assert again.snapshot() == snap
    assert again.first_index() == 31
    close(again)


def test_a_snapshot_from_the_leader_is_saved_before_the_log_is_reset(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "m")
    fill(storage, entries=3)
    snap = Snapshot(500, 6, ConfState(frozenset({1, 2, 3}), frozenset({9})), b"leader's state")
    storage.persist(Ready(snapshot=snap), now_ms=0)
    assert storage.snapshot() == snap and storage.last_index() == 500
    assert storage.snapshots is not None and storage.snapshots.indexes() == [500]
    storage.persist(
        Ready(
            entries=[Entry(6, 503, batch(3), EntryKind.NORMAL, 3)], hard_state=HardState(6, 2, 503)
        ),
        now_ms=0,
    )
    sync(storage)
    close(storage)
    again = open_storage(tmp_path / "m")
    assert again.snapshot() == snap and again.last_index() == 503
    assert again.initial_state()[1] == snap.conf
    close(again)


def test_a_reset_interrupted_after_the_file_was_saved_is_finished_at_open(
    tmp_path: Path,
) -> None:
    storage = open_storage(tmp_path / "m")
    fill(storage, entries=3)
    snap = Snapshot(500, 6, VOTERS, b"leader's state")
    assert storage.snapshots is not None
    storage.snapshots.save(snap)  # then a crash, before the log was reset
    close(storage)
    again = open_storage(tmp_path / "m")
    assert again.snapshot() == snap
    assert again.first_index() == 501 and again.last_index() == 500
    close(again)


def test_a_log_trimmed_past_every_snapshot_that_holds_is_refused(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "m")
    fill(storage)
    snap = storage.snapshot_at(30, b"state at 30", VOTERS)
    assert storage.snapshots is not None
    storage.snapshots.save(snap)
    storage.compact(snap)
    close(storage)
    path = tmp_path / "m" / "snapshots" / snapshot_file_name(30)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(RaftStateError, match="no snapshot file that holds covers it"):
        open_storage(tmp_path / "m")


def test_a_trim_during_a_window_that_writes_older_state_bytes_is_kept(tmp_path: Path) -> None:
    """The trim runs on the loop while a group-commit window (bytes taken before it) writes
    the state file on a worker thread: the next window writes it again, and a crash before
    that still opens at the trim (the log start and the snapshot file give it)."""
    storage = open_storage(tmp_path / "m", segment_bytes=2048)
    fill(storage)
    last = storage.last_index()
    # A new term in the state: the window takes the state file's bytes.
    storage.persist(Ready(hard_state=HardState(5, 2, last)), now_ms=0)
    flush = storage.begin_flush()
    assert flush is not None and flush.state_bytes is not None
    snap = storage.snapshot_at(45, b"state at 45", VOTERS)
    assert storage.snapshots is not None
    storage.snapshots.save(snap)
    assert storage.compact(snap)
    flush.run()  # the older bytes land after the trim's
    storage.end_flush(flush)
    again_flush = storage.begin_flush()
    assert again_flush is not None and again_flush.state_bytes is not None
    storage.log.close()  # a crash: the next window never ran
    again = open_storage(tmp_path / "m")
    assert again.first_index() == 46 and again.snapshot() == snap
    assert again.initial_state() == (HardState(5, 2, last), snap.conf)
    assert again.last_index() == last and again.term(48) == 2
    close(again)
