"""Which old segments retention deletes: by time, by size, and below the log start offset.

Pure functions over (base offset, size, max timestamp) of the segments; the partition log does
the deleting. Retention removes whole segments from the oldest, never the active (last) one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class SegmentStat(NamedTuple):
    base_offset: int
    size: int
    max_timestamp: int


def expired_by_time(segments: Sequence[SegmentStat], retention_ms: int, now_ms: int) -> int:
    """How many leading segments (not the last) are older than ``retention_ms``.

    A segment is old when ``now_ms - max_timestamp > retention_ms``; -1 keeps all.
    """
    if retention_ms < 0:
        return 0
    count = 0
    for segment in segments[:-1]:
        if now_ms - segment.max_timestamp <= retention_ms:
            break
        count += 1
    return count


def expired_by_size(segments: Sequence[SegmentStat], retention_bytes: int) -> int:
    """How many leading segments (not the last) can go while keeping >= ``retention_bytes``.

    As in Kafka, a segment goes only if the log stays at or above the limit without it;
    -1 keeps all.
    """
    if retention_bytes < 0:
        return 0
    excess = sum(segment.size for segment in segments) - retention_bytes
    count = 0
    for segment in segments[:-1]:
        if excess - segment.size < 0:
            break
        excess -= segment.size
        count += 1
    return count


def below_log_start(segments: Sequence[SegmentStat], log_start_offset: int) -> int:
    """How many leading segments (not the last) hold only offsets below the log start."""
    count = 0
    for following in segments[1:]:
        if following.base_offset > log_start_offset:
            break
        count += 1
    return count


def segments_to_delete(
    segments: Sequence[SegmentStat],
    *,
    delete_policy: bool,
    retention_ms: int,
    retention_bytes: int,
    log_start_offset: int,
    now_ms: int,
    high_watermark: int | None = None,
) -> int:
    """How many leading segments retention deletes now (never the last one). With
    ``high_watermark`` (a replica's), only segments wholly below it: the log start never
    passes the high watermark, as in Kafka."""
    count = below_log_start(segments, log_start_offset)
    if delete_policy:
        count = max(
            count,
            expired_by_time(segments, retention_ms, now_ms),
            expired_by_size(segments, retention_bytes),
        )
    if high_watermark is not None:
        # The segments that hold only offsets below it (as below the log start).
        count = min(count, below_log_start(segments, high_watermark))
    return min(count, max(len(segments) - 1, 0))
