"""Zig-zag varints as Kafka's records use them (protobuf's sint32/sint64 encoding).

A signed value v is zig-zag mapped to an unsigned one, ``(v << 1) ^ (v >> 63)``, so small
magnitudes of either sign stay small, then written 7 bits per byte, low bits first, with the
high bit of each byte set while more bytes follow. Kafka's ``varint`` holds an int32 (at most 5
bytes) and its ``varlong`` an int64 (at most 10 bytes).

Encoding is table driven for the values records are made of (lengths, offset deltas and small
timestamp deltas): :data:`SMALL_VARINTS` holds the encoding of every value in
``range(SMALL_VARINT_LIMIT)``, so the hot path is one list index instead of a Python loop.
Hot loops may index the table directly; everything else calls :func:`encode_varint`.

Sans-I/O and pure; thread-safe.
"""

from __future__ import annotations

from rilke.errors import CorruptRecordError

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

MAX_VARINT_BYTES = 5
MAX_VARLONG_BYTES = 10


def zigzag(value: int) -> int:
    """Map a signed int64 to its unsigned zig-zag form: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ..."""
    return (value << 1) ^ (value >> 63)


def unzigzag(value: int) -> int:
    """The inverse of :func:`zigzag`."""
    return (value >> 1) ^ -(value & 1)


def encode_unsigned_varint(value: int) -> bytes:
    """The base-128 encoding of a non-negative ``value`` (no zig-zag)."""
    if value < 0:
        raise ValueError(f"unsigned varint of a negative value {value}")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _encode_varint_slow(value: int) -> bytes:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"varlong out of the int64 range: {value}")
    return encode_unsigned_varint(zigzag(value))


SMALL_VARINT_LIMIT = 1 << 13
"""Values in ``range(SMALL_VARINT_LIMIT)`` (zig-zag at most 2 bytes) have a precomputed encoding."""

SMALL_VARINTS: tuple[bytes, ...] = tuple(_encode_varint_slow(v) for v in range(SMALL_VARINT_LIMIT))
"""``SMALL_VARINTS[v]`` is the zig-zag varint of ``v`` for ``0 <= v < SMALL_VARINT_LIMIT``."""


def encode_varint(value: int) -> bytes:
    """The zig-zag varint of a signed int64 ``value`` (Kafka's varint and varlong alike).

    Raises ValueError outside the int64 range. The caller checks int32 ranges where Kafka uses
    a varint (lengths, offset deltas, counts).
    """
    if 0 <= value < SMALL_VARINT_LIMIT:
        return SMALL_VARINTS[value]
    return _encode_varint_slow(value)


def size_of_varint(value: int) -> int:
    """The number of bytes :func:`encode_varint` produces for ``value``."""
    u = zigzag(value)
    size = 1
    while u > 0x7F:
        u >>= 7
        size += 1
    return size


def decode_varint(
    buf: bytes | bytearray | memoryview, pos: int = 0, max_bytes: int = MAX_VARLONG_BYTES
) -> tuple[int, int]:
    """Decode the zig-zag varint at ``pos``: returns ``(value, position after it)``.

    ``max_bytes`` is 5 for Kafka's varint, 10 (the default) for its varlong. Raises
    :class:`CorruptRecordError` if the buffer ends inside the varint or it runs longer than
    ``max_bytes``.
    """
    try:
        b = buf[pos]
        if b < 0x80:
            return (b >> 1) ^ -(b & 1), pos + 1
        result = b & 0x7F
        shift = 7
        limit = pos + max_bytes
        pos += 1
        while True:
            if pos >= limit:
                raise CorruptRecordError(f"varint longer than {max_bytes} bytes")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return (result >> 1) ^ -(result & 1), pos
            shift += 7
    except IndexError:
        raise CorruptRecordError("truncated varint") from None


def decode_unsigned_varint(
    buf: bytes | bytearray | memoryview, pos: int = 0, max_bytes: int = MAX_VARLONG_BYTES
) -> tuple[int, int]:
    """Decode the base-128 (not zig-zag) varint at ``pos``: ``(value, position after it)``.

    Raises :class:`CorruptRecordError` as :func:`decode_varint` does.
    """
    result = 0
    shift = 0
    limit = pos + max_bytes
    try:
        while True:
            if pos >= limit:
                raise CorruptRecordError(f"varint longer than {max_bytes} bytes")
            b = buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result, pos
            shift += 7
    except IndexError:
        raise CorruptRecordError("truncated varint") from None
