"""Crash tests: torn writes, flipped bytes, lost or damaged indexes, then reopen and compare."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from batches import make_batch
from storage_crash import crash

from rilke.records.header import iter_headers
from rilke.storage import LogConfig, PartitionLog
from rilke.storage.recovery import CHECKPOINT_FILE, Checkpoint

CONFIG = LogConfig(segment_bytes=1200, index_interval_bytes=150)
REPO_ROOT = Path(__file__).resolve().parents[3]


def build(path: Path, count: int = 25) -> tuple[PartitionLog, list[bytes]]:
    log = PartitionLog.open(path, CONFIG, now_ms=0, recover=False)
    stored = []
    for i in range(count):
        batch = bytearray(make_batch(1 + i % 3, timestamp_ms=1000 + 10 * i))
        log.append(batch, now_ms=1)
        stored.append(bytes(batch))
    return log, stored


def contents(log: PartitionLog) -> list[bytes]:
    """Every batch the log serves, read in small steps (so indexes are used)."""
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1)
        data = result.records
        ((_, header),) = list(iter_headers(data))  # exactly one batch, CRC checked
        out.append(data)
        offset = header.next_offset
    return out


def last_offset_of(batches: list[bytes]) -> int:
    ((_, header),) = list(iter_headers(batches[-1]))
    return header.last_offset


def check_same(log: PartitionLog, expected: list[bytes]) -> None:
    assert contents(log) == expected
    assert log.log_end_offset == (last_offset_of(expected) + 1 if expected else 0)
    for i, batch in enumerate(expected):
        ((_, header),) = list(iter_headers(batch))
        assert log.offset_for_timestamp(header.max_timestamp) == (
            header.base_offset,
            header.max_timestamp,
        ), i


@pytest.fixture
def crashed(tmp_path: Path) -> tuple[Path, list[bytes]]:
    """A log of several segments dropped as by kill -9, everything written, nothing flushed
    since the last roll."""
    log, stored = build(tmp_path / "orig" / "t-0")
    assert len(log.segments) >= 3
    crash(log)
    return tmp_path / "orig" / "t-0", stored


def active_log_file(directory: Path) -> Path:
    return sorted(directory.glob("*.log"))[-1]


def copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_torn_last_batch_at_every_byte(tmp_path: Path, crashed: tuple[Path, list[bytes]]) -> None:
    src, stored = crashed
    last = len(stored[-1])
    full = active_log_file(src).stat().st_size
    for cut in range(full - last, full):
        directory = copy(src, tmp_path / f"cut{cut}" / "t-0")
        with open(active_log_file(directory), "r+b") as f:
            f.truncate(cut)
        log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
        check_same(log, stored[:-1])
        assert log.recovery.bytes_truncated == cut - (full - last)
        # The log goes on from where it was cut.
        log.append(make_batch(1), now_ms=2)
        assert log.log_end_offset == last_offset_of(stored[:-1]) + 2
        log.close()
        shutil.rmtree(directory.parent)


def test_torn_tail_with_garbage_after_it(tmp_path: Path, crashed: tuple[Path, list[bytes]]) -> None:
    src, stored = crashed
    directory = copy(src, tmp_path / "g" / "t-0")
    with open(active_log_file(directory), "ab") as f:
        f.write(b"\x00" * 100 + os.urandom(300))
    log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
    check_same(log, stored)


def test_every_flipped_byte_of_the_last_batch_is_cut(
    tmp_path: Path, crashed: tuple[Path, list[bytes]]
) -> None:
    src, stored = crashed
    last = len(stored[-1])
    full = active_log_file(src).stat().st_size
    for position in range(full - last, full):
        if 12 <= position - (full - last) < 16:
            continue  # the partition leader epoch is outside the CRC and any value is valid
        directory = copy(src, tmp_path / f"flip{position}" / "t-0")
        with open(active_log_file(directory), "r+b") as f:
            f.seek(position)
            byte = f.read(1)[0]
            f.seek(position)
            f.write(bytes([byte ^ 0x10]))
        log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
        check_same(log, stored[:-1])
        crash(log)
        shutil.rmtree(directory.parent)


def test_a_flipped_byte_mid_segment_cuts_there_and_drops_later_segments(
    tmp_path: Path, crashed: tuple[Path, list[bytes]]
) -> None:
    src, stored = crashed
    directory = copy(src, tmp_path / "mid" / "t-0")
    (directory / CHECKPOINT_FILE).unlink(missing_ok=True)  # recover everything
    first = sorted(directory.glob("*.log"))[0]
    sizes = [len(b) for b in stored]
    with open(first, "r+b") as f:
        f.seek(sizes[0] + sizes[1] + 40)
        f.write(b"\xff")
    log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
    check_same(log, stored[:2])
    assert len(log.segments) == 1
    assert log.recovery.segments_deleted


@pytest.mark.parametrize("which", ["index", "timeindex", "both"])
@pytest.mark.parametrize("recover", [False, True])
def test_deleted_indexes_are_rebuilt(
    tmp_path: Path, crashed: tuple[Path, list[bytes]], which: str, recover: bool
) -> None:
    src, stored = crashed
    directory = copy(src, tmp_path / "d" / "t-0")
    for suffix in ["index", "timeindex"] if which == "both" else [which]:
        for path in directory.glob(f"*.{suffix}"):
            path.unlink()
    log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=recover)
    check_same(log, stored)
    assert len(log.recovery.indexes_rebuilt) == len(log.segments)
    log.close()
    log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    check_same(log, stored)
    assert log.recovery.indexes_rebuilt == []


@pytest.mark.parametrize("recover", [False, True])
def test_damaged_indexes_are_detected(
    tmp_path: Path, crashed: tuple[Path, list[bytes]], recover: bool
) -> None:
    src, stored = crashed
    log = PartitionLog.open(copy(src, tmp_path / "x" / "t-0"), CONFIG, now_ms=0, recover=False)
    log.close()  # a clean close: every index entry is in the files
    index_files = sorted((tmp_path / "x" / "t-0").glob("*index"))
    damages = 0
    for path in index_files:
        size = path.stat().st_size
        for position in range(size):
            # Every byte of the first and last entries, a sample of those in between.
            if 24 <= position < size - 24 and position % 7:
                continue
            for damage in ("flip", "cut") if position % 4 == 1 else ("flip",):
                directory = copy(tmp_path / "x" / "t-0", tmp_path / f"y{damages}" / "t-0")
                damages += 1
                target = directory / path.name
                data = bytearray(target.read_bytes())
                if damage == "flip":
                    data[position] ^= 0x41
                else:
                    del data[position:]
                target.write_bytes(bytes(data))
                log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=recover)
                check_same(log, stored)
                crash(log)
                shutil.rmtree(directory.parent)
    assert damages > 40


def test_only_bytes_past_the_checkpoint_are_scanned(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=5000, index_interval_bytes=100)
    directory = tmp_path / "t-0"
    log = PartitionLog.open(directory, config, now_ms=0, recover=False)
    stored = []
    for i in range(120):
        batch = bytearray(make_batch(2, timestamp_ms=i))
        log.append(batch, now_ms=1)
        stored.append(bytes(batch))
        if i == 100:
            log.flush()
            log.checkpoint()
    segments = [s.base_offset for s in log.segments]
    assert len(segments) >= 3
    active_size = log.segments[-1].size
    crash(log)
    log = PartitionLog.open(directory, config, now_ms=0, recover=True)
    assert log.recovery.segments_scanned == [segments[-1]]
    assert 0 < log.recovery.bytes_scanned < active_size
    assert contents(log) == stored


def test_clean_open_scans_nothing_and_unclean_open_without_checkpoint_scans_all(
    tmp_path: Path,
) -> None:
    log, stored = build(tmp_path / "t-0")
    log.close()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, now_ms=0, recover=False)
    assert log.recovery.segments_scanned == []
    crash(log)
    (tmp_path / "t-0" / CHECKPOINT_FILE).unlink()
    log = PartitionLog.open(tmp_path / "t-0", CONFIG, now_ms=0, recover=True)
    assert log.recovery.segments_scanned == [s.base_offset for s in log.segments]
    check_same(log, stored)


_CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, sys.argv[2])
    from batches import make_batch
    from rilke.storage import LogConfig, PartitionLog
    log = PartitionLog.open(Path(sys.argv[1]), LogConfig(segment_bytes=20000, flush_messages=7),
                            now_ms=0, recover=True)
    i = 0
    while True:
        log.append(make_batch(1 + i % 3, value_size=50), now_ms=1)
        i += 1
        if i % 50 == 0:
            log.flush_rolled_segments()
            log.checkpoint()
        if i == 300:
            print("ready", flush=True)
    """
)


