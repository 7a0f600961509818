"""Damage to durable segments: recorded as corrupt ranges, refused by reads, never cut.

Issue 8, defect 2: one corrupt batch header in an old, closed segment used to delete every
later segment on the next start (a read rebuilt the indexes short, and the next open
"recovered" the segment as if it were the torn tail).
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest
from batches import make_batch

from rilke.errors import CorruptBatchError, CorruptLogDataError, RecordsError
from rilke.records.header import HEADER_SIZE, check_batch, read_header
from rilke.storage import LogConfig, PartitionLog
from rilke.storage.integrity import CORRUPT_RANGES_FILE, CorruptRange, read_ranges

CONFIG = LogConfig.from_topic_configs({"segment.bytes": "100000"})
RECORDS = 2000
BAD_LENGTH = 0x7FFFFF00


def filled_log(directory: Path) -> None:
    """2,000 one-record batches of ~450 bytes: about 9 segments; closed cleanly."""
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    for _ in range(RECORDS):
        plog.append(make_batch(1, value_size=380), now_ms=0)
    assert len(plog.segments) >= 9
    plog.close()


def batch_positions(path: Path) -> list[tuple[int, int]]:
    """(position, base offset) of every batch in a segment file."""
    data = path.read_bytes()
    out = []
    position = 0
    while position < len(data):
        header = read_header(data, position)
        out.append((position, header.base_offset))
        position += header.size
    return out


def middle_segment(directory: Path) -> Path:
    segments = sorted(directory.glob("*.log"))
    return segments[len(segments) // 2]


def damage(path: Path, batch: int, *, length: int | None = None, payload: bool = False) -> int:
    """Damage the ``batch``-th batch of a segment file; return its base offset."""
    position, base = batch_positions(path)[batch]
    with open(path, "r+b") as f:
        if length is not None:
            f.seek(position + 8)
            f.write(struct.pack(">i", length))
        if payload:
            f.seek(position + HEADER_SIZE + 5)
            byte = f.read(1)
            f.seek(position + HEADER_SIZE + 5)
            f.write(bytes([byte[0] ^ 0x01]))
    return base


def read_everything(plog: PartitionLog) -> tuple[list[int], list[CorruptLogDataError]]:
    """Every offset a consumer gets reading from the start as the client does (whole batches
    whose CRC holds; a partial or bad batch is fetched again from its offset), skipping what
    the log refuses to the offset its error names; and the errors met."""
    offsets: list[int] = []
    errors: list[CorruptLogDataError] = []
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        try:
            result = plog.read(offset, 1 << 20)
        except CorruptLogDataError as exc:
            assert exc.next_offset > offset
            errors.append(exc)
            offset = exc.next_offset
            continue
        data = result.records
        position = 0
        next_offset = result.next_offset
        while position < len(data):
            header = read_header(data, position)
            try:
                check_batch(data, position)
            except RecordsError:
                assert header.base_offset > offset, "the log served a bad batch first"
                next_offset = header.base_offset
                break
            offsets.extend(range(header.base_offset, header.next_offset))
            position += header.size
        assert next_offset > offset
        offset = next_offset
    return offsets, errors


def test_bad_length_in_an_old_segment_deletes_nothing_across_restarts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    segment_files = sorted(p.name for p in directory.glob("*.log"))
    path = middle_segment(directory)
    bad_offset = damage(path, 3, length=BAD_LENGTH)

    for _ in range(3):  # found on the first start, and again on every start after
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
            assert plog.log_end_offset == RECORDS
            offsets, errors = read_everything(plog)
        assert [(e.first_offset, e.next_offset) for e in errors] == [(bad_offset, bad_offset + 1)]
        assert "seek() to offset" in str(errors[0])
        assert offsets == [o for o in range(RECORDS) if o != bad_offset]
        reported = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(path.name in m and f"offsets {bad_offset}-{bad_offset}" in m for m in reported)
        plog.close()
        assert sorted(p.name for p in directory.glob("*.log"))[: len(segment_files)] == (
            segment_files
        )
    assert [r.first_offset for r in read_ranges(directory)] == [bad_offset]


def test_damage_below_the_recovery_point_is_not_cut_after_an_unclean_stop(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    path = middle_segment(directory)
    bad_offset = damage(path, 3, length=BAD_LENGTH)
    # Lost indexes make recovery check the segment from its first byte.
    path.with_suffix(".index").unlink()
    path.with_suffix(".timeindex").unlink()
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
    assert plog.log_end_offset == RECORDS
    assert plog.recovery.segments_deleted == []
    assert [(r.first_offset, r.next_offset) for r in plog.recovery.corrupt_ranges] == [
        (bad_offset, bad_offset + 1)
    ]
    offsets, errors = read_everything(plog)
    assert len(errors) == 1
    assert offsets == [o for o in range(RECORDS) if o != bad_offset]
    plog.close()


def test_a_flipped_payload_byte_is_found_at_recovery_and_refused(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    path = middle_segment(directory)
    bad_offset = damage(path, 5, payload=True)
    path.with_suffix(".index").unlink()
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    with pytest.raises(CorruptLogDataError, match=f"seek\\(\\) to offset {bad_offset + 1}"):
        plog.read(bad_offset, 1 << 20)
    # A read that starts before the range stops at it.
    before = plog.read(bad_offset - 2, 1 << 20)
    assert before.next_offset == bad_offset
    assert plog.read(bad_offset + 1, 100).records
    plog.close()


def test_the_torn_tail_of_the_active_segment_is_still_cut_after_an_unclean_stop(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "t-0"
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    for _ in range(10):
        plog.append(make_batch(1, value_size=380), now_ms=0)
    plog.flush()
    plog.checkpoint()
    for _ in range(5):
        plog.append(make_batch(1, value_size=380), now_ms=0)  # past the recovery point
    path = plog.segments[-1].log_path
    plog.flush()  # on disk, but the checkpoint still says 10
    for segment in plog.segments:
        segment.close()
    damage(path, 12, length=BAD_LENGTH)
    reopened = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
    assert reopened.log_end_offset == 12
    assert reopened.corrupt_ranges() == []
    reopened.close()


def test_damage_at_the_end_of_the_active_segment_keeps_the_log_end(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    for _ in range(20):
        plog.append(make_batch(1, value_size=380), now_ms=0)
    path = plog.segments[-1].log_path
    plog.close()
    damage(path, 19, length=BAD_LENGTH)  # the last batch of the log
    path.with_suffix(".index").unlink()
    reopened = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    assert reopened.log_end_offset == 20  # from the checkpoint: offset 19 is not reused
    assert len(reopened.segments) == 2  # the damaged file is sealed; appends go on after it
    info = reopened.append(make_batch(1), now_ms=0)
    assert info.first_offset == 20
    with pytest.raises(CorruptLogDataError):
        reopened.read(19, 1 << 20)
    assert reopened.read(20, 1 << 20).records
    reopened.close()


def test_lists_offsets_retention_and_timestamps_work_around_a_range(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    first = sorted(directory.glob("*.log"))[0]
    damage(first, 3, length=BAD_LENGTH)
    first.with_suffix(".index").unlink()
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    assert plog.log_start_offset == 0 and plog.log_end_offset == RECORDS
    assert plog.offset_for_timestamp(1_000) == (0, 1_000)
    assert len(plog.corrupt_ranges()) == 1
    # Retention removes the damaged segment like any other, and forgets its range.
    plog.delete_records_before(plog.segments[1].base_offset)
    assert plog.corrupt_ranges() == []
    assert not (directory / CORRUPT_RANGES_FILE).exists()
    plog.close()


def test_a_repaired_range_is_forgotten_on_the_next_open(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    path = middle_segment(directory)
    original = path.read_bytes()
    damage(path, 3, length=BAD_LENGTH)
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    read_everything(plog)
    assert len(plog.corrupt_ranges()) == 1
    plog.close()
    path.write_bytes(original)  # what a repair from a replica will do
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    assert plog.corrupt_ranges() == []
    offsets, errors = read_everything(plog)
    assert errors == [] and offsets == list(range(RECORDS))
    plog.close()


def test_the_repairer_is_told_of_each_range_recorded(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    bad_offset = damage(middle_segment(directory), 3, length=BAD_LENGTH)
    told: list[tuple[Path, int, int]] = []

    class Repairer:
        def corrupt_range_found(self, where: Path, bad: CorruptRange) -> None:
            told.append((where, bad.first_offset, bad.next_offset))

    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    plog.set_repairer(Repairer())
    read_everything(plog)
    assert told == [(directory, bad_offset, bad_offset + 1)]
    plog.close()


def test_a_range_repaired_with_good_batches_is_served_again(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    path = middle_segment(directory)
    original = path.read_bytes()
    position, _ = batch_positions(path)[3]
    end, _ = batch_positions(path)[4]
    bad_offset = damage(path, 3, length=BAD_LENGTH)
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    read_everything(plog)
    [bad] = plog.corrupt_ranges()
    segments_before = [s.base_offset for s in plog.segments]
    # Batches that do not fit the range are refused, and nothing changes.
    with pytest.raises(CorruptBatchError, match="base offset"):
        plog.repair_corrupt_range(bad, make_batch(1, base_offset=bad_offset + 1), now_ms=0)
    with pytest.raises(CorruptBatchError, match="CRC"):
        broken = bytearray(original[position:end])
        broken[-1] ^= 1
        plog.repair_corrupt_range(bad, bytes(broken), now_ms=0)
    assert plog.corrupt_ranges() == [bad]

    plog.repair_corrupt_range(bad, original[position:end], now_ms=0)
    assert plog.corrupt_ranges() == []
    assert [s.base_offset for s in plog.segments] == segments_before
    assert path.read_bytes() == original
    offsets, errors = read_everything(plog)
    assert errors == [] and offsets == list(range(RECORDS))
    plog.close()
    assert not (directory / CORRUPT_RANGES_FILE).exists()
