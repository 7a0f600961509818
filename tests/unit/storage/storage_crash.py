"""Test helper: drop a partition log as kill -9 would."""

from __future__ import annotations

from rilke.storage.log import PartitionLog


def crash(log: PartitionLog) -> None:
    """Drop a log as kill -9 would: no flush, no checkpoint, buffered index entries lost.

    What was written to the files stays (the kernel keeps it), as after a process crash.
    """
    for segment in log.segments:
        for index_file in (segment.offset_index._file, segment.time_index._file):
            index_file._handle.close()  # without writing its buffered entries
        segment._log_file.close()
    log._closed = True
