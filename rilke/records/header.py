"""The 61-byte header of Kafka's RecordBatch v2, read and checked without decoding records.

Layout (big-endian), with offsets from the start of the batch::

    0  base_offset             int64
    8  batch_length            int32   bytes after this field, to the batch's end
    12 partition_leader_epoch  int32   Rilke keeps the Raft term here
    16 magic                   int8    always 2
    17 crc                     uint32  CRC32C of bytes 21..end
    21 attributes              int16   compression (bits 0-2), timestamp type (3),
                                       transactional (4), control (5), delete horizon (6)
    23 last_offset_delta       int32
    27 base_timestamp          int64
    35 max_timestamp           int64
    43 producer_id             int64
    51 producer_epoch          int16
    53 base_sequence           int32
    57 records_count           int32
    61 records...

Base offset and partition leader epoch lie outside the CRC, so the broker may rewrite them in
place (:func:`set_base_offset`, :func:`set_partition_leader_epoch`) and the CRC still holds.

This module is sans-I/O: it works on bytes and buffers only.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from crc32c import crc32c

from rilke.errors import CorruptRecordError, InvalidRecordError, RecordTooLargeError

MAGIC = 2

# The layout, once: (field, struct code) in order. Every position, size and struct below (and
# the partial structs other modules ask for with :func:`header_struct`) is derived from it.
FIELDS: tuple[tuple[str, str], ...] = (
    ("base_offset", "q"),
    ("batch_length", "i"),
    ("partition_leader_epoch", "i"),
    ("magic", "b"),
    ("crc", "I"),
    ("attributes", "h"),
    ("last_offset_delta", "i"),
    ("base_timestamp", "q"),
    ("max_timestamp", "q"),
    ("producer_id", "q"),
    ("producer_epoch", "h"),
    ("base_sequence", "i"),
    ("records_count", "i"),
)
_POSITIONS: dict[str, int] = {}
_pos = 0
for _name, _code in FIELDS:
    _POSITIONS[_name] = _pos
    _pos += struct.calcsize(">" + _code)
HEADER_SIZE = _pos
del _pos, _name, _code


def field_position(name: str) -> int:
    """Where the header field ``name`` starts, from the start of the batch."""
    return _POSITIONS[name]


def header_struct(*names: str) -> struct.Struct:
    """A struct that unpacks the named fields (in layout order) from the start of a batch,
    skipping the others as padding and ending at the last one named: one unpack of just the
    fields a hot path needs, with the layout still declared only here."""
    wanted = set(names)
    unknown = wanted - _POSITIONS.keys()
    if unknown:
        raise ValueError(f"no such batch header fields: {sorted(unknown)}")
    order = [name for name, _ in FIELDS if name in wanted]
    if order != list(names):
        raise ValueError(f"fields must be named in layout order: {order}")
    parts: list[str] = []
    skipped = 0
    for name, code in FIELDS:
        if not wanted:
            break
        if name in wanted:
            if skipped:
                parts.append(f"{skipped}x")
                skipped = 0
            parts.append(code)
            wanted.discard(name)
        else:
            skipped += struct.calcsize(">" + code)
    return struct.Struct(">" + "".join(parts))


LOG_OVERHEAD = field_position("partition_leader_epoch")  # the bytes outside batch_length
CRC_START = field_position("attributes")

BASE_OFFSET_POS = field_position("base_offset")
LENGTH_POS = field_position("batch_length")
LEADER_EPOCH_POS = field_position("partition_leader_epoch")
MAGIC_POS = field_position("magic")
CRC_POS = field_position("crc")
ATTRIBUTES_POS = field_position("attributes")
MAX_TIMESTAMP_POS = field_position("max_timestamp")
BASE_SEQUENCE_POS = field_position("base_sequence")

COMPRESSION_MASK = 0x07
TIMESTAMP_TYPE_MASK = 0x08
TRANSACTIONAL_MASK = 0x10
CONTROL_MASK = 0x20
DELETE_HORIZON_MASK = 0x40
MAX_COMPRESSION_ID = 4  # zstd: the highest codec id Kafka defines

NO_PRODUCER_ID = -1
NO_PRODUCER_EPOCH = -1
NO_SEQUENCE = -1
NO_PARTITION_LEADER_EPOCH = -1
NO_TIMESTAMP = -1

CREATE_TIME = 0
LOG_APPEND_TIME = 1

_HEADER = header_struct(*(name for name, _ in FIELDS))
_PREFIX = header_struct("base_offset", "batch_length")
_INT64 = struct.Struct(">q")
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")
_INT16 = struct.Struct(">h")


@dataclass(frozen=True, slots=True)
class BatchHeader:
    """The decoded header of one batch. ``size`` is the whole batch's length in bytes."""

    base_offset: int
    batch_length: int
    partition_leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    records_count: int

    @property
    def size(self) -> int:
        return self.batch_length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.last_offset + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL_MASK)

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL_MASK)

    @property
    def timestamp_type(self) -> int:
        """0 for create time, 1 for log append time."""
        return 1 if self.attributes & TIMESTAMP_TYPE_MASK else 0

    @property
    def last_sequence(self) -> int:
        if self.base_sequence == NO_SEQUENCE:
            return NO_SEQUENCE
        return (self.base_sequence + self.last_offset_delta) & 0x7FFFFFFF


