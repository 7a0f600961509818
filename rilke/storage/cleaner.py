"""Log compaction: keep the newest record per key in the non-active segments.

For logs whose cleanup policy includes "compact". One pass: build a map key -> offset of its
newest record over the non-active segments, then rewrite each non-active segment keeping, per
batch, the records that are the newest of their key (records without a key are kept), and
dropping tombstones (null values) once their batch is older than ``delete_retention_ms``.
Control batches are kept as they are. Batches keep their base offset, last offset delta,
timestamps, producer fields and leader epoch, so offsets never move; a batch left with no
record is dropped (the log then has gaps, as Kafka's compacted logs do).

Uncompressed batches are filtered record by record: the retained records' bytes are copied
unchanged (their offset and timestamp deltas stay valid) under a new header. Compressed batches
are decompressed only to read their keys and are kept whole if any record in them is retained
(re-compressing is left to the records layer).

Reading keys needs record decoding. rilke/records' reader had not landed on main when this was
written, so a minimal reader of the record layout lives here (:func:`iter_records`).

A segment is rewritten as ``<base>.log.cleaned`` (fsynced), its indexes are removed, the cleaned
file is renamed over the log and the directory fsynced; the indexes are rebuilt from the new
file. A crash at any point leaves the old or the new segment, never a mix (a leftover
``.cleaned`` file is removed on open; missing indexes are rebuilt).

Blocks on disk throughout; runs on the caller's thread, like the rest of storage.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
from collections.abc import Iterator
from typing import TYPE_CHECKING, NamedTuple

from crc32c import crc32c

from rilke.records.header import CRC_START, HEADER_SIZE, LOG_OVERHEAD, read_header
from rilke.storage import files
from rilke.storage.segment import LogSegment

if TYPE_CHECKING:
    from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

_COMPRESSION_NONE = 0
_COMPRESSION_GZIP = 1
_COMPRESSION_LZ4 = 3


class CleanerRecord(NamedTuple):
    """One record as the cleaner sees it."""

    offset_delta: int
    key: bytes | None
    is_tombstone: bool
    start: int  # where its bytes (length prefix included) start in the records buffer
    end: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """A zig-zag varint at ``pos``: (value, position after it)."""
    shift = 0
    raw = 0
    while True:
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def iter_records(records: bytes, count: int) -> Iterator[CleanerRecord]:
    """The records of a batch's (decompressed) records section.

    Raises ValueError or IndexError when the bytes do not hold.
    """
    pos = 0
    for _ in range(count):
        start = pos
        length, pos = _varint(records, pos)
        end = pos + length
        if length < 0 or end > len(records):
            raise ValueError("record length out of bounds")
        pos += 1  # attributes
        _, pos = _varint(records, pos)  # timestamp delta
        offset_delta, pos = _varint(records, pos)
        key_length, pos = _varint(records, pos)
        key = None
        if key_length >= 0:
            key = records[pos : pos + key_length]
            pos += key_length
        value_length, pos = _varint(records, pos)
        yield CleanerRecord(offset_delta, key, value_length < 0, start, end)
        pos = end


def _records_section(batch: bytes, compression: int) -> bytes:
    body = batch[HEADER_SIZE:]
    if compression == _COMPRESSION_NONE:
        return body
    if compression == _COMPRESSION_GZIP:
        return gzip.decompress(body)
    if compression == _COMPRESSION_LZ4:
        import lz4.frame

        result: bytes = lz4.frame.decompress(body)
        return result
    raise ValueError(f"compression codec {compression} is not readable by the cleaner")


def _batches(segment: LogSegment) -> Iterator[bytes]:
    for info in segment.walk(0, segment.size):
        yield segment.read(info.position, info.size)


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
            header = read_header(batch)
            if header.is_control:
                continue
            try:
                records = _records_section(batch, header.compression)
                for record in iter_records(records, header.records_count):
                    if record.key is not None:
                        newest[record.key] = header.base_offset + record.offset_delta
            except (ValueError, IndexError, OSError) as exc:
                log.warning(
                    "cleaner: skipping an unreadable batch at %d: %s", header.base_offset, exc
                )
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
        header = read_header(batch)
        if header.is_control:
            out.append(batch)
            continue
        expired = header.max_timestamp + delete_retention_ms <= now_ms
        try:
            section = _records_section(batch, header.compression)
            records = list(iter_records(section, header.records_count))
        except (ValueError, IndexError, OSError):
            out.append(batch)  # not ours to judge: keep it
            continue
        kept = [
            r
            for r in records
            if (r.key is None or newest.get(r.key) == header.base_offset + r.offset_delta)
            and not (r.is_tombstone and expired)
        ]
        if len(kept) == len(records):
            out.append(batch)
        elif not kept:
            changed = True
        elif header.compression != _COMPRESSION_NONE:
            out.append(batch)
        else:
            changed = True
            out.append(_rebuild(batch, section, kept))
    if not changed:
        return 0
    before = segment.size
    new_segment = _swap(partition_log, segment, b"".join(out))
    return before - new_segment.size


def _rebuild(batch: bytes, section: bytes, kept: list[CleanerRecord]) -> bytes:
    """The batch with only the ``kept`` records, under the same header fields."""
    body = b"".join(section[r.start : r.end] for r in kept)
    head = bytearray(batch[:HEADER_SIZE])
    struct.pack_into(">i", head, 8, HEADER_SIZE - LOG_OVERHEAD + len(body))
    struct.pack_into(">i", head, 57, len(kept))
    crc = crc32c(body, crc32c(bytes(head[CRC_START:])))
    struct.pack_into(">I", head, 17, crc)
    return bytes(head) + body


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
