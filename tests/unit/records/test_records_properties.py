"""Hypothesis: round trips, bit flips and truncations of record batches."""

import struct

from crc32c import crc32c
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka.record.default_records import DefaultRecordBatch

from rilke.errors import CorruptRecordError, RecordsError
from rilke.records import (
    CREATE_TIME,
    HEADER_SIZE,
    LOG_APPEND_TIME,
    BatchBuilder,
    Compression,
    check_batch,
    read_records,
    supported_codecs,
)
from rilke.records.header import CRC_START

CODECS = list(supported_codecs())

nullable_bytes = st.none() | st.binary(max_size=300)
headers = st.lists(st.tuples(st.text(max_size=20), nullable_bytes), max_size=4)
timestamps = st.integers(min_value=-1, max_value=2**50)
record = st.tuples(nullable_bytes, nullable_bytes, headers, timestamps)
records = st.lists(record, min_size=0, max_size=20)


@st.composite
def batches(draw: st.DrawFn) -> tuple[bytes, list[tuple[object, ...]], Compression]:
    codec = draw(st.sampled_from(CODECS))
    rows = draw(records)
    base_offset = draw(st.integers(min_value=0, max_value=2**62))
    producer_id = draw(st.integers(min_value=-1, max_value=2**63 - 1))
    timestamp_type = draw(st.sampled_from([CREATE_TIME, LOG_APPEND_TIME]))
    b = BatchBuilder(
        compression=codec,
        base_offset=base_offset,
        partition_leader_epoch=draw(st.integers(min_value=-1, max_value=2**31 - 1)),
        producer_id=producer_id,
        producer_epoch=draw(st.integers(min_value=-1, max_value=2**15 - 1)),
        base_sequence=draw(st.integers(min_value=-1, max_value=2**31 - 1)),
        is_transactional=producer_id >= 0 and draw(st.booleans()),
        is_control=draw(st.booleans()),
        timestamp_type=timestamp_type,
    )
    expected = []
    for i, (key, value, hs, ts) in enumerate(rows):
        b.append(key, value, hs, ts)
        expected.append((base_offset + i, ts, key, value, tuple(hs)))
    if timestamp_type == LOG_APPEND_TIME:
        # Readers give every record of a LOG_APPEND_TIME batch the batch's max timestamp.
        max_ts = b.max_timestamp
        expected = [(e[0], max_ts, *e[2:]) for e in expected]
    return b.build(), expected, codec


@given(batches())
def test_round_trip(case: tuple[bytes, list[tuple[object, ...]], Compression]) -> None:
    data, expected, codec = case
    header = check_batch(data)
    assert header.records_count == len(expected)
    assert header.compression == codec
    got = [(r.offset, r.timestamp, r.key, r.value, r.headers) for r in read_records(data)]
    assert got == expected
    if expected:
        assert header.max_timestamp == max(e[1] for e in expected)  # type: ignore[type-var]
    # and kafka-python reads the same (its ControlRecord insists on a 4-byte control key)
    kbatch = DefaultRecordBatch(data)
    assert kbatch.validate_crc()
    assert kbatch.is_transactional == header.is_transactional
    assert kbatch.is_control_batch == header.is_control
    assert kbatch.timestamp_type == header.timestamp_type
    # kafka-python reads a header-only snappy stream (an empty batch) as a raw block and fails.
    if not header.is_control and not (codec == Compression.SNAPPY and not expected):
        theirs = [(r.offset, r.timestamp, r.key, r.value, tuple(r.headers)) for r in kbatch]
        assert theirs == expected


