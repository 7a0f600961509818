"""Zig-zag varints: known encodings, round trips, and clean failures."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rilke.errors import CorruptRecordError
from rilke.records.varint import (
    INT64_MAX,
    INT64_MIN,
    SMALL_VARINT_LIMIT,
    SMALL_VARINTS,
    decode_unsigned_varint,
    decode_varint,
    encode_unsigned_varint,
    encode_varint,
    size_of_varint,
    unzigzag,
    zigzag,
)

# Encodings from Kafka's ByteUtilsTest and the protobuf spec.
KNOWN = [
    (0, "00"),
    (-1, "01"),
    (1, "02"),
    (-2, "03"),
    (63, "7e"),
    (-64, "7f"),
    (64, "8001"),
    (-65, "8101"),
    (8191, "fe7f"),
    (8192, "808001"),
    (2**31 - 1, "feffffff0f"),
    (-(2**31), "ffffffff0f"),
    (INT64_MAX, "feffffffffffffffff01"),
    (INT64_MIN, "ffffffffffffffffff01"),
]


@pytest.mark.parametrize(("value", "hex_"), KNOWN)
def test_known_encodings(value: int, hex_: str) -> None:
    raw = bytes.fromhex(hex_)
    assert encode_varint(value) == raw
    assert size_of_varint(value) == len(raw)
    assert decode_varint(raw + b"\xff", 0) == (value, len(raw))


def test_table_matches_slow_path() -> None:
    for v in range(SMALL_VARINT_LIMIT):
        assert SMALL_VARINTS[v] == encode_unsigned_varint(zigzag(v))


@given(st.integers(min_value=INT64_MIN, max_value=INT64_MAX), st.binary(max_size=3))
def test_round_trip(value: int, prefix: bytes) -> None:
    raw = encode_varint(value)
    assert len(raw) == size_of_varint(value)
    assert decode_varint(prefix + raw, len(prefix)) == (value, len(prefix) + len(raw))
    assert unzigzag(zigzag(value)) == value


@given(st.integers(min_value=0, max_value=2**64))
def test_unsigned_round_trip(value: int) -> None:
    raw = encode_unsigned_varint(value)
    assert decode_unsigned_varint(raw, 0, 11) == (value, len(raw))


def test_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError):
        encode_varint(INT64_MAX + 1)
    with pytest.raises(ValueError):
        encode_varint(INT64_MIN - 1)
    with pytest.raises(ValueError):
        encode_unsigned_varint(-1)


@pytest.mark.parametrize("raw", [b"", b"\x80", b"\xff\xff", b"\x80" * 9])
def test_truncated_varint(raw: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        decode_varint(raw, 0)
    with pytest.raises(CorruptRecordError):
        decode_unsigned_varint(raw, 0)


def test_too_long_varint() -> None:
    with pytest.raises(CorruptRecordError):
        decode_varint(b"\x80" * 5 + b"\x00", 0, 5)
    with pytest.raises(CorruptRecordError):
        decode_varint(b"\x80" * 10 + b"\x00", 0)
    with pytest.raises(CorruptRecordError):
        decode_unsigned_varint(b"\x80" * 5 + b"\x00", 0, 5)
    # Exactly at the limit is fine.
    assert decode_varint(b"\x80" * 4 + b"\x01", 0, 5) == (2**27, 5)
