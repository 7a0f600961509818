"""Log compaction: keep the newest record per key in the non-active segments.

For logs whose cleanup policy includes "compact". One pass: build a map key -> offset of its
newest record over the non-active segments, then rewrite each non-active segment keeping, per
batch, the records that are the newest of their key (records without a key are kept), and
dropping tombstones (null values) once their batch is older than ``delete_retention_ms``.
Control batches are kept as they are. A batch that keeps all its records is copied unchanged;
one that loses some is rebuilt with :class:`rilke.records.BatchBuilder` under the same base
offset, last offset delta, codec, producer fields, leader epoch and timestamp type, so offsets
never move; a batch left with no record is dropped (the log then has gaps, as Kafka's
compacted logs do), or, with ``keep_empty_batches`` (a replicated log, whose Raft entries are
its batches), kept as an empty batch (:func:`rilke.records.build_empty_batch`: header only,
same offset span, leader epoch and producer fields), so the log has no gaps and every entry
keeps its index and term. A batch the records reader refuses is kept as it is.

Only the segments given are read for the key map, so a record is removed only for a newer
one of its key in those segments: a caller bounding them (``up_to_offset``: below a
replica's high watermark) never lets an uncommitted record, which a truncation may cut,
remove a committed one.

A segment is rewritten as ``<base>.log.cleaned`` (fsynced), its indexes are removed, the cleaned
file is renamed over the log and the directory fsynced; the indexes are rebuilt from the new
file. A crash at any point leaves the old or the new segment, never a mix (a leftover
``.cleaned`` file is removed on open; missing indexes are rebuilt).

Blocks on disk throughout. :func:`compact_log` runs on the caller's thread, like the rest of
storage; a caller that must not stall (the broker's event loop) uses the three steps instead:
:func:`plan_compaction` and :func:`finish_compaction` on the log's thread, ``plan.run()`` (the
reading, deciding and writing: nearly all the work) on a worker thread.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from rilke.errors import RecordsError
from rilke.records import BatchBuilder, Record, build_empty_batch, read_batch
from rilke.records.header import LOG_APPEND_TIME, BatchHeader, peek_size
from rilke.storage import files
from rilke.storage.segment import LogSegment, SegmentCorruptError

if TYPE_CHECKING:
    from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20


def _batches(fd: int, size: int) -> Iterator[bytes]:
    """The batches of a segment file of ``size`` trusted bytes, read through ``fd``."""
    position = 0
    buf = b""
    buf_start = 0
    while position < size:
        rel = position - buf_start
        length = peek_size(buf, rel)
        if length is None or rel + length > len(buf):
            want = min(max(_READ_CHUNK, length or 0), size - position)
            buf = os.pread(fd, want, position)
            buf_start, rel = position, 0
            length = peek_size(buf, 0)
            if length is None or length > len(buf):
                raise SegmentCorruptError(f"fd {fd}: short batch at {position}")
        yield buf[rel : rel + length]
        position += length


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
    """Compact the non-active segments of ``partition_log``; return the bytes freed.

    All on the caller's thread: :func:`plan_compaction`, ``plan.run()``,
    :func:`finish_compaction`.
    """
    # Cleaned segments must lie below the recovery point: recovery then trusts them and never
    # scans their gaps.
    partition_log.flush_rolled_segments()
    partition_log.checkpoint()
    plan = plan_compaction(partition_log, now_ms)
    if plan is None:
        return 0
    try:
        plan.run()
    except BaseException:
        plan.abort()
        raise
    return finish_compaction(partition_log, plan)


class CompactionPlan:
    """A compaction of a snapshot of a log's sealed segments, in three steps.

    :func:`plan_compaction` (the log's thread) takes duplicated descriptors of the sealed
    segments; ``run`` (any thread: it touches only those descriptors and new ``.cleaned``
    files) reads them, decides what to keep and writes and fsyncs a ``.cleaned`` file per
    segment that changes; :func:`finish_compaction` (the log's thread again) swaps each in
    while its segment is still in the log unchanged, or ``abort`` removes them. The log may
    take appends, rolls and reads meanwhile; segments deleted or truncated meanwhile are
    skipped at the swap.
    """

    def __init__(
        self,
        directory: Path,
        segments: list[tuple[LogSegment, int, int]],
        now_ms: int,
        delete_retention_ms: int,
        *,
        keep_empty_batches: bool = False,
    ) -> None:
        self.directory = directory
        self._segments = segments  # (segment, its size, a duplicated descriptor)
        self._now_ms = now_ms
        self._delete_retention_ms = delete_retention_ms
        self._keep_empty_batches = keep_empty_batches
        self.cleaned: list[tuple[LogSegment, int, Path, int]] = []  # segment, size, file, size

    def run(self) -> None:
        """Read, decide and write the cleaned files (fsynced). Blocks on disk; may run on any
        thread. Closes the descriptors."""
        try:
            newest: dict[bytes, int] = {}
            for _, size, fd in self._segments:
                for batch in _batches(fd, size):
                    header, records = _decoded(batch)
                    if header.is_control or records is None:
                        continue
                    for record in records:
                        if record.key is not None:
                            newest[record.key] = record.offset
            for segment, size, fd in self._segments:
                data = _cleaned_bytes(
                    fd,
                    size,
                    newest,
                    self._now_ms,
                    self._delete_retention_ms,
                    keep_empty=self._keep_empty_batches,
                )
                if data is None:
                    continue
                path = _cleaned_path(self.directory, segment.base_offset)
                out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                try:
                    files.write_all(out, data)
                    os.fsync(out)
                finally:
                    os.close(out)
                self.cleaned.append((segment, size, path, len(data)))
        finally:
            self._close()

    def abort(self) -> None:
        """Close the descriptors and remove the cleaned files (the log is left as it was)."""
        self._close()
        for _, _, path, _ in self.cleaned:
            files.unlink_if_exists(path)
        self.cleaned = []

    def _close(self) -> None:
        segments, self._segments = self._segments, []
        for _, _, fd in segments:
            os.close(fd)


def plan_compaction(
    partition_log: PartitionLog,
    now_ms: int,
    *,
    up_to_offset: int | None = None,
    keep_empty_batches: bool = False,
) -> CompactionPlan | None:
    """Snapshot the sealed segments for a compaction, or None if there are none.

    Only segments that end at or below ``up_to_offset`` (default: all sealed ones) are taken:
    the caller passes the recovery point of the checkpoint on disk, since cleaned segments
    must lie below it (recovery trusts them and never scans their gaps), and a replica also
    its high watermark (never compact what is not committed). ``keep_empty_batches``: see
    the module docstring. On the log's thread.
    """
    segments = [
        segment
        for segment in partition_log.segments[:-1]
        # A segment with a corrupt range keeps its bytes as they are, for a repair (and a
        # rewrite would drop the offsets the range held).
        if (up_to_offset is None or segment.next_offset <= up_to_offset) and not segment.corrupt
    ]
    if not segments:
        return None
    taken: list[tuple[LogSegment, int, int]] = []
    try:
        for segment in segments:
            taken.append((segment, segment.size, segment.dup_log_fd()))
    except BaseException:
        for _, _, fd in taken:
            os.close(fd)
        raise
    return CompactionPlan(
        partition_log.directory,
        taken,
        now_ms,
        partition_log.config.delete_retention_ms,
        keep_empty_batches=keep_empty_batches,
    )


def finish_compaction(
    partition_log: PartitionLog, plan: CompactionPlan, *, max_segments: int | None = None
) -> int:
    """Swap in the cleaned segments of a plan that ran; the bytes freed. On the log's thread.

    A segment no longer in the log (deleted by retention, truncated away, closed) or changed
    since the plan keeps its old bytes and its cleaned file is removed. With
    ``max_segments``, swaps at most that many and leaves the rest in ``plan.cleaned`` for
    the next call (so a caller can let other work run between swaps). Blocks on disk.
    """
    freed = 0
    done = 0
    while plan.cleaned and (max_segments is None or done < max_segments):
        segment, size, path, _ = plan.cleaned.pop(0)
        current = partition_log.segments
        if (
            partition_log.closed
            or segment is current[-1]
            or not any(s is segment for s in current)
            or segment.size != size
            or segment.corrupt
        ):
            files.unlink_if_exists(path)
            continue
        new_segment = _swap(partition_log, segment, path)
        freed += size - new_segment.size
        done += 1
    return freed


def _cleaned_bytes(
    fd: int,
    size: int,
    newest: dict[bytes, int],
    now_ms: int,
    delete_retention_ms: int,
    *,
    keep_empty: bool,
) -> bytes | None:
    """The segment's bytes after compaction, or None if nothing would change. A batch left
    with no record is dropped, or with ``keep_empty`` kept as an empty batch."""
    out: list[bytes] = []
    changed = False
    for batch in _batches(fd, size):
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
            if keep_empty:
                out.append(build_empty_batch(header))
        else:
            changed = True
            out.append(_rebuild(header, kept))
    return b"".join(out) if changed else None


def _cleaned_path(directory: Path, base_offset: int) -> Path:
    log_path = files.log_path(directory, base_offset)
    return log_path.with_name(log_path.name + files.CLEANED_SUFFIX)


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


def _swap(partition_log: PartitionLog, segment: LogSegment, cleaned: Path) -> LogSegment:
    """Replace ``segment``'s file with the fsynced ``cleaned`` file (crash-safe) and return
    the reopened segment."""
    directory = partition_log.directory
    base = segment.base_offset
    interval = segment.index_interval_bytes
    rolling_base_ms = segment.rolling_base_ms
    segment.close()
    files.unlink_if_exists(files.index_path(directory, base))
    files.unlink_if_exists(files.time_index_path(directory, base))
    os.replace(cleaned, files.log_path(directory, base))
    files.fsync_dir(directory)
    new_segment, _ = LogSegment.open(
        directory, base, interval, rolling_base_ms, cache=partition_log.file_cache
    )
    new_segment.recover(0)
    new_segment.sync_all()
    partition_log.replace_segment(segment, new_segment)
    return new_segment
