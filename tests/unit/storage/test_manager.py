from __future__ import annotations

from pathlib import Path

import pytest
from batches import make_batch
from storage_crash import crash

from rilke.errors import DataDirLockedError, InvalidTopicError, LogClosedError
from rilke.storage import LogConfig, LogManager, PartitionLog
from rilke.storage.manager import CLEAN_SHUTDOWN_FILE, parse_partition_dir

CONFIG = LogConfig(segment_bytes=1000)


def test_lock_marker_and_reopen(tmp_path: Path) -> None:
    manager = LogManager(tmp_path, CONFIG, now_ms=0)
    assert not manager.had_clean_shutdown
    for partition in range(3):
        log = manager.create("orders", partition, CONFIG)
        for _ in range(partition + 1):
            log.append(make_batch(2), now_ms=1)
    assert manager.create("orders", 0, CONFIG) is manager.get("orders", 0)
    with pytest.raises(DataDirLockedError):
        LogManager(tmp_path, CONFIG, now_ms=0)
    manager.close()
    manager.close()
    assert (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    with pytest.raises(LogClosedError):
        manager.create("x", 0, CONFIG)

    manager = LogManager(tmp_path, CONFIG, now_ms=0)
    assert manager.had_clean_shutdown
    assert not (tmp_path / CLEAN_SHUTDOWN_FILE).exists()
    ends = {key: log.log_end_offset for key, log in manager.partitions().items()}
    assert ends == {("orders", 0): 2, ("orders", 1): 4, ("orders", 2): 6}
    assert all(log.recovery.clean for log in manager.partitions().values())
    # A crash: no marker, so the next open recovers.
    for log in manager.partitions().values():
        crash(log)
    manager._closed = True
    import fcntl
    import os

    fcntl.flock(manager._lock_fd, fcntl.LOCK_UN)
    os.close(manager._lock_fd)
    manager = LogManager(tmp_path, CONFIG, now_ms=0)
    assert not manager.had_clean_shutdown
    assert {key: log.log_end_offset for key, log in manager.partitions().items()} == ends
    assert not any(log.recovery.clean for log in manager.partitions().values())
    manager.close()


def test_create_validates_and_delete_removes(tmp_path: Path) -> None:
    with LogManager(tmp_path, CONFIG, now_ms=0) as manager:
        for bad in ("", "a/b", "..", "x" * 250, "sp ace"):
            with pytest.raises(InvalidTopicError):
                manager.create(bad, 0, CONFIG)
        with pytest.raises(InvalidTopicError):
            manager.create("ok", -1, CONFIG)
        log = manager.create("my.topic-name_1", 7, CONFIG)
        log.append(make_batch(1), now_ms=1)
        assert (tmp_path / "my.topic-name_1-7").is_dir()
        manager.delete("my.topic-name_1", 7)
        manager.delete("my.topic-name_1", 7)
        assert manager.get("my.topic-name_1", 7) is None
        assert not (tmp_path / "my.topic-name_1-7").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]
    (tmp_path / "gone-3.abcd-delete").mkdir()
    (tmp_path / "not a partition").mkdir()
    with LogManager(tmp_path, CONFIG, now_ms=0) as manager:
        assert manager.partitions() == {}
        assert not (tmp_path / "gone-3.abcd-delete").exists()


def test_parse_partition_dir() -> None:
    assert parse_partition_dir("a-b-12") == ("a-b", 12)
    assert parse_partition_dir("a-") is None
    assert parse_partition_dir("a-x") is None
    assert parse_partition_dir("a-0.1234-delete") is None


def _maintain(log: PartitionLog, now_ms: int) -> None:
    # The storage steps of rilke.partition.maintenance, on this thread.
    log.maybe_flush(now_ms)
    log.maybe_roll(now_ms)
    log.flush_rolled_segments()
    log.apply_retention(now_ms)
    log.checkpoint()


def test_maintenance_retention_roll_flush_and_topic_configs(tmp_path: Path) -> None:
    special = LogConfig(segment_bytes=1000, retention_ms=100, segment_ms=50, flush_ms=10)
    with LogManager(tmp_path, CONFIG, now_ms=0, topic_configs={"hot": special}) as manager:
        log = manager.create("hot", 0, special)
        for i in range(30):
            log.append(make_batch(2, timestamp_ms=i), now_ms=1000)
        segments = len(log.segments)
        assert segments > 2
        _maintain(log, now_ms=1005)
        assert log.flushed_offset < log.log_end_offset
        _maintain(log, now_ms=1100)
        assert log.flushed_offset == log.log_end_offset
        assert len(log.segments) == 1  # rolled on age, then retention removed all but it
        assert log.segments[0].size == 0
    with LogManager(tmp_path, CONFIG, now_ms=0, topic_configs={"hot": special}) as manager:
        log = manager.get("hot", 0)
        assert log is not None
        assert log.config == special
        assert log.log_start_offset == log.log_end_offset == 60
