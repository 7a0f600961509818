"""The codec's hot loops: decoding the records of a batch, and encoding many records at once.

Plain, mypy-strict Python that is also compiled, when the optional accelerator is built
(``scripts/build_accel.sh``: mypyc, about 7x faster per record), into an extension module of
the same name beside this file. :mod:`rilke.records.accel` chooses which one runs; both pass
the same tests (CI runs the records and client tests on each). Keep this module free of
anything mypyc handles differently from CPython: no monkeypatching, no dynamic attributes,
only the names it defines and imports.
"""

from __future__ import annotations

from typing import Any

from rilke.errors import CorruptRecordError
from rilke.records.header import LOG_APPEND_TIME, BatchHeader
from rilke.records.varint import (
    INT32_MAX,
    MAX_VARINT_BYTES,
    MAX_VARLONG_BYTES,
    SMALL_VARINT_LIMIT,
    SMALL_VARINTS,
    decode_varint,
    encode_varint,
)

Header = tuple[str, bytes | None]

_NO_HEADERS: tuple[Header, ...] = ()


def decode_columns(
    header: BatchHeader, data: bytes, start: int, end: int
) -> tuple[list[int], list[int], list[bytes | None], list[bytes | None], list[tuple[Header, ...]]]:
    """The records of one batch (its records part ``data[start:end]``, uncompressed) as five
    lists: offsets, timestamps, keys, values, headers. Raises CorruptRecordError for records
    that disagree with ``header``, and IndexError or ValueError (the caller maps them to
    CorruptRecordError) for fields that run off the data or header keys that are not UTF-8.
    """
    # The hot loop of every consumer: one- and two-byte varints (almost all lengths and deltas)
    # are decoded inline; longer ones go through decode_varint. Every key, value and header
    # length is checked against the record's end before it is sliced, and each record must end
    # exactly where its length says, so no field can take bytes of the next record. Fields go
    # to five lists (five C-level appends) rather than into one object per record.
    count = header.records_count
    base_offset = header.base_offset
    base_ts = header.base_timestamp
    last_delta = header.last_offset_delta
    prev_delta = -1
    dv = decode_varint
    offsets: list[int] = []
    timestamps: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    headers_col: list[tuple[Header, ...]] = []
    add_offset = offsets.append
    add_timestamp = timestamps.append
    add_key = keys.append
    add_value = values.append
    add_headers = headers_col.append
    pos = start
    for _ in range(count):
        b = data[pos]
        if b < 0x80:
            length = (b >> 1) ^ -(b & 1)
            pos += 1
        elif data[pos + 1] < 0x80:
            b = (b & 0x7F) | (data[pos + 1] << 7)
            length = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            length, pos = dv(data, pos, MAX_VARINT_BYTES)
        rec_end = pos + length
        if length < 6 or rec_end > end:
            raise CorruptRecordError(
                f"record length {length} at byte {pos} does not fit the batch (ends at {end})"
            )
        pos += 1  # attributes: unused by records v2
        b = data[pos]
        if b < 0x80:
            ts_delta = (b >> 1) ^ -(b & 1)
            pos += 1
        elif data[pos + 1] < 0x80:
            b = (b & 0x7F) | (data[pos + 1] << 7)
            ts_delta = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            ts_delta, pos = dv(data, pos, MAX_VARLONG_BYTES)
        b = data[pos]
        if b < 0x80:
            delta = (b >> 1) ^ -(b & 1)
            pos += 1
        elif data[pos + 1] < 0x80:
            b = (b & 0x7F) | (data[pos + 1] << 7)
            delta = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            delta, pos = dv(data, pos, MAX_VARINT_BYTES)
        if delta <= prev_delta or delta > last_delta:
            raise CorruptRecordError(
                f"record offset delta {delta} outside ({prev_delta}, {last_delta}]"
            )
        prev_delta = delta
        # key
        b = data[pos]
        if b < 0x80:
            n = (b >> 1) ^ -(b & 1)
            pos += 1
        elif data[pos + 1] < 0x80:
            b = (b & 0x7F) | (data[pos + 1] << 7)
            n = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            n, pos = dv(data, pos, MAX_VARINT_BYTES)
        if n < 0:
            if n != -1:
                raise CorruptRecordError(f"negative key length {n}")
            key = None
        else:
            if n > rec_end - pos:
                raise CorruptRecordError(f"key length {n} runs past the record")
            key = data[pos : pos + n]
            pos += n
        # value
        b = data[pos]
        if b < 0x80:
            n = (b >> 1) ^ -(b & 1)
            pos += 1
        elif data[pos + 1] < 0x80:
            b = (b & 0x7F) | (data[pos + 1] << 7)
            n = (b >> 1) ^ -(b & 1)
            pos += 2
        else:
            n, pos = dv(data, pos, MAX_VARINT_BYTES)
        if n < 0:
            if n != -1:
                raise CorruptRecordError(f"negative value length {n}")
            value = None
        else:
            if n > rec_end - pos:
                raise CorruptRecordError(f"value length {n} runs past the record")
            value = data[pos : pos + n]
            pos += n
        # headers
        if data[pos] == 0:
            headers = _NO_HEADERS
            pos += 1
        else:
            headers, pos = decode_headers(data, pos, rec_end)
        if pos != rec_end:
            raise CorruptRecordError(
                f"record at offset delta {delta} is {length} bytes long but its fields take "
                f"{length + pos - rec_end}"
            )
        add_offset(base_offset + delta)
        add_timestamp(base_ts + ts_delta)
        add_key(key)
        add_value(value)
        add_headers(headers)
    if pos != end:
        raise CorruptRecordError(
            f"{end - pos} bytes after the batch's {count} records (records count disagrees)"
        )
    if header.timestamp_type == LOG_APPEND_TIME:
        timestamps = [header.max_timestamp] * count
    return offsets, timestamps, keys, values, headers_col


