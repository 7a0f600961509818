from pathlib import Path

import pytest
from produce_batches import make_batch

from rilke.errors import InvalidProducerEpochError, OutOfOrderSequenceError
from rilke.partition.producer_state import ProducerStateTable
from rilke.records.header import read_header
from rilke.server.producer_state import ProducerIdManager


def header(pid: int, epoch: int, seq: int, n: int = 1):  # type: ignore[no-untyped-def]
    return read_header(
        make_batch([b"v"] * n, producer_id=pid, producer_epoch=epoch, base_sequence=seq)
    )


def test_in_order_batches_are_new_and_retries_are_duplicates() -> None:
    table = ProducerStateTable()
    first = header(7, 0, 0, 3)
    assert table.check([first]) is None
    table.record(first, 100)
    second = header(7, 0, 3, 2)
    assert table.check([second]) is None
    table.record(second, 103)
    assert table.check([first]) == 100
    assert table.check([second]) == 103


def test_gap_and_fencing() -> None:
    table = ProducerStateTable()
    table.record(header(7, 1, 0, 2), 0)
    with pytest.raises(OutOfOrderSequenceError, match="expected 2"):
        table.check([header(7, 1, 5)])
    with pytest.raises(InvalidProducerEpochError):
        table.check([header(7, 0, 2)])
    with pytest.raises(OutOfOrderSequenceError, match="expected 0"):
        table.check([header(7, 2, 4)])
    assert table.check([header(7, 2, 0)]) is None


def test_unknown_producer_starts_at_zero_and_non_idempotent_is_unchecked() -> None:
    """A later batch of a new producer that arrives before its first (concurrent requests)
    is refused, so the first is not refused for good once the later one is written
    (tests/faults/FINDINGS.md 1); nothing of the refused append is remembered."""
    table = ProducerStateTable()
    with pytest.raises(OutOfOrderSequenceError, match="sent sequence 42, expected 0"):
        table.check([header(9, 0, 42)])
    assert len(table) == 0
    assert table.check([header(9, 0, 0)]) is None
    assert table.check([header(9, 1, 0)]) is None  # a new epoch starts at 0 too
    assert table.check([header(-1, -1, -1)]) is None


def test_several_batches_in_one_append_must_follow_each_other() -> None:
    table = ProducerStateTable()
    assert table.check([header(1, 0, 0, 2), header(1, 0, 2, 2)]) is None
    with pytest.raises(OutOfOrderSequenceError):
        table.check([header(1, 0, 0, 2), header(1, 0, 3, 2)])


def test_only_the_last_five_batches_are_remembered() -> None:
    table = ProducerStateTable()
    for i in range(6):
        table.record(header(1, 0, i), i)
    assert table.check([header(1, 0, 5)]) == 5
    assert table.check([header(1, 0, 1)]) == 1
    with pytest.raises(OutOfOrderSequenceError):
        table.check([header(1, 0, 0)])


def test_dump_and_load() -> None:
    table = ProducerStateTable()
    table.record(header(1, 0, 0, 2), 10)
    table.record(header(2, 3, 0), 12)
    copy = ProducerStateTable()
    copy.load(table.dump())
    assert copy.check([header(1, 0, 0, 2)]) == 10
    assert copy.check([header(2, 3, 1)]) is None


def test_producer_ids_are_unique_across_restarts(tmp_path: Path) -> None:
    ids = ProducerIdManager(tmp_path)
    first = [ids.next_id() for _ in range(3)]
    again = ProducerIdManager(tmp_path)
    assert again.next_id() > max(first)
    assert first == sorted(set(first))
