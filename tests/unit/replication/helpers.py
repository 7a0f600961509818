"""Batches and logs for the replication tests."""

from __future__ import annotations

from pathlib import Path

from rilke.records.builder import BatchBuilder
from rilke.replication.raft_storage import PartitionRaftStorage
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog


def batch(count: int = 1, value: bytes = b"v") -> bytes:
    """An unstamped batch of ``count`` records (base offset 0, no leader epoch)."""
    builder = BatchBuilder()
    for i in range(count):
        builder.append(None, value + str(i).encode(), None, 1_000 + i)
    return builder.build()


def open_storage(directory: Path, config: LogConfig | None = None) -> PartitionRaftStorage:
    log = PartitionLog.open(directory, config or LogConfig(), now_ms=0, recover=True)
    return PartitionRaftStorage.open(log)
