"""Test helper: drop a partition log as kill -9 would."""

from __future__ import annotations

import os

from rilke.storage.log import PartitionLog


def crash(log: PartitionLog) -> None:
    """Drop a log as kill -9 would: no flush, no checkpoint, buffered index entries lost.

    What was written to the files stays (the kernel keeps it), as after a process crash.
    """
    for segment in log.segments:
        for index_file in (segment.offset_index._file, segment.time_index._file):
            if index_file._fd is not None:
                os.close(index_file._fd)
                index_file._fd = None
        os.close(segment._fd)
        segment._fd = -1
    log._closed = True
