"""Log compaction: keep the newest record per key in the non-active segments.

For logs whose cleanup policy includes "compact". One pass: build a map key -> offset of its
newest record over the non-active segments, then rewrite each non-active segment keeping, per
batch, the records that are the newest of their key (records without a key are kept), and
dropping tombstones (null values) once their batch is older than ``delete_retention_ms``.
Control batches are kept as they are. A batch that keeps all its records is copied unchanged;
one that loses some is rebuilt with :class:`rilke.records.BatchBuilder` under the same base
offset, last offset delta, codec, producer fields, leader epoch and timestamp type, so offsets
never move; a batch left with no record is dropped (the log then has gaps, as Kafka's
compacted logs do). A batch the records reader refuses is kept as it is.

A segment is rewritten as ``<base>.log.cleaned`` (fsynced), its indexes are removed, the cleaned
file is renamed over the log and the directory fsynced; the indexes are rebuilt from the new
file. A crash at any point leaves the old or the new segment, never a mix (a leftover
``.cleaned`` file is removed on open; missing indexes are rebuilt).

Blocks on disk throughout; runs on the caller's thread, like the rest of storage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from rilke.errors import RecordsError
from rilke.records import BatchBuilder, Record, read_batch
from rilke.records.header import LOG_APPEND_TIME, BatchHeader
from rilke.storage import files
from rilke.storage.segment import LogSegment

if TYPE_CHECKING:
    from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)


def _batches(segment: LogSegment) -> Iterator[bytes]:
    for info in segment.walk(0, segment.size):
        yield segment.read(info.position, info.size)


def _decoded(batch: bytes) -> tuple[BatchHeader, list[Record] | None]:
    """The batch's header and records (None when the records reader refuses them)."""
    checked = read_batch(batch, check_crc=False)
    try:
        return checked.header, checked.records()
    except RecordsError as exc:
        log.warning(
            "cleaner: keeping a batch it cannot read at %d: %s", checked.header.base_offset, exc
        )
        return checked.header, None


def compact_log(partition_log: PartitionLog, now_ms: int) -> int:
    """Compact the non-active segments of ``partition_log``; return the bytes freed."""
    # Cleaned segments must lie below the recovery point: recovery then trusts them and never
    # scans their gaps.
    partition_log.flush_rolled_segments()
    partition_log.checkpoint()
    segments = partition_log.segments[:-1]
    if not segments:
        return 0
    delete_retention_ms = partition_log.config.delete_retention_ms
    newest: dict[bytes, int] = {}
    for segment in segments:
        for batch in _batches(segment):
            header, records = _decoded(batch)
            if header.is_control or records is None:
                continue
            for record in records:
                if record.key is not None:
                    newest[record.key] = record.offset
    freed = 0
    for segment in segments:
        freed += _clean_segment(partition_log, segment, newest, now_ms, delete_retention_ms)
    return freed


def _clean_segment(
    partition_log: PartitionLog,
    segment: LogSegment,
    newest: dict[bytes, int],
    now_ms: int,
    delete_retention_ms: int,
) -> int:
    out: list[bytes] = []
    changed = False
    for batch in _batches(segment):
        header, records = _decoded(batch)
        if header.is_control or records is None:
            out.append(batch)
            continue
        expired = header.max_timestamp + delete_retention_ms <= now_ms
        kept = [
            r
            for r in records
            if (r.key is None or newest.get(r.key) == r.offset)
            and not (r.value is None and expired)
        ]
        if len(kept) == len(records):
            out.append(batch)
        elif not kept:
            changed = True
        else:
            changed = True
            out.append(_rebuild(header, kept))
    if not changed:
        return 0
    before = segment.size
    new_segment = _swap(partition_log, segment, b"".join(out))
    return before - new_segment.size


def _rebuild(header: BatchHeader, kept: list[Record]) -> bytes:
    """A batch of the ``kept`` records with ``header``'s base offset, span and fields."""
    builder = BatchBuilder(
        compression=header.compression,
        base_offset=header.base_offset,
        partition_leader_epoch=header.partition_leader_epoch,
        producer_id=header.producer_id,
        producer_epoch=header.producer_epoch,
        base_sequence=header.base_sequence,
        is_transactional=header.is_transactional,
        timestamp_type=header.timestamp_type,
    )
    for record in kept:
        timestamp = (
            header.max_timestamp if header.timestamp_type == LOG_APPEND_TIME else record.timestamp
        )
        builder.append_at(record.offset, record.key, record.value, record.headers, timestamp)
    return builder.build(last_offset_delta=header.last_offset_delta)


def _swap(partition_log: PartitionLog, segment: LogSegment, data: bytes) -> LogSegment:
    """Replace ``segment``'s file with ``data`` (crash-safe) and return the reopened segment."""
    directory = partition_log.directory
    base = segment.base_offset
    cleaned = files.log_path(directory, base).with_name(
        files.log_path(directory, base).name + files.CLEANED_SUFFIX
    )
    fd = os.open(cleaned, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        files.write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    interval = segment.index_interval_bytes
    rolling_base_ms = segment.rolling_base_ms
    segment.close()
    files.unlink_if_exists(files.index_path(directory, base))
    files.unlink_if_exists(files.time_index_path(directory, base))
    os.replace(cleaned, files.log_path(directory, base))
    files.fsync_dir(directory)
    new_segment, _ = LogSegment.open(directory, base, interval, rolling_base_ms)
    new_segment.recover(0)
    new_segment.sync_all()
    partition_log.replace_segment(segment, new_segment)
    return new_segment
