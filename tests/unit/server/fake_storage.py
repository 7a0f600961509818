"""An in-memory stand-in for rilke.storage (PartitionLog, LogManager), for broker unit tests.

It follows /work/wt/STORAGE_API.md closely enough for the gRPC layer: whole batches, offsets
assigned on append, reads bounded by max_offset, flush counting (to see group commit).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rilke.errors import DataDirLockedError, LogClosedError, OffsetOutOfRangeError
from rilke.records.header import (
    check_batch,
    read_header,
    set_base_offset,
    set_partition_leader_epoch,
)

try:
    from rilke.storage.config import LogConfig
except ImportError:  # storage has not landed yet: a minimal LogConfig with the same names

    @dataclass(frozen=True)
    class LogConfig:  # type: ignore[no-redef]
        segment_bytes: int = 1 << 30
        segment_ms: int = 7 * 24 * 3600 * 1000
        index_interval_bytes: int = 4096
        segment_index_bytes: int = 10 << 20
        retention_ms: int = 7 * 24 * 3600 * 1000
        retention_bytes: int = -1
        cleanup_policy: str = "delete"
        delete_retention_ms: int = 24 * 3600 * 1000
        max_message_bytes: int = 1048588
        message_timestamp_type: str = "CreateTime"
        flush_messages: int | None = None
        flush_ms: int | None = None

        def __post_init__(self) -> None:
            from rilke.errors import InvalidConfigError

            if self.segment_bytes < 61:
                raise InvalidConfigError("segment.bytes: must be >= 61")
            if self.cleanup_policy not in ("delete", "compact", "compact,delete"):
                raise InvalidConfigError("cleanup.policy: bad value")
            if self.message_timestamp_type not in ("CreateTime", "LogAppendTime"):
                raise InvalidConfigError("message.timestamp.type: bad value")
            if self.flush_messages is not None and self.flush_messages < 1:
                raise InvalidConfigError("flush.messages: must be >= 1")

        @classmethod
        def from_topic_configs(cls, configs, base=None):  # type: ignore[no-untyped-def]
            from rilke.errors import InvalidConfigError

            changes = {}
            for key, value in configs.items():
                name = key.replace(".", "_")
                if name not in {f.name for f in dataclasses.fields(cls)}:
                    continue
                if name in ("cleanup_policy", "message_timestamp_type"):
                    changes[name] = value
                    continue
                try:
                    changes[name] = int(value)
                except ValueError:
                    raise InvalidConfigError(f"{key}: {value!r} is not an integer") from None
            return dataclasses.replace(base or cls(), **changes)

        def to_topic_configs(self):  # type: ignore[no-untyped-def]
            return {
                f.name.replace("_", "."): str(getattr(self, f.name))
                for f in dataclasses.fields(self)
            }


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

    def update_config(self, config: LogConfig) -> None:
        self.config = config

    def append(self, batches, *, assign_offsets=True, leader_epoch=None, now_ms):  # type: ignore[no-untyped-def]
        if self.closed:
            raise LogClosedError()
        buf = bytearray(batches)
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
        for batch in self.batches:
            header = read_header(batch)
            if header.last_offset < offset:
                continue
            if max_offset is not None and header.base_offset >= max_offset:
                break
            if chunks and size + len(batch) > max_bytes:
                break
            chunks.append(batch)
            size += len(batch)
        return ReadResult(b"".join(chunks), self.log_start_offset, self.log_end_offset)

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
        self.closed = False
        self.maintenance_runs = 0

    def get(self, topic: str, partition: int) -> FakeLog | None:
        return self.logs.get((topic, partition))

    def create(self, topic: str, partition: int, config: LogConfig) -> FakeLog:
        assert (topic, partition) not in self.logs
        log = FakeLog(self.data_dir / f"{topic}-{partition}", config)
        self.logs[(topic, partition)] = log
        return log

    def delete(self, topic: str, partition: int) -> None:
        log = self.logs.pop((topic, partition))
        log.closed = True

    def partitions(self) -> dict[tuple[str, int], FakeLog]:
        return dict(self.logs)

    def run_maintenance(self, now_ms: int) -> None:
        self.maintenance_runs += 1

    def flush_all(self) -> None:
        for log in self.logs.values():
            log.flush()

    def close(self) -> None:
        for log in self.logs.values():
            log.close()
        self.closed = True
        _LOCKED.discard(self.data_dir)


def install_if_missing() -> None:
    """Make `rilke.storage.config` and `rilke.storage.log` importable before storage lands."""
    import sys
    import types

    try:
        import rilke.storage.config
    except ImportError:
        module = types.ModuleType("rilke.storage.config")
        module.LogConfig = LogConfig  # type: ignore[attr-defined]
        sys.modules["rilke.storage.config"] = module
    try:
        import rilke.storage.log  # noqa: F401
    except ImportError:
        module = types.ModuleType("rilke.storage.log")
        module.PartitionLog = FakeLog  # type: ignore[attr-defined]
        module.AppendInfo = AppendInfo  # type: ignore[attr-defined]
        module.ReadResult = ReadResult  # type: ignore[attr-defined]
        sys.modules["rilke.storage.log"] = module
