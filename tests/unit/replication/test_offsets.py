"""The Raft index <-> storage offset mapping at its boundaries."""

from __future__ import annotations

from pathlib import Path

import pytest

from rilke.replication import offsets
from rilke.replication.raft.types import Entry, EntryKind, HardState, Ready

from .helpers import batch, open_storage


def test_empty_log_is_index_zero() -> None:
    assert offsets.last_index(0) == 0
    assert offsets.snapshot_index(0) == 0
    assert offsets.log_end_offset(0) == 0


def test_first_batch() -> None:
    # A batch at storage offsets 0..2 is the Raft entry spanning Raft offsets 1..3, index 3.
    assert offsets.base_offset(1) == 0
    assert offsets.raft_index(2) == 3
    assert offsets.last_offset(3) == 2
    assert offsets.storage_offset_of(1) == 0
    assert offsets.log_end_offset(3) == 3  # the high watermark of commit index 3


def test_truncation_to_zero() -> None:
    assert offsets.truncation_offset(1) == 0


def test_refuses_impossible_values() -> None:
    with pytest.raises(AssertionError):
        offsets.raft_index(-1)
    with pytest.raises(AssertionError):
        offsets.last_offset(0)
    with pytest.raises(AssertionError):
        offsets.base_offset(0)


def test_mapping_over_a_real_log(tmp_path: Path) -> None:
    storage = open_storage(tmp_path / "t-0")
    assert (storage.first_index(), storage.last_index()) == (1, 0)
    assert storage.term(0) == 0
    assert storage.term(1) is None
    entries = [Entry(1, 3, batch(3), EntryKind.NORMAL, 3), Entry(1, 4, b"", EntryKind.NO_OP)]
    storage.persist(Ready(entries=entries, hard_state=HardState(1, 1, 0)), now_ms=0)
    log = storage.log
    assert log.log_end_offset == 4 == storage.last_index()
    first = log.read(0, 1 << 20).records
    assert int.from_bytes(first[0:8], "big") == 0  # stamped at storage offset 0
    assert int.from_bytes(first[12:16], "big") == 1  # the term in the leader epoch
    assert storage.term(1) == storage.term(3) == storage.term(4) == 1
    # Truncating from Raft offset 1 empties the storage log to offset 0.
    storage.persist(Ready(truncate_from=1), now_ms=0)
    assert log.log_end_offset == 0 and storage.last_index() == 0
    assert storage.term(1) is None
