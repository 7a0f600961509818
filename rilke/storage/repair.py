"""Repairing a corrupt range: good copies of its batches written in place of the bad bytes.

The work of :meth:`rilke.storage.log.PartitionLog.repair_corrupt_range` (the seam a
replicated partition will use, see :class:`rilke.storage.integrity.RangeRepairer`). On the
log's thread; blocks on disk (copies the segment, fsyncs).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rilke.errors import (
    CorruptBatchError,
    CorruptRecordError,
    InvalidRecordError,
    RecordTooLargeError,
    StorageError,
)
from rilke.records.header import check_batch
from rilke.storage import files
from rilke.storage.integrity import CorruptRange
from rilke.storage.segment import LogSegment

if TYPE_CHECKING:
    from rilke.storage.log import PartitionLog

_ALL_OFFSETS = 1 << 63  # "every offset is durable": damage is recorded, never cut


def check_repair(bad: CorruptRange, batches: bytes) -> None:
    """Raise CorruptBatchError unless ``batches`` are whole batches whose CRCs hold, the
    first starting at ``bad.first_offset``, offsets increasing, the last ending at
    ``bad.next_offset``."""
    view = memoryview(batches)
    position = 0
    expected = bad.first_offset
    while position < len(view):
        try:
            header = check_batch(view, position)
        except (CorruptRecordError, InvalidRecordError, RecordTooLargeError) as exc:
            raise CorruptBatchError(f"repair of {bad}: batch at byte {position}: {exc}") from exc
        if header.base_offset < expected or (
            position == 0 and header.base_offset != bad.first_offset
        ):
            raise CorruptBatchError(
                f"repair of {bad}: batch at byte {position} has base offset "
                f"{header.base_offset}, expected {expected}"
            )
        expected = header.next_offset
        position += header.size
    if expected != bad.next_offset:
        raise CorruptBatchError(
            f"repair of {bad}: the batches end at offset {expected}, the range at {bad.next_offset}"
        )


def repair_range(
    partition_log: PartitionLog, bad: CorruptRange, batches: bytes, *, now_ms: int
) -> tuple[LogSegment, LogSegment]:
    """Rewrite the segment holding ``bad`` with ``batches`` in its place (checked first:
    :func:`check_repair`); returns (the old segment, the new one that replaced it in the
    log). The new file is written beside the old one, fsynced and renamed over it, so a crash
    leaves one or the other; its indexes are rebuilt, and any other range in it found again.
    Raises StorageError when ``bad`` is not a range of the log, CorruptBatchError when the
    batches do not fit it; on either nothing changes."""
    segment = next((s for s in partition_log.segments if s.base_offset == bad.segment_base), None)
    if segment is None or bad not in segment.corrupt:
        raise StorageError(f"{partition_log.directory}: no corrupt range {bad}")
    check_repair(bad, batches)
    if segment is partition_log.segments[-1]:
        partition_log.roll(now_ms)  # the active segment is never rewritten
    segments = partition_log.segments
    following = segments[segments.index(segment) + 1].base_offset
    rewritten = segment.log_path.with_name(segment.log_path.name + files.CLEANED_SUFFIX)
    with open(rewritten, "wb") as out:
        out.write(segment.read(0, bad.position))
        out.write(batches)
        out.write(segment.read(bad.end, segment.size - bad.end))
        out.flush()
        os.fsync(out.fileno())
    directory = partition_log.directory
    segment.close()
    files.unlink_if_exists(segment.offset_index.path)
    files.unlink_if_exists(segment.time_index.path)
    os.replace(rewritten, segment.log_path)
    files.fsync_dir(directory)
    repaired, _ = LogSegment.open(
        directory, segment.base_offset, segment.index_interval_bytes, segment.rolling_base_ms
    )
    repaired.recover(0, durable_before=_ALL_OFFSETS, next_offset_hint=following)
    repaired.sync_all()
    partition_log.replace_segment(segment, repaired)
    return segment, repaired
