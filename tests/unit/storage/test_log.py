from __future__ import annotations

from pathlib import Path

import pytest
from batches import DefaultRecordBatch, make_batch
from storage_crash import crash

from rilke.errors import (
    BatchTooLargeError,
    CorruptBatchError,
    CorruptRecordError,
    InvalidConfigError,
    LogClosedError,
    NonContiguousOffsetError,
    OffsetOutOfRangeError,
)
from rilke.records.header import CheckedBatches, check_batches, iter_headers, read_header
from rilke.storage import LogConfig, PartitionLog

SMALL = LogConfig(segment_bytes=1000, index_interval_bytes=100)


def open_log(path: Path, config: LogConfig = SMALL, *, recover: bool = False) -> PartitionLog:
    return PartitionLog.open(path, config, now_ms=0, recover=recover)


def fill(log: PartitionLog, count: int, records: int = 2, ts: int = 1000) -> list[bytes]:
    stored = []
    for i in range(count):
        batch = bytearray(make_batch(records, timestamp_ms=ts + 10 * i))
        log.append(batch, now_ms=5)
        stored.append(bytes(batch))
    return stored


def read_all(log: PartitionLog) -> bytes:
    out = bytearray()
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 300)
        assert result.records
        out += result.records
        offset = result.next_offset
    return bytes(out)


