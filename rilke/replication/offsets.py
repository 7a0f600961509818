"""The one mapping between Raft indexes and storage (Kafka) offsets.

The Raft core counts offsets from 1: its empty log has log start (index 0, term 0) and an
entry is named by its LAST offset (see :mod:`rilke.replication.raft.types`). Storage offsets
start at 0, as Kafka's do. A batch stored at offsets ``[base, last]`` is therefore the Raft
entry spanning Raft offsets ``[base + 1, last + 1]``: its Raft index is ``last + 1``, which is
the log end offset right after it. It follows that:

- a partition log's ``log_end_offset`` is the core's ``last_index`` (0 for an empty log);
- a partition log's ``log_start_offset`` is the core's snapshot index (first index - 1);
- the core's commit index, as a storage offset, is the high watermark (the first offset not
  yet committed), with nothing to add or subtract.

Every conversion in the replication layer goes through these functions, so the off-by-one is
written once.
"""

from __future__ import annotations


def raft_index(last_offset: int) -> int:
    """The Raft index of the entry whose batch ends at storage offset ``last_offset``."""
    assert last_offset >= 0, f"storage offsets start at 0, not {last_offset}"
    return last_offset + 1


def last_offset(index: int) -> int:
    """The storage offset of the last record of the entry with Raft index ``index`` (>= 1)."""
    assert index >= 1, f"Raft entries start at index 1, not {index}"
    return index - 1


def base_offset(first_index: int) -> int:
    """The storage base offset of the batch whose first Raft offset is ``first_index``."""
    assert first_index >= 1, f"Raft offsets start at 1, not {first_index}"
    return first_index - 1


def storage_offset_of(raft_offset: int) -> int:
    """The storage offset that holds Raft offset ``raft_offset`` (>= 1)."""
    assert raft_offset >= 1, f"Raft offsets start at 1, not {raft_offset}"
    return raft_offset - 1


def log_end_offset(last_index: int) -> int:
    """The storage log end offset of a log whose last Raft index is ``last_index`` (>= 0).

    Also the high watermark of a commit index: every storage offset below it is committed.
    """
    assert last_index >= 0
    return last_index


def last_index(log_end_offset: int) -> int:
    """The core's last index (or snapshot index) of a storage log ending at ``log_end_offset``.

    Also: the snapshot index of a log starting at ``log_end_offset``-style start offsets, i.e.
    ``snapshot_index(log_start_offset) == log_start_offset``.
    """
    assert log_end_offset >= 0
    return log_end_offset


def snapshot_index(log_start_offset: int) -> int:
    """The core's snapshot index (log start) of a storage log starting at ``log_start_offset``."""
    assert log_start_offset >= 0
    return log_start_offset


def truncation_offset(truncate_from: int) -> int:
    """The storage offset to ``truncate_to`` for the core's ``Ready.truncate_from``.

    ``truncate_from`` is the first Raft offset to drop (an entry boundary + 1); the storage
    keeps every offset below its storage offset, so the cut is at ``truncate_from - 1``.
    """
    assert truncate_from >= 1
    return truncate_from - 1
