"""Decoding record batches into records.

:func:`iter_batches` walks consecutive batches in a buffer and checks each header (and CRC) as
it goes; :meth:`Batch.records` decodes one batch's records (decompressing them, bounded);
:func:`read_records` does both and yields every record of every batch.

A batch decodes whole or not at all: its records are decoded into a list before the first is
handed out, so corruption anywhere in a batch raises before any of its records is seen. Every
defect (truncation, bad CRC, bad varint, a length past the record's end, a key that is not
UTF-8, records that disagree with the header's count or offset span, trailing bytes) raises a
:class:`~rilke.errors.RecordsError` subclass; nothing else escapes.

Sans-I/O; the functions are pure and thread-safe (batches are read, never modified).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

from rilke.errors import CorruptRecordError, RecordsError
from rilke.records.accel import hot as _hot
from rilke.records.builder import Header
from rilke.records.compression import DEFAULT_MAX_DECOMPRESSED_BYTES, Compression, decompress
from rilke.records.header import (
    HEADER_SIZE,
    NO_SEQUENCE,
    BatchHeader,
    check_batch,
)

__all__ = ["Batch", "Record", "RecordColumns", "iter_batches", "read_batch", "read_records"]


class Record(NamedTuple):
    """One decoded record. ``batch`` is the header of the batch it came from.

    ``timestamp`` is the record's create time, or the batch's max timestamp for a
    LOG_APPEND_TIME batch (as Kafka readers do). ``headers`` is a tuple of (str, bytes or None).
    """

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]
    batch: BatchHeader

    @property
    def timestamp_type(self) -> int:
        return self.batch.timestamp_type

    @property
    def is_control(self) -> bool:
        return self.batch.is_control

    @property
    def is_transactional(self) -> bool:
        return self.batch.is_transactional

    @property
    def producer_id(self) -> int:
        return self.batch.producer_id

    @property
    def producer_epoch(self) -> int:
        return self.batch.producer_epoch

    @property
    def partition_leader_epoch(self) -> int:
        return self.batch.partition_leader_epoch

    @property
    def sequence(self) -> int:
        """The record's producer sequence (base sequence + offset delta, wrapping), or -1."""
        base = self.batch.base_sequence
        if base == NO_SEQUENCE:
            return NO_SEQUENCE
        return (base + self.offset - self.batch.base_offset) & 0x7FFFFFFF

    @property
    def control_type(self) -> int | None:
        """A control record's type (a :class:`ControlType` value or another int), else None."""
        key = self.key
        if not self.batch.is_control or key is None or len(key) < 4:
            return None
        return int.from_bytes(key[2:4], "big", signed=True)


class RecordColumns(NamedTuple):
    """The records of one batch as parallel lists, in offset order (all of one length).

    ``timestamps`` are each record's create time, or the batch's max timestamp for a
    LOG_APPEND_TIME batch. Columns let a caller build its own record type in one C-level
    pass (``map``/``zip``) instead of converting one record object into another.
    """

    offsets: list[int]
    timestamps: list[int]
    keys: list[bytes | None]
    values: list[bytes | None]
    headers: list[tuple[Header, ...]]


@dataclass(frozen=True, slots=True)
class Batch:
    """One checked batch inside a buffer: its header, and where it lies.

    The records are decoded only when :meth:`records` is called.
    """

    header: BatchHeader
    buffer: bytes | bytearray | memoryview
    position: int

    @property
    def size(self) -> int:
        return self.header.size

    @property
    def raw(self) -> bytes:
        """The batch's bytes (a copy)."""
        with memoryview(self.buffer) as view:
            return bytes(view[self.position : self.position + self.header.size])

    def records(
        self, *, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    ) -> list[Record]:
        """Decode every record of the batch, in offset order.

        Raises :class:`CorruptRecordError` for records that do not parse or disagree with the
        header, :class:`DecompressedTooLargeError` if the records inflate past
        ``max_decompressed_bytes``, and :class:`UnsupportedCompressionError` for a codec this
        build cannot read.
        """
        cols = self.columns(max_decompressed_bytes=max_decompressed_bytes)
        return list(
            map(
                tuple.__new__,
                repeat(Record),
                zip(
                    cols.offsets,
                    cols.timestamps,
                    cols.keys,
                    cols.values,
                    cols.headers,
                    repeat(self.header),
                ),
            )
        )

    def columns(
        self, *, max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES
    ) -> RecordColumns:
        """Decode every record of the batch into :class:`RecordColumns`; raises as
        :meth:`records` does. The cheapest way to many records: no object per record."""
        header = self.header
        start = self.position + HEADER_SIZE
        end = self.position + header.size
        buf = self.buffer
        if header.compression != Compression.NONE:
            with memoryview(buf) as view:
                data = decompress(header.compression, view[start:end], max_decompressed_bytes)
            start, end = 0, len(data)
        elif type(buf) is bytes:
            data = buf
        else:
            with memoryview(buf) as view:
                data = bytes(view[start:end])
            start, end = 0, len(data)
        return _decode_columns(header, data, start, end)


def read_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    check_crc: bool = True,
    max_size: int | None = None,
    header: BatchHeader | None = None,
) -> Batch:
    """The batch at ``pos``, with its header checked (:func:`check_batch`), records not decoded.

    ``header`` is the batch's header when the caller already read it (:func:`check_batch`).
    """
    return Batch(
        check_batch(buf, pos, max_size=max_size, check_crc=check_crc, header=header), buf, pos
    )


def iter_batches(
    buf: bytes | bytearray | memoryview,
    *,
    check_crc: bool = True,
    max_size: int | None = None,
) -> Iterator[Batch]:
    """Yield each consecutive batch in ``buf``, its header checked before it is yielded.

    Raises (from the first bad batch on) as :func:`check_batch` does; a trailing partial batch
    raises :class:`CorruptRecordError`.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        batch = read_batch(buf, pos, check_crc=check_crc, max_size=max_size)
        yield batch
        pos += batch.header.size


def read_records(
    buf: bytes | bytearray | memoryview,
    *,
    check_crc: bool = True,
    skip_control: bool = False,
    max_decompressed_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> Iterator[Record]:
    """Yield every record of every batch in ``buf``, in order.

    Each batch is checked and decoded whole before its first record is yielded, so a bad
    batch raises (a :class:`RecordsError` subclass) before any of its records appears; the
    records of the good batches before it have been yielded. ``skip_control`` leaves out
    control batches (transaction markers, Raft entries), as consumers do.
    """
    for batch in iter_batches(buf, check_crc=check_crc):
        if skip_control and batch.header.is_control:
            continue
        yield from batch.records(max_decompressed_bytes=max_decompressed_bytes)


def _decode_columns(header: BatchHeader, data: bytes, start: int, end: int) -> RecordColumns:
    try:
        return RecordColumns(*_hot.decode_columns(header, data, start, end))
    except RecordsError:
        raise
    except (IndexError, ValueError) as exc:
        # IndexError: a varint or field ran off the end of the data; ValueError covers
        # UnicodeDecodeError for a header key that is not UTF-8.
        raise CorruptRecordError(
            f"corrupt record in batch at base offset {header.base_offset}: {exc}"
        ) from None
