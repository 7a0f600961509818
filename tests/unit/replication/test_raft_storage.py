"""PartitionRaftStorage over a real PartitionLog: entries, terms, configs, restart, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

from rilke.errors import CorruptBatchError
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
from rilke.replication.raft_storage import (
    STATE_FILE,
    EntryMismatchError,
    PartitionRaftStorage,
    RaftStateError,
)
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

from .helpers import batch, open_storage

CONF = ConfChange(ConfChangeType.ADD_LEARNER, 4).encode()


def _fill(storage: PartitionRaftStorage) -> None:
    entries = [
        Entry(1, 1, b"", EntryKind.NO_OP),
        Entry(1, 3, batch(2), EntryKind.NORMAL, 2),
        Entry(2, 4, b"", EntryKind.NO_OP),
        Entry(2, 5, CONF, EntryKind.CONFIG),
        Entry(2, 8, batch(3), EntryKind.NORMAL, 3),
    ]
    storage.persist(Ready(entries=entries, hard_state=HardState(2, 1, 5)), now_ms=0)
    _sync(storage)


def _sync(storage: PartitionRaftStorage) -> None:
    flush = storage.begin_flush()
    if flush is not None:
        flush.run()
        storage.end_flush(flush)


def test_entries_read_back_as_written(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    _fill(storage)
    got = storage.entries(1, 8, 1 << 30)
    assert [(e.index, e.term, e.kind, e.offset_count) for e in got] == [
        (1, 1, EntryKind.NO_OP, 1),
        (3, 1, EntryKind.NORMAL, 2),
        (4, 2, EntryKind.NO_OP, 1),
        (5, 2, EntryKind.CONFIG, 1),
        (8, 2, EntryKind.NORMAL, 3),
    ]
    assert got[3].data == CONF
    assert [storage.term(i) for i in range(10)] == [0, 1, 1, 1, 2, 2, 2, 2, 2, None]
    # Overlapping ranges start at the entry holding lo; max_bytes keeps at least one entry.
    assert [e.index for e in storage.entries(2, 4, 1 << 30)] == [3, 4]
    assert [e.index for e in storage.entries(2, 8, 1)] == [3]
    assert [e.index for e in storage.config_entries()] == [5]


def test_restart_reads_the_state_file_not_the_log(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    _fill(storage)
    storage.close()
    storage.log.close()
    again = open_storage(tmp_path / "t-0")
    assert again.initial_state() == (HardState(2, 1, 5), ConfState(frozenset()))
    assert [e.index for e in again.config_entries()] == [5]
    assert again.term(8) == 2 and again.term(3) == 1
    assert again.last_index() == 8


def test_tail_written_after_the_state_file_is_indexed_at_open(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    _fill(storage)
    # Entries appended and synced, but the state file of that window never written (a crash).
    storage.persist(
        Ready(entries=[Entry(3, 9, b"", EntryKind.NO_OP), Entry(3, 10, CONF, EntryKind.CONFIG)]),
        now_ms=0,
    )
    storage.log.flush()
    storage.log.close()
    again = open_storage(tmp_path / "t-0")
    assert again.term(9) == 3
    assert [e.index for e in again.config_entries()] == [5, 10]


def test_truncation_is_durable_and_forgets_terms_and_configs(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    _fill(storage)
    storage.persist(Ready(truncate_from=5, entries=[Entry(3, 5, b"", EntryKind.NO_OP)]), now_ms=0)
    _sync(storage)
    assert storage.config_entries() == []
    assert storage.term(4) == 2 and storage.term(5) == 3
    storage.log.close()
    again = open_storage(tmp_path / "t-0")
    assert again.last_index() == 5 and again.term(5) == 3
    assert again.config_entries() == []


def test_truncation_to_zero_and_snapshot(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    _fill(storage)
    storage.persist(Ready(truncate_from=1), now_ms=0)
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    snap = Snapshot(20, 4, ConfState(frozenset({1, 2, 3})))
    storage.persist(Ready(snapshot=snap), now_ms=0)
    assert storage.log.log_start_offset == 20 == storage.last_index()
    assert storage.term(20) == 4 and storage.first_index() == 21
    storage.log.close()
    again = open_storage(tmp_path / "t-0")
    assert again.snapshot() == snap


def test_a_batch_that_disagrees_with_its_entry_is_refused(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    with pytest.raises(EntryMismatchError):
        storage.persist(Ready(entries=[Entry(1, 2, batch(3), EntryKind.NORMAL, 2)]), now_ms=0)
    bad = bytearray(batch(1))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError):
        storage.persist(Ready(entries=[Entry(1, 1, bytes(bad), EntryKind.NORMAL, 1)]), now_ms=0)
    assert storage.last_index() == 0


def test_a_corrupt_state_file_is_refused(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    _fill(storage)
    storage.log.close()
    path = tmp_path / "t-0" / STATE_FILE
    data = bytearray(path.read_bytes())
    data[10] ^= 1
    path.write_bytes(bytes(data))
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(), now_ms=0, recover=True)
    with pytest.raises(RaftStateError, match="CRC"):
        PartitionRaftStorage.open(log)


def test_seeded_conf_is_the_log_starts_and_the_snapshots(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    assert storage.seed_conf([3, 1, 2])
    assert not storage.seed_conf([7])  # once only: the state holds one now
    _fill(storage)  # holds ADD_LEARNER 4 at index 5
    assert storage.initial_state()[1] == ConfState(frozenset({1, 2, 3}), frozenset())
    # Retention moves the log start past the CONFIG entry: the start's configuration and the
    # snapshot a new member is sent still name every voter, and the learner.
    storage._state.snapshot_index, storage._state.snapshot_term = 6, 2
    storage._state_dirty = True
    want = ConfState(frozenset({1, 2, 3}), frozenset({4}))
    assert storage.initial_state()[1] == want
    assert storage.snapshot().conf == want
    _sync(storage)
    storage.log.close()
    again = open_storage(tmp_path / "t-0")
    assert not again.seed_conf([9])
    assert again.initial_state()[1] == want