def read_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Decode the header of the batch starting at ``pos``, checking only that it is there.

    Raises :class:`CorruptRecordError` if fewer than 61 bytes remain or the magic is not 2.
    Does not check the CRC or that the whole batch is present: see :func:`check_batch`.
    """
    if len(buf) - pos < HEADER_SIZE:
        raise CorruptRecordError(
            f"truncated batch header: {len(buf) - pos} bytes, need {HEADER_SIZE}"
        )
    fields = _HEADER.unpack_from(buf, pos)
    header = BatchHeader(*fields)
    if header.magic != MAGIC:
        raise CorruptRecordError(f"unsupported batch magic {header.magic}, expected {MAGIC}")
    if header.batch_length < HEADER_SIZE - LOG_OVERHEAD:
        raise CorruptRecordError(f"batch length {header.batch_length} is shorter than a header")
    return header


def compute_crc(buf: bytes | bytearray | memoryview, pos: int, size: int) -> int:
    """CRC32C of the CRC-covered part (attributes to end) of the batch at ``pos``."""
    view = memoryview(buf)[pos + CRC_START : pos + size]
    try:
        return crc32c(view)
    finally:
        view.release()


def check_batch(
    buf: bytes | bytearray | memoryview,
    pos: int = 0,
    *,
    max_size: int | None = None,
    check_crc: bool = True,
    header: BatchHeader | None = None,
) -> BatchHeader:
    """Validate the batch at ``pos`` without decoding its records, and return its header.

    Checks: a whole header, magic 2, the batch is entirely within ``buf``, its size is within
    ``max_size``, the CRC holds, and the record count and last offset delta agree (a batch of n
    records spans n offsets unless compaction removed some: count <= delta + 1; Kafka's
    compaction may also leave an empty batch that keeps its offset span), and the compression
    codec id is one Kafka defines (0-4). ``check_crc=False`` skips only the CRC. Raises
    :class:`CorruptRecordError` for bytes that do not hold, :class:`RecordTooLargeError` past
    ``max_size`` and :class:`InvalidRecordError` for a well-formed batch that breaks a rule.
    ``header``, when given, is :func:`read_header` of the same ``buf`` and ``pos`` (a caller
    that already read it, to decide whether to read the batch at all): it is not read again,
    and every other check is made against it.
    """
    if header is None:
        header = read_header(buf, pos)
    size = header.size
    if max_size is not None and size > max_size:
        raise RecordTooLargeError(f"batch of {size} bytes exceeds the maximum of {max_size}")
    if len(buf) - pos < size:
        raise CorruptRecordError(
            f"truncated batch: header says {size} bytes, only {len(buf) - pos} present"
        )
    if check_crc:
        actual = compute_crc(buf, pos, size)
        if actual != header.crc:
            raise CorruptRecordError(
                f"batch CRC mismatch at base offset {header.base_offset}: "
                f"stored {header.crc:#010x}, computed {actual:#010x}"
            )
    if header.records_count < 0 or header.last_offset_delta < 0:
        raise InvalidRecordError(
            f"negative record count ({header.records_count}) or last offset delta "
            f"({header.last_offset_delta})"
        )
    if header.records_count > header.last_offset_delta + 1:
        raise InvalidRecordError(
            f"batch claims {header.records_count} records in {header.last_offset_delta + 1} offsets"
        )
    if header.compression > MAX_COMPRESSION_ID:
        raise InvalidRecordError(f"unknown compression codec id {header.compression}")
    return header


_CHECKER = object()  # only check_batches holds it: no other code makes a CheckedBatches


class CheckedBatches:
    """Whole batches that :func:`check_batches` checked (every header and CRC), with their
    headers in order. Only :func:`check_batches` makes one, so holding one is the proof: a
    layer below (the partition log) may skip the CRC pass for ``data`` and nothing else.
    ``data`` is immutable ``bytes``, so what was checked cannot drift from what is written.
    Bytes from anywhere else (another node, a file) are plain bytes, checked again.
    """

    __slots__ = ("data", "headers")

    def __init__(self, data: bytes, headers: tuple[BatchHeader, ...], checker: object) -> None:
        if checker is not _CHECKER:
            raise TypeError("CheckedBatches are made by check_batches only")
        self.data = data
        self.headers = headers

    def __len__(self) -> int:
        return len(self.data)


def check_batches(
    buf: bytes | bytearray | memoryview, *, max_size: int | None = None
) -> CheckedBatches:
    """Check every batch in ``buf`` with :func:`check_batch` (CRC included); they must fill it
    exactly. Returns them as :class:`CheckedBatches` (``bytes`` input is not copied). Raises
    what :func:`check_batch` raises, and :class:`CorruptRecordError` for an empty buffer."""
    data = buf if type(buf) is bytes else bytes(buf)
    if not data:
        raise CorruptRecordError("no record batch in an empty buffer")
    headers = []
    pos = 0
    end = len(data)
    while pos < end:
        header = check_batch(data, pos, max_size=max_size)
        headers.append(header)
        pos += header.size
    return CheckedBatches(data, tuple(headers), _CHECKER)


def set_base_sequence(buf: bytearray | memoryview, base_sequence: int, pos: int = 0) -> None:
    """Rewrite the base sequence of the batch at ``pos`` in place and recompute its CRC (the
    sequence lies inside it). The caller has checked the batch: a bad CRC would be hidden."""
    _INT32.pack_into(buf, pos + BASE_SEQUENCE_POS, base_sequence)
    size = _INT32.unpack_from(buf, pos + LENGTH_POS)[0] + LOG_OVERHEAD
    _UINT32.pack_into(buf, pos + CRC_POS, compute_crc(buf, pos, size))


PRODUCER_ID_POS = field_position("producer_id")
# The three contiguous producer fields alone (no leading padding: packing a header_struct
# would zero the fields before them).
_PRODUCER = struct.Struct(
    ">" + "".join(c for n, c in FIELDS if n in ("producer_id", "producer_epoch", "base_sequence"))
)


def set_producer(
    buf: bytearray | memoryview,
    producer_id: int,
    producer_epoch: int,
    base_sequence: int,
    pos: int = 0,
) -> None:
    """Rewrite the producer id, epoch and base sequence of the batch at ``pos`` in place and
    recompute its CRC (a producer that took a new id sends its unresolved batches again under
    it). The caller has checked the batch: a bad CRC would be hidden."""
    _PRODUCER.pack_into(buf, pos + PRODUCER_ID_POS, producer_id, producer_epoch, base_sequence)
    size = _INT32.unpack_from(buf, pos + LENGTH_POS)[0] + LOG_OVERHEAD
    _UINT32.pack_into(buf, pos + CRC_POS, compute_crc(buf, pos, size))


def iter_headers(
    buf: bytes | bytearray | memoryview, *, check: bool = True
) -> Iterator[tuple[int, BatchHeader]]:
    """Yield ``(position, header)`` for each consecutive batch in ``buf``.

    With ``check`` each batch is validated (:func:`check_batch`); a trailing partial batch
    raises :class:`CorruptRecordError`.
    """
    pos = 0
    end = len(buf)
    while pos < end:
        header = check_batch(buf, pos) if check else read_header(buf, pos)
        if not check and end - pos < header.size:
            raise CorruptRecordError("truncated batch at the end of the buffer")
        yield pos, header
        pos += header.size


def peek_size(buf: bytes | bytearray | memoryview, pos: int = 0) -> int | None:
    """The whole size of the batch at ``pos`` from its first 12 bytes, or None if fewer remain."""
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    _, length = _PREFIX.unpack_from(buf, pos)
    return int(length) + LOG_OVERHEAD


def set_base_offset(buf: bytearray | memoryview, base_offset: int, pos: int = 0) -> None:
    """Rewrite the base offset of the batch at ``pos`` in place (outside the CRC)."""
    _INT64.pack_into(buf, pos + BASE_OFFSET_POS, base_offset)


def set_partition_leader_epoch(buf: bytearray | memoryview, epoch: int, pos: int = 0) -> None:
    """Rewrite the partition leader epoch of the batch at ``pos`` in place (outside the CRC)."""
    _INT32.pack_into(buf, pos + LEADER_EPOCH_POS, epoch)


def set_log_append_time(buf: bytearray | memoryview, timestamp_ms: int, pos: int = 0) -> None:
    """Mark the whole batch at ``pos`` as LOG_APPEND_TIME with ``timestamp_ms``, in place.

    Sets the timestamp-type attribute and the max timestamp (which readers then give every
    record) and recomputes the CRC, since both fields are inside it. The caller has checked the
    batch (:func:`check_batch`): a bad CRC before the call would be hidden by it.
    """
    attrs_pos = pos + ATTRIBUTES_POS
    (attributes,) = _INT16.unpack_from(buf, attrs_pos)
    _INT16.pack_into(buf, attrs_pos, attributes | TIMESTAMP_TYPE_MASK)
    _INT64.pack_into(buf, pos + MAX_TIMESTAMP_POS, timestamp_ms)
    size = _INT32.unpack_from(buf, pos + LENGTH_POS)[0] + LOG_OVERHEAD
    _UINT32.pack_into(buf, pos + CRC_POS, compute_crc(buf, pos, size))
