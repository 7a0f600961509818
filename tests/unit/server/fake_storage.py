"""An in-memory stand-in for rilke.storage (PartitionLog, LogManager), for broker unit tests.

It follows /work/wt/STORAGE_API.md closely enough for the gRPC layer: whole batches, offsets
assigned on append, reads bounded by max_offset, flush counting (to see group commit).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rilke.errors import DataDirLockedError, LogClosedError, OffsetOutOfRangeError
from rilke.records.header import (
    CheckedBatches,
    check_batch,
    read_header,
    set_base_offset,
    set_partition_leader_epoch,
)
from rilke.storage.config import LogConfig


@dataclass(frozen=True)
class AppendInfo:
    first_offset: int
    last_offset: int
    max_timestamp: int
    log_append_time_ms: int
    num_batches: int
    size_bytes: int


@dataclass(frozen=True)
class ReadResult:
    records: bytes
    log_start_offset: int
    log_end_offset: int
    next_offset: int = -1


class FakeFlushJob:
    """What FakeLog.begin_flush hands out: ``run`` (on a worker thread) does nothing."""

    def __init__(self, flushed_offset: int) -> None:
        self.flushed_offset = flushed_offset

    def run(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeLog:
    def __init__(self, directory: Path, config: LogConfig) -> None:
        self.directory = directory
        self.config = config
        self.batches: list[bytes] = []
        self.log_start_offset = 0
        self.log_end_offset = 0
        self.flushed_offset = 0
        self.flush_count = 0
        self.closed = False
        self.maintenance_runs = 0

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def append(self, batches, *, assign_offsets=True, leader_epoch=None, now_ms):  # type: ignore[no-untyped-def]
        if self.closed:
            raise LogClosedError()
        buf = bytearray(batches.data if isinstance(batches, CheckedBatches) else batches)
        pos = 0
        out = []
        offset = self.log_end_offset
        max_ts = -1
        while pos < len(buf):
            header = check_batch(buf, pos, max_size=self.config.max_message_bytes)
            set_base_offset(buf, offset, pos)
            if leader_epoch is not None:
                set_partition_leader_epoch(buf, leader_epoch, pos)
            out.append(bytes(buf[pos : pos + header.size]))
            offset += header.last_offset_delta + 1
            max_ts = max(max_ts, header.max_timestamp)
            pos += header.size
        first = self.log_end_offset
        self.batches.extend(out)
        self.log_end_offset = offset
        append_time = now_ms if self.config.message_timestamp_type == "LogAppendTime" else -1
        if self.config.flush_messages == 1:
            self.flush()
        return AppendInfo(first, offset - 1, max_ts, append_time, len(out), len(buf))

    def read(self, offset, max_bytes, max_offset=None):  # type: ignore[no-untyped-def]
        if self.closed:
            raise LogClosedError()
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(
                f"offset {offset} outside [{self.log_start_offset}, {self.log_end_offset}]"
            )
        chunks: list[bytes] = []
        size = 0
        next_offset = self.log_end_offset
        for batch in self.batches:
            header = read_header(batch)
            if header.last_offset < offset:
                continue
            if max_offset is not None and header.base_offset >= max_offset:
                next_offset = header.base_offset
                break
            if chunks and size + len(batch) > max_bytes:
                next_offset = header.base_offset
                break
            chunks.append(batch)
            size += len(batch)
        if not chunks:
            next_offset = offset
        return ReadResult(b"".join(chunks), self.log_start_offset, self.log_end_offset, next_offset)

    def offset_for_timestamp(self, timestamp_ms):  # type: ignore[no-untyped-def]
        for batch in self.batches:
            header = read_header(batch)
            if header.max_timestamp >= timestamp_ms:
                return header.base_offset, header.max_timestamp
        return None

    def flush(self, up_to_offset=None):  # type: ignore[no-untyped-def]
        if self.flushed_offset < self.log_end_offset:
            self.flush_count += 1
            self.flushed_offset = self.log_end_offset

    def begin_flush(self, up_to_offset=None):  # type: ignore[no-untyped-def]
        target = self.log_end_offset if up_to_offset is None else up_to_offset
        if target <= self.flushed_offset:
            return None
        return FakeFlushJob(self.log_end_offset)

    def end_flush(self, job):  # type: ignore[no-untyped-def]
        if job.flushed_offset > self.flushed_offset:
            self.flush_count += 1
            self.flushed_offset = job.flushed_offset
        return True

    def abort_flush(self, job):  # type: ignore[no-untyped-def]
        pass

    # What rilke.partition.maintenance uses: nothing to roll, compact or checkpoint here.
    rolled_offset = 0

    def maybe_roll(self, now_ms: int) -> bool:
        return False

    def flush_due(self, now_ms: int) -> bool:
        return False

    def apply_retention(
        self, now_ms: int, *, defer_unlink: bool = False, high_watermark: int | None = None
    ) -> int:
        self.maintenance_runs += 1
        return 0

    def take_deleted_files(self) -> list[Path]:
        return []

    def begin_checkpoint(self) -> None:
        return None

    def size_bytes(self) -> int:
        return sum(len(b) for b in self.batches)

    def close(self) -> None:
        self.flush()
        self.closed = True


_LOCKED: set[Path] = set()


class FakeLogManager:
    def __init__(self, data_dir: Path, default_config: LogConfig, *, now_ms: int) -> None:
        data_dir = Path(data_dir).resolve()
        if data_dir in _LOCKED:
            raise DataDirLockedError(f"{data_dir} is locked")
        _LOCKED.add(data_dir)
        self.data_dir = data_dir
        self.default_config = default_config
        self.logs: dict[tuple[str, int], FakeLog] = {}
        self.prepared: set[tuple[str, int]] = set()
        self.closed = False

    def get(self, topic: str, partition: int) -> FakeLog | None:
        return self.logs.get((topic, partition))

    def prepare_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        self.sync_prepared(self.make_partition_files(topic, partitions))

    def make_partition_files(self, topic: str, partitions: Iterable[int]) -> list[Path]:
        self.prepared.update((topic, p) for p in partitions)
        return []

    def sync_prepared(self, made: Iterable[Path]) -> None:
        pass

    def create(
        self, topic: str, partition: int, config: LogConfig, *, prepared: bool = False
    ) -> FakeLog:
        assert (topic, partition) not in self.logs
        assert not prepared or (topic, partition) in self.prepared
        log = FakeLog(self.data_dir / f"{topic}-{partition}", config)
        self.logs[(topic, partition)] = log
        return log

    def delete(self, topic: str, partition: int) -> None:
        log = self.logs.pop((topic, partition), None)
        if log is not None:
            log.closed = True

    def partitions(self) -> dict[tuple[str, int], FakeLog]:
        return dict(self.logs)

    def flush_all(self) -> None:
        for log in self.logs.values():
            log.flush()

    def close(self) -> None:
        for log in self.logs.values():
            log.close()
        self.closed = True
        _LOCKED.discard(self.data_dir)