@settings(max_examples=30)
@given(batches(), st.data())
def test_bit_flips_in_crc_range_are_caught(
    case: tuple[bytes, list[tuple[object, ...]], Compression], data: st.DataObject
) -> None:
    raw, _, _ = case
    bit = data.draw(st.integers(min_value=CRC_START * 8, max_value=len(raw) * 8 - 1))
    flipped = bytearray(raw)
    flipped[bit // 8] ^= 1 << (bit % 8)
    _assert_rejected(bytes(flipped))


def _assert_rejected(buf: bytes) -> None:
    try:
        check_batch(buf)
    except CorruptRecordError:
        pass
    else:
        raise AssertionError("check_batch accepted a corrupt batch")
    seen = []
    try:
        for r in read_records(buf):
            seen.append(r)
    except CorruptRecordError:
        pass
    else:
        raise AssertionError("read_records accepted a corrupt batch")
    assert seen == []


def test_every_bit_flip_in_crc_range_is_caught() -> None:
    # Exhaustive over small batches of every codec: a CRC catches every single-bit error.
    for codec in CODECS:
        b = BatchBuilder(compression=codec, producer_id=1, producer_epoch=1, base_sequence=1)
        b.append(b"key", b"value" * 4, [("h", b"x")], 1000)
        b.append(None, None, None, 1001)
        raw = b.build()
        for bit in range(CRC_START * 8, len(raw) * 8):
            flipped = bytearray(raw)
            flipped[bit // 8] ^= 1 << (bit % 8)
            _assert_rejected(bytes(flipped))


@settings(max_examples=30)
@given(batches())
def test_every_truncation_fails_cleanly(
    case: tuple[bytes, list[tuple[object, ...]], Compression],
) -> None:
    raw = case[0]
    for cut in range(len(raw)):
        prefix = raw[:cut]
        try:
            check_batch(prefix)
        except CorruptRecordError:
            pass
        else:
            raise AssertionError(f"check_batch accepted a {cut}-byte prefix")
        seen = []
        try:
            for r in read_records(prefix):
                seen.append(r)
        except CorruptRecordError:
            pass
        else:
            assert cut == 0, f"read_records accepted a {cut}-byte prefix"
        assert seen == []


@settings(max_examples=30)
@given(batches(), batches())
def test_truncated_second_batch_keeps_the_first(
    first: tuple[bytes, list[tuple[object, ...]], Compression],
    second: tuple[bytes, list[tuple[object, ...]], Compression],
) -> None:
    buf = first[0] + second[0][:-1]
    seen = []
    try:
        for r in read_records(buf):
            seen.append(r.offset)
    except CorruptRecordError:
        pass
    else:
        raise AssertionError("a truncated second batch was accepted")
    assert seen == [e[0] for e in first[1]]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(batches(), st.data())
def test_corruption_behind_a_valid_crc_raises_only_records_errors(
    case: tuple[bytes, list[tuple[object, ...]], Compression], data: st.DataObject
) -> None:
    # Garble the records section, then fix the CRC, as a buggy (not broken) producer would:
    # the reader must fail with a RecordsError or read something, never crash otherwise.
    raw, _, _ = case
    buf = bytearray(raw)
    if len(buf) > HEADER_SIZE:
        for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
            pos = data.draw(st.integers(min_value=HEADER_SIZE, max_value=len(buf) - 1))
            buf[pos] = data.draw(st.integers(min_value=0, max_value=255))
    count = data.draw(st.integers(min_value=-1, max_value=25))
    struct.pack_into(">i", buf, 57, count)
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[CRC_START:])))
    try:
        list(read_records(bytes(buf)))
    except RecordsError:
        pass


@given(st.binary(max_size=200))
def test_garbage_raises_only_records_errors(garbage: bytes) -> None:
    for check_crc in (True, False):
        try:
            list(read_records(garbage, check_crc=check_crc))
        except RecordsError:
            pass


def test_every_prefix_of_fixed_batches_fails_cleanly() -> None:
    for codec in CODECS:
        b = BatchBuilder(compression=codec)
        for i in range(5):
            b.append(b"k%d" % i, b"value" * i, [("h", None)] if i % 2 else None, 1000 + i)
        raw = b.build()
        for cut in range(1, len(raw)):
            for check_crc in (True, False):
                seen = []
                try:
                    for r in read_records(raw[:cut], check_crc=check_crc):
                        seen.append(r)
                except CorruptRecordError:
                    pass
                else:
                    raise AssertionError(f"{codec.name}: a {cut}-byte prefix was accepted")
                assert seen == []
