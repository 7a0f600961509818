"""ProducerState follows what the log holds: fed from applied batches, so a follower that
writes the leader's bytes rebuilds the same state; snapshots cover only flushed data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from produce_batches import make_batch

from rilke.errors import OutOfOrderSequenceError
from rilke.partition.producer_state import PRODUCER_STATE_FILE, ProducerState
from rilke.records.header import check_batches
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog


def _open(path: Path) -> PartitionLog:
    return PartitionLog.open(path, LogConfig(), now_ms=0, recover=False)


def _produce(pid: int, seq: int, values: list[bytes]) -> bytes:
    return make_batch(values, producer_id=pid, producer_epoch=0, base_sequence=seq)


def test_a_follower_applying_the_leaders_bytes_has_the_leaders_state(tmp_path: Path) -> None:
    leader_log = _open(tmp_path / "leader" / "t-0")
    leader = ProducerState(leader_log, tmp_path / "leader" / "t-0")
    for batch in (_produce(7, 0, [b"a", b"b"]), _produce(8, 0, [b"c"]), _produce(7, 2, [b"d"])):
        checked = check_batches(batch)
        assert leader.check(checked.headers) is None
        info = leader_log.append(checked, now_ms=1)
        leader.apply(checked.headers, info.first_offset)

    # The follower gets the stored bytes (offsets stamped) and writes them as they are.
    stored = leader_log.read(0, 1 << 20).records
    follower_log = _open(tmp_path / "follower" / "t-0")
    follower = ProducerState(follower_log, tmp_path / "follower" / "t-0")
    follower_log.append(stored, assign_offsets=False, now_ms=1)
    follower.apply_stored(stored)
    assert follower.table.dump() == leader.table.dump()
    assert sorted(follower.table.dump()) == [[7, 0, 0, 1, 0], [7, 0, 2, 2, 3], [8, 0, 0, 0, 2]]
    # Both now answer a retry with its original offset and refuse a gap alike.
    assert follower.check(check_batches(_produce(8, 0, [b"c"])).headers) == 2
    with pytest.raises(OutOfOrderSequenceError):
        follower.check(check_batches(_produce(7, 5, [b"e"])).headers)
    leader_log.close()
    follower_log.close()


def test_snapshots_cover_only_flushed_data_and_restart_rebuilds(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    plog = _open(directory)
    state = ProducerState(plog, directory)
    assert state.snapshot_due() is None  # empty and idle: nothing to keep
    checked = check_batches(_produce(7, 0, [b"a"]))
    state.apply(checked.headers, plog.append(checked, now_ms=1).first_offset)
    assert state.snapshot_due() is None  # not flushed yet
    plog.flush()
    due = state.snapshot_due()
    assert due is not None and due.offset == 1
    due.write()
    state.written(due)
    assert state.snapshot_due() is None  # nothing new since
    document = json.loads((directory / PRODUCER_STATE_FILE).read_text())
    assert document == {"offset": 1, "producers": [[7, 0, 0, 0, 0]]}

    # A batch after the snapshot is replayed from the log on open.
    checked = check_batches(_produce(7, 1, [b"b"]))
    state.apply(checked.headers, plog.append(checked, now_ms=1).first_offset)
    plog.flush()
    plog.close()
    plog = _open(directory)
    reopened = ProducerState(plog, directory)
    assert reopened.table.dump() == state.table.dump()
    reopened.forget()
    assert not (directory / PRODUCER_STATE_FILE).exists()
    plog.close()
