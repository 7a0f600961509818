"""The batch layout is declared once (records.header.FIELDS); what others use derives from it."""

from __future__ import annotations

import pytest

from rilke.errors import CorruptRecordError, RecordTooLargeError
from rilke.records.builder import BatchBuilder
from rilke.records.header import (
    BASE_SEQUENCE_POS,
    CRC_POS,
    CRC_START,
    FIELDS,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAX_TIMESTAMP_POS,
    CheckedBatches,
    check_batch,
    check_batches,
    header_struct,
    read_header,
    set_base_sequence,
    set_producer,
)


def make_batch(count: int, *, timestamp_ms: int = 1_000) -> bytes:
    builder = BatchBuilder()
    for i in range(count):
        builder.append(b"k", b"v%d" % i, None, timestamp_ms + i)
    return builder.build()


def test_positions_are_kafkas() -> None:
    # Kafka's DefaultRecordBatch: CRC at 17 covering 21..end, base sequence at 53, 61 bytes.
    assert (HEADER_SIZE, LOG_OVERHEAD, CRC_POS, CRC_START) == (61, 12, 17, 21)
    assert (MAX_TIMESTAMP_POS, BASE_SEQUENCE_POS) == (35, 53)


def test_header_struct_pads_the_fields_not_named() -> None:
    assert header_struct(*(name for name, _ in FIELDS)).format == ">qiibIhiqqqhii"
    assert header_struct("base_offset", "batch_length").format == ">qi"
    fast = header_struct("batch_length", "max_timestamp", "records_count")
    assert fast.format == ">8xi23xq14xi"
    batch = make_batch(3, timestamp_ms=7)
    header = read_header(batch)
    assert fast.unpack_from(batch) == (header.batch_length, header.max_timestamp, 3)
    with pytest.raises(ValueError, match="layout order"):
        header_struct("batch_length", "base_offset")
    with pytest.raises(ValueError, match="no such"):
        header_struct("base_offset", "size")


def test_check_batches_checks_every_batch_and_keeps_the_bytes() -> None:
    data = make_batch(2) + make_batch(3)
    checked = check_batches(data)
    assert checked.data is data  # bytes are not copied
    assert [h.records_count for h in checked.headers] == [2, 3]
    assert check_batches(bytearray(data)).data == data
    bad = bytearray(data)
    bad[-1] ^= 0xFF  # the second batch's CRC no longer holds
    with pytest.raises(CorruptRecordError, match="CRC"):
        check_batches(bad)
    with pytest.raises(CorruptRecordError):
        check_batches(data[:-1])
    with pytest.raises(CorruptRecordError):
        check_batches(b"")
    with pytest.raises(RecordTooLargeError):
        check_batches(data, max_size=len(make_batch(2)) - 1)


def test_only_check_batches_makes_checked_batches() -> None:
    with pytest.raises(TypeError):
        CheckedBatches(make_batch(1), (), None)


def test_set_base_sequence_keeps_the_crc() -> None:
    buf = bytearray(make_batch(4))
    set_base_sequence(buf, 1234)
    header = check_batch(buf)  # the CRC holds
    assert (header.base_sequence, header.last_sequence) == (1234, 1237)


def test_set_producer_rewrites_the_three_fields_only_and_keeps_the_crc() -> None:
    original = make_batch(3)
    buf = bytearray(original)
    set_producer(buf, 77_000_000_123, 9, 41)
    header = check_batch(buf)  # the CRC holds
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (
        77_000_000_123,
        9,
        41,
    )
    before = read_header(original)
    assert (header.base_offset, header.records_count, header.max_timestamp) == (
        before.base_offset,
        before.records_count,
        before.max_timestamp,
    )
    assert buf[HEADER_SIZE:] == original[HEADER_SIZE:]  # the records untouched
