from __future__ import annotations

from pathlib import Path

import pytest

from rilke.storage.index import IndexCorruptError, OffsetIndex, TimeIndex


def test_offset_index_lookup_is_greatest_entry_at_or_below(tmp_path: Path) -> None:
    index = OffsetIndex(tmp_path / "0.index", 100)
    for offset, position in [(110, 50), (120, 90), (150, 200)]:
        index.append(offset, position)
    assert index.lookup(99) == (100, 0)
    assert index.lookup(109) == (100, 0)
    assert index.lookup(110) == (110, 50)
    assert index.lookup(149) == (120, 90)
    assert index.lookup(10**9) == (150, 200)
    assert index.lookup_position(89) == (110, 50)
    assert index.lookup_position(90) == (120, 90)


def test_offset_index_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "0.index"
    index = OffsetIndex(path, 7)
    index.append(8, 100)
    index.append(9, 200)
    index.flush()
    assert path.stat().st_size == 16
    assert path.read_bytes()[:8] == (1).to_bytes(4, "big") + (100).to_bytes(4, "big")
    loaded = OffsetIndex.load(path, 7, log_size=300)
    assert list(loaded.offsets) == [1, 2]
    assert list(loaded.positions) == [100, 200]
    loaded.append(10, 250)
    loaded.truncate_to_position(200)
    loaded.close()
    assert OffsetIndex.load(path, 7, log_size=300).last_entry() == (8, 100)


def test_offset_index_truncate_covers_written_and_pending(tmp_path: Path) -> None:
    path = tmp_path / "0.index"
    index = OffsetIndex(path, 0)
    for i in range(1, 6):
        index.append(i, i * 10)
        if i == 3:
            index.flush()
    index.truncate_to_position(20)
    index.flush()
    assert list(index.offsets) == [1]
    assert path.stat().st_size == 8


@pytest.mark.parametrize(
    ("data", "log_size"),
    [
        (b"\x00" * 7, 100),  # not whole entries
        ((1).to_bytes(4, "big") + (500).to_bytes(4, "big"), 100),  # past the log
        (((2).to_bytes(4, "big") + (50).to_bytes(4, "big")) * 2, 100),  # not increasing
    ],
)
def test_offset_index_load_refuses_what_does_not_hold(
    tmp_path: Path, data: bytes, log_size: int
) -> None:
    path = tmp_path / "0.index"
    path.write_bytes(data)
    with pytest.raises(IndexCorruptError):
        OffsetIndex.load(path, 0, log_size)


def test_time_index_keeps_growing_timestamps_only(tmp_path: Path) -> None:
    path = tmp_path / "0.timeindex"
    index = TimeIndex(path, 10)
    assert index.maybe_append(100, 10)
    assert not index.maybe_append(100, 12)
    assert not index.maybe_append(90, 13)
    assert index.maybe_append(150, 14)
    assert index.lookup_before(100) is None
    assert index.lookup_before(101) == (100, 10)
    assert index.lookup_before(10**6) == (150, 14)
    index.close()
    loaded = TimeIndex.load(path, 10)
    assert loaded.last_entry() == (150, 14)
    loaded.truncate_to_offset(14)
    assert loaded.last_entry() == (100, 10)
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(IndexCorruptError):
        TimeIndex.load(path, 10)
