"""Fixtures and helpers for the storage tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from rilke.storage.log import PartitionLog


def crash(log: PartitionLog) -> None:
    """Drop a log as kill -9 would: no flush, no checkpoint, buffered index entries lost.

    What was written to the files stays (the kernel keeps it), as after a process crash.
    """
    for segment in log.segments:
        segment.offset_index._file._pending.clear()
        segment.time_index._file._pending.clear()
        segment.close()
    log._closed = True