@pytest.mark.slow
def test_sigkill_mid_append_leaves_a_consistent_prefix(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(directory), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        line = proc.stdout.readline()
        assert line.strip() == b"ready", line
        assert time.monotonic() < deadline
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stdout is not None:
            proc.stdout.close()
    checkpoint = Checkpoint.read(directory)
    assert checkpoint is not None
    log = PartitionLog.open(directory, LogConfig(segment_bytes=20000), now_ms=0, recover=True)
    assert log.log_end_offset >= 300
    batches = contents(log)
    expected_offset = 0
    for data in batches:
        ((_, header),) = list(iter_headers(data))
        assert header.base_offset == expected_offset
        expected_offset = header.next_offset
    assert expected_offset == log.log_end_offset
    # Only the segment holding the recovery point and those after it were scanned.
    holder = max(s.base_offset for s in log.segments if s.base_offset <= checkpoint.recovery_point)
    scanned = log.recovery.segments_scanned
    assert scanned == [s.base_offset for s in log.segments if s.base_offset >= holder]


@pytest.mark.parametrize("new_segment_data", [False, True], ids=["empty", "with-data"])
def test_a_tail_lost_at_a_batch_boundary_before_a_rolled_segment_drops_the_later_segments(
    tmp_path: Path, new_segment_data: bool
) -> None:
    """Simulation seed 19365: batches appended to a segment, the segment rolled (the new file
    created), then power lost before the old segment's tail was synced. The tail is lost whole
    (the cut lands on a batch boundary, so no batch fails its CRC) while the new segment's
    file survives. The log must end where the old segment's data ends, not at the new
    segment's base: offsets in between would be a hole the log claims to hold (a Raft
    replica then counts entries it does not have)."""
    directory = tmp_path / "t-0"
    log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    stored = []
    for i in range(3):
        batch = bytearray(make_batch(2, timestamp_ms=1000 + i))
        log.append(batch, now_ms=1)
        stored.append(bytes(batch))
    log.flush()
    log.checkpoint()
    durable_size = log.segments[-1].size
    for i in range(2):  # appended, never synced
        log.append(bytearray(make_batch(2, timestamp_ms=2000 + i)), now_ms=1)
    log.roll(now_ms=1)
    rolled_base = log.segments[-1].base_offset
    assert rolled_base == 10
    if new_segment_data:
        log.append(bytearray(make_batch(1, timestamp_ms=3000)), now_ms=1)
    crash(log)
    old_file = sorted(directory.glob("*.log"))[0]
    with old_file.open("r+b") as f:
        f.truncate(durable_size)  # the unsynced tail lost whole
    log = PartitionLog.open(directory, CONFIG, now_ms=0, recover=True)
    assert log.log_end_offset == 6
    assert [s.base_offset for s in log.segments] == [0]
    assert rolled_base in log.recovery.segments_deleted
    assert contents(log) == stored
    # Appends go on from the real end, contiguous.
    info = log.append(bytearray(make_batch(1, timestamp_ms=4000)), now_ms=1)
    assert info.first_offset == 6
    log.close()
