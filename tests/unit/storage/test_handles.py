"""The node's descriptor cache: eviction, reopening, reads and flushes after eviction, and the
budget holding over many partitions with many segments."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from batches import make_batch
from storage_crash import crash

from rilke.records.header import read_header
from rilke.storage import LogConfig, PartitionLog
from rilke.storage.handles import FileCache, default_max_open_files
from rilke.storage.manager import LogManager

SMALL = LogConfig(segment_bytes=1000, index_interval_bytes=100)


def open_fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


def fill(log: PartitionLog, count: int) -> list[bytes]:
    stored = []
    for i in range(count):
        batch = bytearray(make_batch(2, timestamp_ms=1000 + 10 * i))
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


def test_the_least_recently_used_file_is_closed_and_reopened_on_use(tmp_path: Path) -> None:
    cache = FileCache(2)
    handles = []
    for name in "abc":
        (tmp_path / name).write_bytes(name.encode() * 4)
        handles.append(cache.file(tmp_path / name, os.O_RDONLY))
    a, b, c = handles
    assert os.pread(a.fd(), 4, 0) == b"aaaa"
    assert os.pread(b.fd(), 4, 0) == b"bbbb"
    a.fd()  # a is now the most recently used: opening c closes b
    assert os.pread(c.fd(), 4, 0) == b"cccc"
    assert (a.is_open, b.is_open, c.is_open) == (True, False, True)
    assert cache.open_count == 2 and cache.evictions == 1
    assert os.pread(b.fd(), 4, 0) == b"bbbb"  # reopened, closing a
    assert not a.is_open and cache.opens == 4
    b.close()
    b.close()  # idempotent
    assert cache.open_count == 1
    cache.close_all()
    assert cache.open_count == 0 and not c.is_open


def test_a_file_created_through_the_cache_is_reopened_without_being_emptied(
    tmp_path: Path,
) -> None:
    cache = FileCache(1)
    created = cache.create(tmp_path / "log")
    os.pwrite(created.fd(), b"kept", 0)
    other = cache.create(tmp_path / "other")  # evicts the first
    assert not created.is_open
    assert os.pread(created.fd(), 4, 0) == b"kept"
    assert not other.is_open


def test_the_budget_must_be_positive_and_the_default_follows_the_limit() -> None:
    with pytest.raises(ValueError, match="max_open"):
        FileCache(0)
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert 64 <= default_max_open_files() <= max(soft, 64)


def test_reads_of_every_segment_are_right_after_their_descriptors_were_evicted(
    tmp_path: Path,
) -> None:
    cache = FileCache(4)
    log = PartitionLog.open(tmp_path / "t-0", SMALL, now_ms=0, recover=False, cache=cache)
    stored = fill(log, 120)
    assert len(log.segments) > 10  # 3 files each: far more than the cache holds
    assert cache.open_count <= 4
    assert read_all(log) == b"".join(stored)
    # Reads from the back and by timestamp, each reopening what an earlier one evicted.
    for offset in range(log.log_end_offset - 1, -1, -37):
        first = log.read(offset, 1).records
        assert first and first in b"".join(stored)
    wanted = read_header(stored[100]).max_timestamp
    assert log.offset_for_timestamp(wanted) == (200, wanted)
    assert cache.open_count <= 4 and cache.evictions > 0
    log.close()


def test_a_flush_after_eviction_syncs_and_a_job_outlives_the_eviction(tmp_path: Path) -> None:
    cache = FileCache(2)
    log = PartitionLog.open(tmp_path / "t-0", SMALL, now_ms=0, recover=False, cache=cache)
    stored = fill(log, 30)  # several rolled segments, none flushed yet
    cache.close_all()
    job = log.begin_flush()  # reopens what it must sync, and duplicates it
    assert job is not None
    cache.close_all()  # the cache closes its descriptors: the job's duplicates stay valid
    job.run()
    assert log.end_flush(job)
    assert log.flushed_offset == log.log_end_offset
    more = fill(log, 5)
    cache.close_all()
    log.flush()  # the synchronous path reopens too
    assert log.flushed_offset == log.log_end_offset
    crash(log)
    reopened = PartitionLog.open(tmp_path / "t-0", SMALL, now_ms=0, recover=True, cache=cache)
    assert reopened.recovery.bytes_truncated == 0
    assert read_all(reopened) == b"".join(stored + more)
    reopened.close()


def test_index_entries_written_after_eviction_load_back_without_a_rebuild(
    tmp_path: Path,
) -> None:
    cache = FileCache(1)  # every file evicts the one before it
    log = PartitionLog.open(tmp_path / "t-0", SMALL, now_ms=0, recover=False, cache=cache)
    stored = fill(log, 40)
    log.close()
    reopened = PartitionLog.open(tmp_path / "t-0", SMALL, now_ms=0, recover=True, cache=cache)
    assert reopened.recovery.indexes_rebuilt == []
    assert reopened.recovery.bytes_truncated == 0
    assert read_all(reopened) == b"".join(stored)
    reopened.close()


def test_many_partitions_with_many_segments_stay_within_the_budget(tmp_path: Path) -> None:
    budget = 24
    before = open_fds()
    manager = LogManager(tmp_path / "data", SMALL, now_ms=0, max_open_files=budget)
    try:
        stored = {}
        for p in range(150):
            log = manager.create("t", p, SMALL)
            stored[p] = fill(log, 8)  # 2-3 segments each: ~1000 files in all
            assert len(open_fds() - before) <= budget + 1  # + the data directory's lock
        for p in (0, 149, 73):
            log = manager.get("t", p)
            assert log is not None
            assert read_all(log) == b"".join(stored[p])
        manager.flush_all()
        assert len(open_fds() - before) <= budget + 1
    finally:
        manager.close()
    assert open_fds() - before == set()
    reopened = LogManager(tmp_path / "data", SMALL, now_ms=0, max_open_files=budget)
    try:
        assert len(reopened.partitions()) == 150
        assert len(open_fds() - before) <= budget + 1
        log = reopened.get("t", 5)
        assert log is not None and read_all(log) == b"".join(stored[5])
    finally:
        reopened.close()