def decode_headers(data: bytes, pos: int, rec_end: int) -> tuple[tuple[Header, ...], int]:
    count, pos = decode_varint(data, pos, MAX_VARINT_BYTES)
    # Each header takes at least two bytes (two lengths), which bounds a hostile count.
    if count < 0 or 2 * count > rec_end - pos:
        raise CorruptRecordError(f"header count {count} does not fit the record")
    headers: list[Header] = []
    for _ in range(count):
        n, pos = decode_varint(data, pos, MAX_VARINT_BYTES)
        if n < 0 or n > rec_end - pos:
            raise CorruptRecordError(f"header key length {n} does not fit the record")
        h_key = data[pos : pos + n].decode("utf-8")
        pos += n
        n, pos = decode_varint(data, pos, MAX_VARINT_BYTES)
        h_value: bytes | None
        if n < 0:
            if n != -1:
                raise CorruptRecordError(f"negative header value length {n}")
            h_value = None
        else:
            if n > rec_end - pos:
                raise CorruptRecordError(f"header value length {n} runs past the record")
            h_value = data[pos : pos + n]
            pos += n
        headers.append((h_key, h_value))
    return tuple(headers), pos


def encode_records(  # noqa: PLR0917  (the hot path: positional on purpose)
    keys: list[Any] | None,  # Any: checked below, so both builds raise the same TypeError
    values: list[Any],
    start: int,
    stop: int,
    first_delta: int,
    timestamp_delta: bytes,
    limit_bytes: int,
) -> tuple[int, bytes]:
    """Encode the records ``values[start:stop]`` (with ``keys[i]``, or null keys when ``keys``
    is None; no headers), at offset deltas from ``first_delta`` on, all with the encoded
    ``timestamp_delta``. Stops after the record that brings the bytes to ``limit_bytes`` or
    more (at least one record is encoded when start < stop). Returns the index after the last
    record encoded, and the encoded records. Raises TypeError for a key or value that is not
    bytes, and ValueError for a record of more than int32 bytes; nothing is returned then.
    """
    small = SMALL_VARINTS
    small_limit = SMALL_VARINT_LIMIT
    parts: list[bytes] = []
    add = parts.append
    size = 0
    delta = first_delta
    fixed = 2 + len(timestamp_delta)  # attributes and the (empty) headers count
    i = start
    while i < stop:
        value = values[i]
        key = keys[i] if keys is not None else None
        odv = small[delta] if delta < small_limit else encode_varint(delta)
        if key is None:
            kp = b"\x01"
        else:
            if key.__class__ is not bytes:
                raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
            n = len(key)
            kp = (small[n] if n < small_limit else encode_varint(n)) + key
        if value is None:
            vp = b"\x01"
        else:
            if value.__class__ is not bytes:
                raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
            n = len(value)
            vp = (small[n] if n < small_limit else encode_varint(n)) + value
        n = fixed + len(odv) + len(kp) + len(vp)
        if n > INT32_MAX:
            raise ValueError(f"record of {n} bytes exceeds int32")
        lp = small[n] if n < small_limit else encode_varint(n)
        add(b"".join((lp, b"\x00", timestamp_delta, odv, kp, vp, b"\x00")))
        size += len(lp) + n
        i += 1
        delta += 1
        if size >= limit_bytes:
            break
    return i, b"".join(parts)


