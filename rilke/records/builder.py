"""Encoding record batches: :class:`BatchBuilder` and control batches.

Each record is encoded as it is appended, into one growing buffer (Kafka's DefaultRecord v2)::

    length          varint   bytes after this field
    attributes      int8     unused, 0
    timestamp_delta varlong  timestamp - batch base timestamp
    offset_delta    varint   offset - batch base offset
    key             varint length (-1 for null) + bytes
    value           varint length (-1 for null) + bytes
    headers         varint count + [varint key length + utf-8 key, varint value length + bytes]

:meth:`BatchBuilder.build` compresses that records section if asked, writes the 61-byte header
and the CRC32C, and returns the batch as bytes.

The builder runs on the producer's hot path, once per record: :meth:`BatchBuilder.append` does a
handful of table lookups and one join, and validates only what would otherwise make a wrong
batch (see its docstring). It reads no clock: the caller passes every timestamp.

Not thread-safe: one builder belongs to one producer batch.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence

from crc32c import crc32c

from rilke.records.accel import hot as _hot
from rilke.records.compression import Compression, compress, is_supported
from rilke.records.header import (
    CONTROL_MASK,
    CREATE_TIME,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    LOG_OVERHEAD,
    MAGIC,
    NO_PARTITION_LEADER_EPOCH,
    NO_PRODUCER_EPOCH,
    NO_PRODUCER_ID,
    NO_SEQUENCE,
    NO_TIMESTAMP,
    TIMESTAMP_TYPE_MASK,
    TRANSACTIONAL_MASK,
    BatchHeader,
)
from rilke.records.varint import (
    INT32_MAX,
    INT64_MAX,
    INT64_MIN,
    SMALL_VARINT_LIMIT,
    SMALL_VARINTS,
    encode_varint,
    size_of_varint,
)

Header = tuple[str, bytes | None]
"""A record header: a string key and a nullable bytes value (as the reader returns it)."""

BytesLike = bytes | bytearray | memoryview
"""What the builder accepts for keys, values and header values (it copies them)."""

HeaderIn = tuple[str, BytesLike | None]

# Most bytes of a record that are not key, value or headers: length (5) + attributes (1) +
# timestamp delta (10) + offset delta (5), as Kafka's MAX_RECORD_OVERHEAD.
MAX_RECORD_OVERHEAD = 21

_HEADER_AFTER_CRC = struct.Struct(">hiqqqhii")  # attributes .. records_count
_BEFORE_CRC = struct.Struct(">qiib")  # base offset, length, leader epoch, magic
_CRC = struct.Struct(">I")

_NULL = b"\x01"  # zig-zag varint -1: a null key or value
_NO_HEADERS = b"\x00"
_ZERO_ATTRIBUTES = b"\x00"
_ZERO_DELTA = b"\x00"


class ControlType(enum.IntEnum):
    """The ``type`` field of a control record's key (version int16 + type int16).

    Kafka uses 0..6 (ABORT, COMMIT, LEADER_CHANGE, SNAPSHOT_HEADER, SNAPSHOT_FOOTER,
    KRAFT_VERSION, KRAFT_VOTERS). Rilke's own Raft entries take types from 1000 up, far from
    any value Kafka has used, so a Kafka consumer sees them as unknown control records and
    skips them as it skips every control batch.
    """

    ABORT = 0
    COMMIT = 1
    RAFT_NOOP = 1000
    """The entry a new Raft leader appends on election (value: empty)."""
    RAFT_CONFIG = 1001
    """A Raft membership change (value: the encoded configuration)."""


CONTROL_KEY_VERSION = 0
_CONTROL_KEY = struct.Struct(">hh")
_END_TXN_MARKER = struct.Struct(">hi")


def control_key(control_type: int, version: int = CONTROL_KEY_VERSION) -> bytes:
    """The 4-byte key of a control record: version int16 and type int16."""
    return _CONTROL_KEY.pack(version, control_type)


def end_txn_marker_value(coordinator_epoch: int, version: int = 0) -> bytes:
    """The value of a Kafka ABORT/COMMIT control record: version int16, coordinator epoch int32."""
    return _END_TXN_MARKER.pack(version, coordinator_epoch)


def record_size_upper_bound(
    key: BytesLike | None, value: BytesLike | None, headers: Sequence[HeaderIn] | None = None
) -> int:
    """An upper bound on the bytes one record adds to a batch's (uncompressed) records section.

    Lets a producer decide whether a record still fits before appending it.
    """
    size = MAX_RECORD_OVERHEAD
    size += 1 if key is None else size_of_varint(len(key)) + len(key)
    size += 1 if value is None else size_of_varint(len(value)) + len(value)
    if headers:
        size += size_of_varint(len(headers))
        for h_key, h_value in headers:
            k = len(h_key.encode("utf-8"))
            size += size_of_varint(k) + k
            size += 1 if h_value is None else size_of_varint(len(h_value)) + len(h_value)
    else:
        size += 1
    return size


def _check_timestamp(timestamp_ms: int, highest: int = INT64_MAX) -> None:
    if not INT64_MIN <= timestamp_ms <= highest:
        raise ValueError(f"timestamp {timestamp_ms} out of range")


def encode_headers(headers: Sequence[HeaderIn]) -> bytes:
    """A record's headers section (count, then each key and value) for
    :meth:`BatchBuilder.append_columns`. Raises TypeError for a key that is not str or a
    value that is not bytes-like or None, UnicodeEncodeError for a key that is not valid
    text."""
    return _encode_headers(headers) if headers else _NO_HEADERS


def _encode_headers(headers: Sequence[HeaderIn]) -> bytes:
    n = len(headers)
    parts: list[bytes] = [encode_varint(n)]
    append = parts.append
    for h_key, h_value in headers:
        if not isinstance(h_key, str):
            raise TypeError(f"header key must be str, not {type(h_key).__name__}")
        raw_key = h_key.encode("utf-8")
        append(encode_varint(len(raw_key)))
        append(raw_key)
        if h_value is None:
            append(_NULL)
        else:
            append(encode_varint(len(h_value)))
            append(bytes(h_value))
    return b"".join(parts)


class BatchBuilder:
    """Appends records and closes into one RecordBatch v2 (bytes, CRC set).

    Takes (all keyword, all optional):
      compression: a :class:`Compression` id; raises :class:`UnsupportedCompressionError` at
        once if this build cannot write it.
      base_offset: the batch's base offset (a producer leaves 0: the leader stamps it).
      partition_leader_epoch: stored as is (Rilke's Raft term; the leader stamps it too).
      producer_id, producer_epoch, base_sequence: the idempotent producer's fields (-1: none).
      is_transactional, is_control: the attribute flags.
      timestamp_type: :data:`CREATE_TIME` or :data:`LOG_APPEND_TIME`.

    Records get offsets base_offset, base_offset + 1, ... from :meth:`append`, or explicit
    increasing offsets from :meth:`append_at` (rebuilding a compacted batch). The batch's base
    timestamp is the first record's; max timestamp the largest. Not thread-safe.
    """

    __slots__ = (
        "_base_offset",
        "_base_sequence",
        "_base_timestamp",
        "_buffer",
        "_built",
        "_compression",
        "_count",
        "_is_control",
        "_is_transactional",
        "_max_timestamp",
        "_next_delta",
        "_partition_leader_epoch",
        "_producer_epoch",
        "_producer_id",
        "_timestamp_type",
    )

    def __init__(
        self,
        *,
        compression: int = Compression.NONE,
        base_offset: int = 0,
        partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
        producer_id: int = NO_PRODUCER_ID,
        producer_epoch: int = NO_PRODUCER_EPOCH,
        base_sequence: int = NO_SEQUENCE,
        is_transactional: bool = False,
        is_control: bool = False,
        timestamp_type: int = CREATE_TIME,
    ) -> None:
        if not is_supported(compression):
            # compress() raises the specific UnsupportedCompressionError.
            compress(compression, b"")
        if timestamp_type not in (CREATE_TIME, LOG_APPEND_TIME):
            raise ValueError(f"timestamp_type must be 0 or 1, not {timestamp_type}")
        if is_transactional and producer_id < 0:
            raise ValueError("a transactional batch needs a producer id")
        self._compression = int(compression)
        self._base_offset = base_offset
        self._partition_leader_epoch = partition_leader_epoch
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._is_transactional = is_transactional
        self._is_control = is_control
        self._timestamp_type = timestamp_type
        self._buffer = bytearray(HEADER_SIZE)
        self._count = 0
        self._next_delta = 0  # the offset delta the next append() gets
        self._base_timestamp = NO_TIMESTAMP
        self._max_timestamp = NO_TIMESTAMP
        self._built: bytes | None = None

    @property
    def record_count(self) -> int:
        return self._count

    @property
    def size_in_bytes(self) -> int:
        """The batch's size so far, uncompressed: header plus encoded records."""
        return len(self._buffer)

    @property
    def is_empty(self) -> bool:
        return self._count == 0

    @property
    def base_offset(self) -> int:
        return self._base_offset

    @property
    def compression(self) -> int:
        return self._compression

    @property
    def producer_id(self) -> int:
        return self._producer_id

    @property
    def producer_epoch(self) -> int:
        return self._producer_epoch

    @property
    def base_sequence(self) -> int:
        return self._base_sequence

    @property
    def max_timestamp(self) -> int:
        """The largest timestamp appended so far (-1 while empty)."""
        return self._max_timestamp

    @property
    def next_offset_delta(self) -> int:
        """The offset delta the next :meth:`append` gives its record."""
        return self._next_delta

    def set_producer_state(
        self, producer_id: int, producer_epoch: int, base_sequence: int, is_transactional: bool
    ) -> None:
        """Set the idempotent/transactional producer fields before :meth:`build`.

        A producer assigns sequences when it drains a batch, after the records were appended.
        """
        if self._built is not None:
            raise ValueError("the batch is already built")
        if is_transactional and producer_id < 0:
            raise ValueError("a transactional batch needs a producer id")
        self._producer_id = producer_id
        self._producer_epoch = producer_epoch
        self._base_sequence = base_sequence
        self._is_transactional = is_transactional

    def append(
        self,
        key: BytesLike | None,
        value: BytesLike | None,
        headers: Sequence[HeaderIn] | None,
        timestamp_ms: int,
    ) -> int:
        """Append one record at the next offset; returns the batch's size so far (uncompressed).

        ``key`` and ``value`` are bytes-like or None; ``headers`` a sequence of (str, bytes or
        None) pairs, or None/empty. ``timestamp_ms`` is the record's create time (the caller's
        clock). Raises ValueError if the builder is built or a delta leaves its range and
        TypeError for keys, values or headers of the wrong type; in both cases the batch is
        unchanged. Mutable key/value buffers are copied.
        """
        if self._built is not None:
            raise ValueError("the batch is already built")
        delta = self._next_delta
        return self._append(delta, key, value, headers, timestamp_ms)

    def append_many(  # noqa: PLR0917
        self,
        keys: list[bytes | None] | None,
        values: list[bytes | None],
        timestamp_ms: int,
        start: int = 0,
        stop: int | None = None,
        limit_bytes: int | None = None,
    ) -> int:
        """Append the records ``values[start:stop]`` (keys from ``keys``, or null; no
        headers), all with create time ``timestamp_ms``, at the next offsets; stop after the
        record that brings the batch to ``limit_bytes`` (uncompressed) or more. Returns the
        index after the last record appended (``stop`` when all were); at least one is
        appended when start < stop.

        The bulk form of :meth:`append` for callers that hold many records: one call and one
        buffer extension instead of one per record (its loop is one of the hot loops the
        optional accelerator compiles). Keys and values must be bytes or None. Raises
        TypeError or ValueError as :meth:`append` does, leaving the batch unchanged.
        """
        if self._built is not None:
            raise ValueError("the batch is already built")
        if stop is None:
            stop = len(values)
        if keys is not None and len(keys) < stop:
            raise ValueError(f"{len(keys)} keys for values up to index {stop}")
        if start >= stop:
            return start
        if self._next_delta + (stop - start) > INT32_MAX:
            raise ValueError("offset delta would exceed int32")
        if self._count:
            ts_delta = timestamp_ms - self._base_timestamp
            if 0 <= ts_delta < SMALL_VARINT_LIMIT:
                tsv = SMALL_VARINTS[ts_delta]
            else:
                _check_timestamp(timestamp_ms)
                tsv = encode_varint(ts_delta)
        else:
            _check_timestamp(timestamp_ms, INT64_MAX - SMALL_VARINT_LIMIT)
            tsv = _ZERO_DELTA
        buf = self._buffer
        room = (INT32_MAX if limit_bytes is None else limit_bytes) - len(buf)
        encoded: tuple[int, bytes] = _hot.encode_records(
            keys, values, start, stop, self._next_delta, tsv, room
        )
        end, data = encoded
        buf += data
        if self._count == 0:
            self._base_timestamp = self._max_timestamp = timestamp_ms
        elif timestamp_ms > self._max_timestamp:
            self._max_timestamp = timestamp_ms
        self._count += end - start
        self._next_delta += end - start
        return end

    def append_columns(
        self,
        keys: list[bytes | None] | None,
        values: list[bytes | None],
        headers: list[bytes | None] | None,
        timestamps: list[int],
    ) -> int:
        """Append the records ``values[i]`` with ``keys[i]`` (or null keys), ``headers[i]``
        (a headers section as :func:`encode_headers` made it, or None; None for the list: no
        headers) and create time ``timestamps[i]`` at the next offsets; returns the batch's
        size so far (uncompressed).

        The columnar form of :meth:`append`, for a producer that keeps a batch's records as
        lists until it closes the batch: one call encodes them all (one of the hot loops the
        optional accelerator compiles). Keys and values must be bytes or None. Raises
        ValueError for lists of different lengths, timestamps or deltas out of range, and
        TypeError as :meth:`append` does, leaving the batch unchanged.
        """
        if self._built is not None:
            raise ValueError("the batch is already built")
        count = len(values)
        for name, column in (("keys", keys), ("headers", headers)):
            if column is not None and len(column) != count:
                raise ValueError(f"{len(column)} {name} for {count} values")
        if len(timestamps) != count:
            raise ValueError(f"{len(timestamps)} timestamps for {count} values")
        if not count:
            return len(self._buffer)
        if self._next_delta + count - 1 > INT32_MAX:
            raise ValueError("offset delta would exceed int32")
        lowest = min(timestamps)
        highest = max(timestamps)
        base = self._base_timestamp if self._count else timestamps[0]
        _check_timestamp(lowest)
        _check_timestamp(highest)
        if lowest - base < INT64_MIN or highest - base > INT64_MAX:
            raise ValueError(f"timestamps {lowest}..{highest} too far from the base {base}")
        data: bytes = _hot.encode_columns(keys, values, headers, timestamps, self._next_delta, base)
        buf = self._buffer
        buf += data
        if self._count == 0:
            self._base_timestamp = base
            self._max_timestamp = highest
        elif highest > self._max_timestamp:
            self._max_timestamp = highest
        self._count += count
        self._next_delta += count
        return len(buf)

    def append_at(
        self,
        offset: int,
        key: BytesLike | None,
        value: BytesLike | None,
        headers: Sequence[HeaderIn] | None,
        timestamp_ms: int,
    ) -> int:
        """Append one record at an explicit ``offset``; returns the batch's size so far.

        Offsets must be >= the base offset and increase strictly from record to record (gaps
        allowed, as in a compacted batch); raises ValueError otherwise, changing nothing.
        """
        if self._built is not None:
            raise ValueError("the batch is already built")
        delta = offset - self._base_offset
        if delta < self._next_delta:
            raise ValueError(
                f"offset {offset} does not follow the batch's last offset "
                f"{self._base_offset + self._next_delta - 1}"
            )
        return self._append(delta, key, value, headers, timestamp_ms)

    def _append(
        self,
        delta: int,
        key: BytesLike | None,
        value: BytesLike | None,
        headers: Sequence[HeaderIn] | None,
        timestamp_ms: int,
    ) -> int:
        # Everything is encoded before any field changes, so an error leaves the batch as it was.
        if delta >= SMALL_VARINT_LIMIT:
            if delta > INT32_MAX:
                raise ValueError(f"offset delta {delta} exceeds int32")
            odv = encode_varint(delta)
        else:
            odv = SMALL_VARINTS[delta]
        if self._count:
            ts_delta = timestamp_ms - self._base_timestamp
            if 0 <= ts_delta < SMALL_VARINT_LIMIT:
                tsv = SMALL_VARINTS[ts_delta]
            else:
                _check_timestamp(timestamp_ms)
                tsv = encode_varint(ts_delta)
        else:
            # The first record sets the base timestamp. Within this range, base + a small delta
            # (the fast path above) stays an int64.
            _check_timestamp(timestamp_ms, INT64_MAX - SMALL_VARINT_LIMIT)
            tsv = _ZERO_DELTA
        if key is None:
            kp = _NULL
        else:
            n = len(key)
            kp = (SMALL_VARINTS[n] if n < SMALL_VARINT_LIMIT else encode_varint(n)) + key
        if value is None:
            vlp = _NULL
            value = b""
        else:
            n = len(value)
            vlp = SMALL_VARINTS[n] if n < SMALL_VARINT_LIMIT else encode_varint(n)
        hp = _encode_headers(headers) if headers else _NO_HEADERS
        rec = b"".join((_ZERO_ATTRIBUTES, tsv, odv, kp, vlp, value, hp))
        n = len(rec)
        if n > INT32_MAX:
            raise ValueError(f"record of {n} bytes exceeds int32")
        buf = self._buffer
        buf += SMALL_VARINTS[n] if n < SMALL_VARINT_LIMIT else encode_varint(n)
        buf += rec
        if self._count == 0:
            self._base_timestamp = self._max_timestamp = timestamp_ms
        elif timestamp_ms > self._max_timestamp:
            self._max_timestamp = timestamp_ms
        self._count += 1
        self._next_delta = delta + 1
        return len(buf)

    def build(self, *, last_offset_delta: int | None = None) -> bytes:
        """Close the batch: compress the records, write header and CRC; return the whole batch.

        ``last_offset_delta`` may keep a larger last offset delta than the last record's (a
        compacted batch that lost its last records keeps its offset span, as Kafka does); by
        default it is the last record's delta (0 for an empty batch). Calling build again
        returns the same bytes; appending after it raises ValueError.
        """
        if self._built is not None:
            return self._built
        delta = max(self._next_delta - 1, 0)
        if last_offset_delta is not None:
            if last_offset_delta < delta or last_offset_delta > INT32_MAX:
                raise ValueError(
                    f"last_offset_delta {last_offset_delta} is before the last record's {delta}"
                )
            delta = last_offset_delta
        attributes = self._compression
        if self._timestamp_type == LOG_APPEND_TIME:
            attributes |= TIMESTAMP_TYPE_MASK
        if self._is_transactional:
            attributes |= TRANSACTIONAL_MASK
        if self._is_control:
            attributes |= CONTROL_MASK
        buf = self._buffer
        if self._compression == Compression.NONE:
            out = buf
        else:
            with memoryview(buf) as view:
                body = compress(self._compression, view[HEADER_SIZE:])
            out = bytearray(HEADER_SIZE)
            out += body
        _HEADER_AFTER_CRC.pack_into(
            out,
            21,
            attributes,
            delta,
            self._base_timestamp,
            self._max_timestamp,
            self._producer_id,
            self._producer_epoch,
            self._base_sequence,
            self._count,
        )
        _BEFORE_CRC.pack_into(
            out, 0, self._base_offset, len(out) - LOG_OVERHEAD, self._partition_leader_epoch, MAGIC
        )
        with memoryview(out) as view:
            crc = crc32c(view[21:])
        _CRC.pack_into(out, 17, crc)
        self._built = bytes(out)
        self._buffer = bytearray()  # release the records buffer
        return self._built

    close = build


def build_control_batch(
    control_type: int,
    value: BytesLike | None = b"",
    *,
    timestamp_ms: int,
    base_offset: int = 0,
    partition_leader_epoch: int = NO_PARTITION_LEADER_EPOCH,
    producer_id: int = NO_PRODUCER_ID,
    producer_epoch: int = NO_PRODUCER_EPOCH,
    is_transactional: bool = False,
    compression: int = Compression.NONE,
) -> bytes:
    """A control batch holding one control record of ``control_type`` with ``value``.

    Kafka's transaction markers are ABORT/COMMIT with :func:`end_txn_marker_value` as value,
    on a transactional batch of the producer; Rilke's Raft entries are RAFT_NOOP (empty value)
    and RAFT_CONFIG (the configuration as value), with the Raft term as partition leader epoch.
    """
    builder = BatchBuilder(
        compression=compression,
        base_offset=base_offset,
        partition_leader_epoch=partition_leader_epoch,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        is_transactional=is_transactional,
        is_control=True,
    )
    builder.append(control_key(control_type), value, None, timestamp_ms)
    return builder.build()


def build_empty_batch(header: BatchHeader) -> bytes:
    """The batch of ``header`` with every record removed: no records, uncompressed, and the
    same base offset, last offset delta (so the offset span stays), partition leader epoch,
    timestamps, timestamp type, producer id, epoch and base sequence, and transactional flag.

    What compaction leaves of a batch whose records all went, where the batch must stay
    (Kafka's cleaner keeps such an empty batch for a producer's state; a replicated log
    keeps it so that every Raft entry keeps its index and term). Not for control batches.
    """
    if header.is_control:
        raise ValueError(f"the control batch at {header.base_offset} cannot be emptied")
    attributes = header.attributes & (TIMESTAMP_TYPE_MASK | TRANSACTIONAL_MASK)
    out = bytearray(HEADER_SIZE)
    _HEADER_AFTER_CRC.pack_into(
        out,
        21,
        attributes,
        header.last_offset_delta,
        header.base_timestamp,
        header.max_timestamp,
        header.producer_id,
        header.producer_epoch,
        header.base_sequence,
        0,
    )
    _BEFORE_CRC.pack_into(
        out, 0, header.base_offset, HEADER_SIZE - LOG_OVERHEAD, header.partition_leader_epoch, MAGIC
    )
    _CRC.pack_into(out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)
