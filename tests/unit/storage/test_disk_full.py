"""A full disk (issue 8): a failed write leaves the log as it was, and writes resume once
space is freed. On a real small file system (tmpfs) where mounting is permitted, and with
ENOSPC injected otherwise."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from batches import make_batch
from small_fs import fill, small_file_system

from rilke.records.header import check_batch
from rilke.storage import index as index_module
from rilke.storage import segment as segment_module
from rilke.storage.config import LogConfig
from rilke.storage.index import OffsetIndex
from rilke.storage.log import PartitionLog

BATCH = make_batch(10, value_size=1000)  # ~10 KiB


def whole_batches(plog: PartitionLog) -> int:
    """The number of batches from the log start to its end, each checked (CRC included)."""
    count, offset = 0, plog.log_start_offset
    while offset < plog.log_end_offset:
        records = plog.read(offset, 1 << 20).records
        assert records, f"nothing readable at {offset} below the log end {plog.log_end_offset}"
        pos = 0
        while pos < len(records):
            header = check_batch(records, pos)
            pos += header.size
            offset = header.next_offset
            count += 1
    return count


def segment_files_match(plog: PartitionLog) -> None:
    for segment in plog.segments:
        assert os.path.getsize(segment.log_path) == segment.size, segment.log_path


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_full_file_system_refuses_appends_and_takes_them_again_once_freed(
    tmp_path: Path,
) -> None:
    with small_file_system(tmp_path / "fs", 1 << 20) as fs:
        config = LogConfig(segment_bytes=200_000)
        plog = PartitionLog.open(fs / "t-0", config, now_ms=0, recover=False)
        filler = fs / "filler"
        filler.write_bytes(b"\0" * 300_000)  # the space to free later
        written = 0
        with pytest.raises(OSError) as refused:
            for _ in range(1000):
                plog.append(BATCH, now_ms=0)
                written += 1
        assert refused.value.errno == errno.ENOSPC
        assert written > 0
        segment_files_match(plog)  # no torn batch left behind
        assert whole_batches(plog) == written
        with pytest.raises(OSError):
            plog.append(BATCH, now_ms=0)  # still full: refused again, still consistent
        segment_files_match(plog)
        filler.unlink()
        for _ in range(5):
            plog.append(BATCH, now_ms=0)
        plog.flush()
        plog.close()
        again = PartitionLog.open(fs / "t-0", config, now_ms=0, recover=True)
        try:
            assert whole_batches(again) == written + 5
            assert again.recovery.bytes_truncated == 0
        finally:
            again.close()


def test_closing_on_a_full_disk_closes_every_file(tmp_path: Path) -> None:
    with small_file_system(tmp_path / "fs", 1 << 20) as fs:
        plog = PartitionLog.open(
            fs / "t-0",
            LogConfig(segment_bytes=100_000, index_interval_bytes=1),
            now_ms=0,
            recover=False,
        )
        before = open_fds()
        for _ in range(30):
            plog.append(BATCH, now_ms=0)  # rolls: several segments, index entries pending
        fill(fs)
        with pytest.raises(OSError):
            plog.close()
        assert plog.closed
        assert open_fds() <= before - 3  # the first segment's files too


def test_a_write_torn_by_enospc_is_cut_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC after half a batch was written: the half is removed, the next append lands
    where the torn one would have."""
    plog = PartitionLog.open(tmp_path / "t-0", LogConfig(), now_ms=0, recover=False)
    plog.append(BATCH, now_ms=0)
    real_pwrite = os.pwrite

    def half(fd: int, data: object, position: int) -> int:
        pieces = data if isinstance(data, list) else [data]
        whole = b"".join(bytes(piece) for piece in pieces)
        return real_pwrite(fd, whole[: len(whole) // 2], position)

    def full(fd: int, data: object, position: int) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(segment_module, "_pwrite", half)
    monkeypatch.setattr(segment_module, "_pwritev", half)
    monkeypatch.setattr(os, "pwrite", full)  # what finishes a short write
    with pytest.raises(OSError):
        plog.append(BATCH, now_ms=0)
    monkeypatch.undo()
    segment_files_match(plog)
    assert plog.log_end_offset == 10
    plog.append(BATCH, now_ms=0)
    assert whole_batches(plog) == 2
    plog.close()
    reopened = PartitionLog.open(tmp_path / "t-0", LogConfig(), now_ms=0, recover=True)
    assert whole_batches(reopened) == 2
    reopened.close()


def test_an_index_write_cut_short_keeps_the_entries_it_did_not_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = OffsetIndex(tmp_path / "0.index", 0)
    for i in range(4):
        index.append(i * 10, i * 1000)
    real_pwrite = os.pwrite
    calls = {"n": 0}

    def short_then_full(fd: int, data: bytes, position: int) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_pwrite(fd, bytes(data)[:12], position)  # one entry and a half
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(index_module.os, "pwrite", short_then_full)
    with pytest.raises(OSError):
        index.flush()
    monkeypatch.undo()
    index.flush()
    index.close()
    loaded = OffsetIndex.load(tmp_path / "0.index", 0, 1 << 20)
    assert [loaded.lookup(i * 10) for i in range(4)] == [(i * 10, i * 1000) for i in range(4)]


def test_a_segment_the_disk_refuses_leaves_no_descriptor_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    before = open_fds()
    monkeypatch.setattr(index_module.TimeIndex, "reset", refuse)
    with pytest.raises(OSError):
        segment_module.LogSegment.create(tmp_path, 0, 4096, now_ms=0)
    assert open_fds() == before