def encode_columns(  # noqa: PLR0917  (the hot path: positional on purpose)
    keys: list[Any] | None,  # Any: checked below, so both builds raise the same TypeError
    values: list[Any],
    headers: list[Any] | None,
    timestamps: list[int],
    first_delta: int,
    base_timestamp: int,
) -> bytes:
    """Encode the records ``values[i]`` with ``keys[i]`` (null keys when ``keys`` is None),
    ``headers[i]`` (each an encoded headers section, count first, or None for none; no headers
    at all when ``headers`` is None) and create time ``timestamps[i]``, at offset deltas from
    ``first_delta`` on, timestamp deltas from ``base_timestamp``. Returns the encoded records.
    Raises TypeError for a key, value or headers section that is not bytes, ValueError for a
    record of more than int32 bytes; nothing is returned then. The caller checks that the
    lists are as long as ``values``, the offset deltas stay within int32 and the timestamp
    deltas within int64.
    """
    small = SMALL_VARINTS
    small_limit = SMALL_VARINT_LIMIT
    parts: list[bytes] = []
    add = parts.append
    delta = first_delta
    count = len(values)
    for i in range(count):
        value = values[i]
        key = keys[i] if keys is not None else None
        hp = headers[i] if headers is not None else None
        odv = small[delta] if delta < small_limit else encode_varint(delta)
        ts_delta = timestamps[i] - base_timestamp
        tsv = small[ts_delta] if 0 <= ts_delta < small_limit else encode_varint(ts_delta)
        if key is None:
            kp = b"\x01"
        else:
            if key.__class__ is not bytes:
                raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
            n = len(key)
            kp = (small[n] if n < small_limit else encode_varint(n)) + key
        if value is None:
            vp = b"\x01"
        else:
            if value.__class__ is not bytes:
                raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
            n = len(value)
            vp = (small[n] if n < small_limit else encode_varint(n)) + value
        if hp is None:
            hp = b"\x00"
        elif hp.__class__ is not bytes:
            raise TypeError(f"an encoded headers section must be bytes, not {type(hp).__name__}")
        n = 1 + len(tsv) + len(odv) + len(kp) + len(vp) + len(hp)
        if n > INT32_MAX:
            raise ValueError(f"record of {n} bytes exceeds int32")
        lp = small[n] if n < small_limit else encode_varint(n)
        add(b"".join((lp, b"\x00", tsv, odv, kp, vp, hp)))
        delta += 1
    return b"".join(parts)