def test_append_assigns_offsets_and_reads_back_whole_batches(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    info = log.append(make_batch(3), now_ms=1)
    assert (info.first_offset, info.last_offset, info.num_batches) == (0, 2, 1)
    info = log.append(make_batch(2) + make_batch(4), now_ms=1)
    assert (info.first_offset, info.last_offset, info.num_batches) == (3, 8, 2)
    assert log.log_end_offset == 9
    result = log.read(4, 1 << 20)
    assert [h.base_offset for _, h in iter_headers(result.records)] == [3, 5]
    assert result.next_offset == 9
    records = list(DefaultRecordBatch(result.records[: read_header(result.records).size]))
    assert [r.offset for r in records] == [3, 4]
    assert log.read(9, 100).records == b""
    log.close()


def test_read_returns_at_least_one_batch_and_respects_max_bytes(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(index_interval_bytes=0))
    stored = fill(log, 20)
    size = len(stored[0])
    assert log.read(0, 1).records == stored[0]
    result = log.read(0, 3 * size + size // 2)
    assert result.records == b"".join(stored[:3])
    assert result.next_offset == 6
    result = log.read(5, 2 * size)
    assert result.records == b"".join(stored[2:4])


def test_read_stops_before_the_high_watermark(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(index_interval_bytes=0))
    stored = fill(log, 10)
    assert log.read(0, 1 << 20, max_offset=4).records == b"".join(stored[:2])
    assert log.read(0, 1 << 20, max_offset=5).records == b"".join(stored[:3])
    assert log.read(4, 1 << 20, max_offset=4).records == b""
    assert log.read(0, 1 << 20, max_offset=100).records == b"".join(stored)


def test_read_out_of_range(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 3)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(7, 100)
    log.delete_records_before(2)
    with pytest.raises(OffsetOutOfRangeError):
        log.read(1, 100)
    assert read_header(log.read(2, 1).records).base_offset == 2


def test_rolls_on_size_and_reads_across_segments(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    stored = fill(log, 40)
    assert len(log.segments) > 3
    assert all(s.size <= 1000 for s in log.segments)
    assert read_all(log) == b"".join(stored)
    log.close()
    log = open_log(tmp_path / "t-0")
    assert read_all(log) == b"".join(stored)
    assert log.recovery.segments_scanned == []


def test_rolls_on_age(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(segment_ms=100))
    log.append(make_batch(1), now_ms=1000)
    log.append(make_batch(1), now_ms=1050)
    assert len(log.segments) == 1
    log.append(make_batch(1), now_ms=1100)
    assert [s.base_offset for s in log.segments] == [0, 2]
    assert not log.maybe_roll(1150)
    assert log.maybe_roll(1200)
    assert len(log.segments) == 3


@pytest.mark.parametrize(
    "damage",
    ["crc", "magic", "short", "long", "empty", "garbage_after"],
)
def test_bad_batches_are_refused_and_nothing_is_written(tmp_path: Path, damage: str) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 2)
    size_before = log.size_bytes()
    good = bytearray(make_batch(3))
    if damage == "crc":
        good[-1] ^= 1
    elif damage == "magic":
        good[16] = 1
    elif damage == "short":
        good = good[:-3]
    elif damage == "long":
        good[8:12] = (int.from_bytes(good[8:12], "big") - 2).to_bytes(4, "big")
    elif damage == "empty":
        good = bytearray()
    elif damage == "garbage_after":
        good = bytearray(make_batch(2)) + good[:30]
    with pytest.raises(CorruptBatchError):
        log.append(good, now_ms=1)
    assert log.size_bytes() == size_before
    assert log.log_end_offset == 4


def test_a_bad_batch_after_good_ones_writes_none(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    bad = bytearray(make_batch(1))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError):
        log.append(make_batch(2) + bytes(bad), now_ms=1)
    assert (log.log_end_offset, log.size_bytes()) == (0, 0)


def test_too_large_batch_is_refused(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(max_message_bytes=200))
    with pytest.raises(BatchTooLargeError):
        log.append(make_batch(1, value_size=300), now_ms=1)
    assert log.size_bytes() == 0


def test_preset_offsets_must_continue_the_log(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(2, base_offset=0), assign_offsets=False, now_ms=1)
    log.append(make_batch(3, base_offset=2), assign_offsets=False, now_ms=1)
    for base in (4, 6, 0):
        with pytest.raises(NonContiguousOffsetError):
            log.append(make_batch(1, base_offset=base), assign_offsets=False, now_ms=1)
    with pytest.raises(NonContiguousOffsetError):
        log.append(
            make_batch(1, base_offset=5) + make_batch(1, base_offset=7),
            assign_offsets=False,
            now_ms=1,
        )
    assert log.log_end_offset == 5


def test_stamps_leader_epoch_and_keeps_crc(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    original = make_batch(2)
    log.append(original, leader_epoch=7, now_ms=1)
    log.append(make_batch(2), leader_epoch=8, now_ms=1)
    data = log.read(0, 1 << 20).records
    headers = [h for _, h in iter_headers(data)]  # checks CRCs
    assert [(h.base_offset, h.partition_leader_epoch) for h in headers] == [(0, 7), (2, 8)]
    assert original == make_batch(2)  # read-only input untouched


def test_writable_input_is_stamped_in_place(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(1), now_ms=1)
    buf = bytearray(make_batch(2) + make_batch(3))
    log.append(buf, leader_epoch=4, now_ms=1)
    assert log.read(1, 1 << 20).records == bytes(buf)
    assert read_header(buf).base_offset == 1


@pytest.mark.parametrize("writable", [False, True])
@pytest.mark.parametrize("epoch", [None, 9])
@pytest.mark.parametrize("count", [1, 3])
@pytest.mark.parametrize("assign", [True, False])
def test_stamping_stores_the_same_bytes_on_every_path(
    tmp_path: Path, writable: bool, epoch: int | None, count: int, assign: bool
) -> None:
    # One batch (the fast path) or several, read-only or writable input, with and without an
    # epoch: the stored bytes are the input with base offset (and epoch) rewritten.
    log = open_log(tmp_path / "t-0")
    log.append(make_batch(2), now_ms=1)
    batches = [make_batch(2, base_offset=2 + 2 * i, timestamp_ms=50 + i) for i in range(count)]
    data = b"".join(batches)
    info = log.append(
        bytearray(data) if writable else data,
        assign_offsets=assign,
        leader_epoch=epoch,
        now_ms=1,
    )
    assert (info.first_offset, info.last_offset, info.num_batches) == (2, 1 + 2 * count, count)
    assert info.max_timestamp == 50 + count - 1 + 1  # the last record of the last batch
    stored = log.read(2, 1 << 20).records
    headers = [h for _, h in iter_headers(stored)]  # checks CRCs
    assert [h.base_offset for h in headers] == [2 + 2 * i for i in range(count)]
    want_epoch = read_header(data).partition_leader_epoch if epoch is None else epoch
    assert all(h.partition_leader_epoch == want_epoch for h in headers)
    expected = bytearray(data)
    for i, (pos, _) in enumerate(iter_headers(expected)):
        expected[pos + 12 : pos + 16] = want_epoch.to_bytes(4, "big", signed=True)
        assert i < count
    assert stored == bytes(expected)


@pytest.mark.parametrize("count", [1, 2])
def test_checked_batches_skip_only_the_crc(tmp_path: Path, count: int) -> None:
    # CheckedBatches carry the proof of their CRCs: the log's own rules still apply to them,
    # and plain bytes (from a replica, a file) are checked in full.
    log = open_log(tmp_path / "t-0", LogConfig(max_message_bytes=200))
    good = make_batch(2) * count
    log.append(check_batches(good), now_ms=1)
    assert log.log_end_offset == 2 * count
    size = log.size_bytes()
    with pytest.raises(BatchTooLargeError):
        log.append(check_batches(make_batch(1, value_size=300)), now_ms=1)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0xFF
    with pytest.raises(CorruptBatchError):
        log.append(bytes(bad_crc), now_ms=1)
    with pytest.raises(CorruptRecordError):
        check_batches(bytes(bad_crc))  # so no CheckedBatches can hold them
    with pytest.raises(TypeError):
        CheckedBatches(bytes(bad_crc), (), object())
    assert (log.log_end_offset, log.size_bytes()) == (2 * count, size)


@pytest.mark.parametrize("writable", [False, True])
def test_log_append_time_rewrites_timestamp_and_crc(tmp_path: Path, writable: bool) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(message_timestamp_type="LogAppendTime"))
    batch = make_batch(3, timestamp_ms=5)
    info = log.append(bytearray(batch) if writable else batch, now_ms=123_456)
    assert info.log_append_time_ms == 123_456
    data = log.read(0, 1 << 20).records
    ((_, header),) = list(iter_headers(data))
    assert header.max_timestamp == 123_456
    assert header.timestamp_type == 1
    decoded = DefaultRecordBatch(data)
    assert decoded.validate_crc()
    assert [r.timestamp for r in decoded] == [123_456] * 3


def test_offset_for_timestamp(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 30, records=2, ts=1000)  # batch i: timestamps 1000+10i, 1001+10i
    assert log.offset_for_timestamp(0) == (0, 1001)
    assert log.offset_for_timestamp(1001) == (0, 1001)
    assert log.offset_for_timestamp(1002) == (2, 1011)
    assert log.offset_for_timestamp(1150) == (30, 1151)
    assert log.offset_for_timestamp(1291) == (58, 1291)
    assert log.offset_for_timestamp(1292) is None
    log.close()
    log = open_log(tmp_path / "t-0")
    assert log.offset_for_timestamp(1150) == (30, 1151)


def test_truncate_to(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    stored = fill(log, 30, records=2)
    log.truncate_to(61)
    assert log.log_end_offset == 60
    log.truncate_to(31)  # inside batch 30..31: the whole batch goes
    assert log.log_end_offset == 30
    assert read_all(log) == b"".join(stored[:15])
    log.append(make_batch(1), now_ms=1)
    assert log.log_end_offset == 31
    log.close()
    log = open_log(tmp_path / "t-0", recover=True)
    assert log.log_end_offset == 31
    assert read_all(log)[: len(b"".join(stored[:15]))] == b"".join(stored[:15])


def test_truncate_fully_and_start_at(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 30)
    log.truncate_fully_and_start_at(1000)
    assert (log.log_start_offset, log.log_end_offset, log.size_bytes()) == (1000, 1000, 0)
    assert log.append(make_batch(2), now_ms=1).first_offset == 1000
    log.close()
    log = open_log(tmp_path / "t-0", recover=True)
    assert (log.log_start_offset, log.log_end_offset) == (1000, 1002)


def test_delete_records_before_survives_reopen(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 30)
    segments = len(log.segments)
    log.delete_records_before(41)
    assert log.log_start_offset == 41
    assert len(log.segments) < segments
    with pytest.raises(OffsetOutOfRangeError):
        log.delete_records_before(61)
    crash(log)
    log = open_log(tmp_path / "t-0", recover=True)
    assert log.log_start_offset == 41


def test_retention_by_time_and_bytes(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1000, retention_ms=1000, retention_bytes=-1)
    log = open_log(tmp_path / "t-0", config)
    fill(log, 40, ts=10_000)  # timestamps 10_000 .. 10_391
    count = len(log.segments)
    assert log.apply_retention(now_ms=10_000) == 0
    deleted = log.apply_retention(now_ms=11_200)
    assert 0 < deleted < count
    assert all(s.max_timestamp >= 10_200 for s in log.segments[:-1])
    assert log.log_start_offset == log.segments[0].base_offset
    before = len(log.segments)
    assert log.apply_retention(now_ms=10**9) == before - 1  # never the active one
    assert len(log.segments) == 1
    log.update_config(LogConfig(segment_bytes=1000, retention_ms=-1, retention_bytes=0))
    assert log.apply_retention(now_ms=0) == 0
    fill(log, 20)
    total = log.size_bytes()
    log.update_config(LogConfig(segment_bytes=1000, retention_ms=-1, retention_bytes=1500))
    log.apply_retention(now_ms=0)
    assert 1500 <= log.size_bytes() < total
    assert log.size_bytes() - log.segments[0].size < 1500


def test_retention_stops_at_the_high_watermark_it_is_given(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1000, retention_ms=1000, retention_bytes=-1)
    log = open_log(tmp_path / "t-0", config)
    fill(log, 40, ts=10_000)
    bases = [s.base_offset for s in log.segments]
    assert len(bases) > 3
    # Every sealed segment is expired; a high watermark inside the third keeps it and all after.
    high_watermark = bases[2] + 1
    assert log.apply_retention(now_ms=10**9, high_watermark=high_watermark) == 2
    assert log.log_start_offset == bases[2] <= high_watermark
    # At a segment's base offset, the segments before it may go (they end there).
    assert log.apply_retention(now_ms=10**9, high_watermark=bases[3]) == 1
    assert log.log_start_offset == bases[3]
    assert log.apply_retention(now_ms=10**9, high_watermark=bases[3]) == 0


def test_flush_is_shared_and_policy_driven(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0", LogConfig(flush_messages=5))
    fill(log, 2, records=2)
    assert log.flushed_offset == 0
    fill(log, 1, records=2)
    assert log.flushed_offset == 6
    fill(log, 1, records=2)
    log.flush(up_to_offset=6)  # already durable: nothing to do
    assert log.flushed_offset == 6
    log.flush(up_to_offset=7)
    assert log.flushed_offset == 8
    log.update_config(LogConfig(flush_ms=100))
    log.append(make_batch(1), now_ms=1000)
    assert not log.maybe_flush(1050)
    assert log.maybe_flush(1100)
    assert log.flushed_offset == 9


def test_closed_log_refuses_calls(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    log.close()
    log.close()
    with pytest.raises(LogClosedError):
        log.append(make_batch(1), now_ms=1)
    with pytest.raises(LogClosedError):
        log.read(0, 1)


def test_config_from_topic_configs() -> None:
    config = LogConfig.from_topic_configs(
        {"segment.bytes": "2048", "cleanup.policy": "compact", "flush.messages": "1", "x.y": "z"}
    )
    assert (config.segment_bytes, config.compact, config.flush_messages) == (2048, True, 1)
    assert LogConfig.from_topic_configs(config.to_topic_configs()) == config
    with pytest.raises(InvalidConfigError, match=r"segment.bytes"):
        LogConfig.from_topic_configs({"segment.bytes": "ten"})
    with pytest.raises(InvalidConfigError, match=r"cleanup.policy"):
        LogConfig.from_topic_configs({"cleanup.policy": "forever"})
    with pytest.raises(InvalidConfigError, match=r"retention.ms"):
        LogConfig(retention_ms=-5)


def test_flush_job_counts_only_when_ended(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 3)
    job = log.begin_flush()
    assert job is not None and job.flushed_offset == 6
    assert log.flushed_offset == 0
    fill(log, 1)  # an append while the job runs elsewhere is not covered by it
    job.run()
    assert log.end_flush(job)
    assert log.flushed_offset == 6
    assert log.begin_flush(6) is None  # already there
    again = log.begin_flush()
    assert again is not None and again.flushed_offset == 8
    again.run()
    log.end_flush(again)
    assert log.flushed_offset == 8 == log.log_end_offset


def test_a_failed_flush_job_leaves_everything_to_sync_again(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 30)  # several rolled segments (1000-byte segments)
    assert len(log.segments) > 2
    job = log.begin_flush()
    assert job is not None
    log.abort_flush(job)
    assert log.flushed_offset == 0
    assert all(s.needs_sync for s in log.segments)
    job = log.begin_flush()
    assert job is not None
    job.run()
    log.end_flush(job)
    assert log.flushed_offset == log.log_end_offset
    assert not any(s.needs_sync for s in log.segments)


def test_retention_and_close_while_a_flush_job_runs_are_safe(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1000, index_interval_bytes=100, retention_bytes=1)
    log = open_log(tmp_path / "t-0", config)
    fill(log, 30)
    rolled = len(log.segments) - 1
    assert rolled >= 2
    job = log.begin_flush()  # holds descriptors of every rolled segment and the active one
    assert job is not None
    assert log.apply_retention(now_ms=10) == rolled  # deletes (closes) the rolled segments
    fill(log, 1)
    job.run()  # its duplicated descriptors are still valid
    assert log.end_flush(job)
    assert log.flushed_offset == 60
    other = log.begin_flush()
    assert other is not None
    log.close()  # closes everything (flushing it) while `other` is still to run
    other.run()
    assert not log.end_flush(other)  # a closed log ignores it
    reopened = open_log(tmp_path / "t-0", config, recover=True)
    assert reopened.log_end_offset == 62
    assert reopened.recovery.bytes_truncated == 0
    reopened.close()


def test_a_flush_job_from_before_a_truncation_is_ignored(tmp_path: Path) -> None:
    log = open_log(tmp_path / "t-0")
    fill(log, 3)
    job = log.begin_flush()
    assert job is not None and job.flushed_offset == 6
    log.truncate_to(2)
    fill(log, 3)  # new bytes at offsets 2..7 that the job never synced
    job.run()
    assert not log.end_flush(job)
    assert log.flushed_offset == 2


def test_retention_can_leave_the_unlinks_to_the_caller(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=1000, index_interval_bytes=100, retention_bytes=1)
    log = open_log(tmp_path / "t-0", config)
    fill(log, 30)
    kept = read_all(log)[-log.segments[-1].size :]
    doomed = [s.base_offset for s in log.segments[:-1]]
    assert log.apply_retention(now_ms=10, defer_unlink=True) == len(doomed)
    deleted = log.take_deleted_files()
    assert log.take_deleted_files() == []
    assert {p.name for p in deleted} >= {f"{base:020d}.log.deleted" for base in doomed}
    assert all(p.exists() for p in deleted)
    assert not any(
        p.name.endswith(".log") and int(p.name[:20]) in doomed for p in log.directory.iterdir()
    )
    assert read_all(log) == kept
    # Left behind (a crash before the caller unlinked them): removed when the log opens.
    log.close()
    reopened = open_log(tmp_path / "t-0", config, recover=True)
    assert not any(p.exists() for p in deleted)
    assert read_all(reopened) == kept
    reopened.close()
