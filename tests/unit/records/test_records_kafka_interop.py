"""Interop with kafka-python's record code (written by others): batches go both ways."""

import struct

import pytest
from crc32c import crc32c
from kafka.record import MemoryRecords, MemoryRecordsBuilder
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

from rilke.records import (
    BatchBuilder,
    Compression,
    ControlType,
    build_control_batch,
    check_batch,
    end_txn_marker_value,
    iter_batches,
    read_records,
    set_base_offset,
    supported_codecs,
)

# Codecs both sides support (snappy: neither here).
CODECS = list(supported_codecs())

Row = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]

ROWS: list[Row] = [
    (1_700_000_000_000, None, b"value-" * 20, []),
    (1_700_000_000_005, b"key", None, [("trace", b"abc"), ("empty", b""), ("null", None)]),
    (1_699_999_999_000, b"", b"", [("\u00fcnicode", b"\x00\xff")]),
    (1_700_000_100_000, b"k" * 300, b"v" * 20_000, []),
]


def rilke_batch(codec: Compression, **kwargs: int | bool) -> bytes:
    b = BatchBuilder(compression=codec, **kwargs)  # type: ignore[arg-type]
    for ts, key, value, headers in ROWS:
        b.append(key, value, headers, ts)
    return b.build()


def kafka_batch(
    codec: Compression,
    transactional: bool = False,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
) -> bytes:
    b = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=codec,
        is_transactional=transactional,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    for offset, (ts, key, value, headers) in enumerate(ROWS):
        assert b.append(offset, ts, key, value, headers) is not None
    return bytes(b.build())


def as_rows(records: list[object]) -> list[tuple[int, int, object, object, list[object]]]:
    return [
        (r.offset, r.timestamp, r.key, r.value, [tuple(h) for h in r.headers])  # type: ignore[attr-defined]
        for r in records
    ]


EXPECTED = [(i, ts, k, v, [tuple(h) for h in hs]) for i, (ts, k, v, hs) in enumerate(ROWS)]


@pytest.mark.parametrize("codec", CODECS)
def test_ours_decode_with_kafka_python(codec: Compression) -> None:
    data = rilke_batch(
        codec, producer_id=77, producer_epoch=2, base_sequence=40, partition_leader_epoch=9
    )
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert batch.compression_type == codec
    assert (batch.producer_id, batch.producer_epoch, batch.base_sequence) == (77, 2, 40)
    assert batch.leader_epoch == 9
    assert batch.records_count == len(ROWS)
    assert batch.last_offset_delta == len(ROWS) - 1
    assert batch.max_timestamp == max(r[0] for r in ROWS)
    assert batch.first_timestamp == ROWS[0][0]
    assert not batch.is_transactional and not batch.is_control_batch
    assert as_rows(list(batch)) == EXPECTED


@pytest.mark.parametrize("codec", CODECS)
def test_kafka_python_decodes_with_ours(codec: Compression) -> None:
    data = kafka_batch(codec, producer_id=5, producer_epoch=1, base_sequence=100)
    header = check_batch(data)
    assert header.compression == codec  # the data compresses, so kafka-python kept the codec
    assert (header.producer_id, header.producer_epoch, header.base_sequence) == (5, 1, 100)
    records = list(read_records(data))
    assert as_rows(records) == EXPECTED
    assert [r.sequence for r in records] == [100, 101, 102, 103]


@pytest.mark.parametrize("codec", CODECS)
def test_memory_records_both_ways(codec: Compression) -> None:
    # kafka-python's MemoryRecordsBuilder, several batches back to back, read by us.
    buf = b""
    for base in (0, 4, 8):
        mb = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=1 << 30)
        for ts, key, value, headers in ROWS:
            mb.append(ts, key, value, headers)
        mb.close()
        one = bytearray(mb.buffer())
        set_base_offset(one, base)
        buf += bytes(one)
    assert [r.offset for r in read_records(buf)] == list(range(12))

    # Ours, several batches back to back, read by MemoryRecords.
    ours = b"".join(
        rilke_batch(codec, base_offset=base, partition_leader_epoch=1) for base in (0, 4, 8)
    )
    mr = MemoryRecords(ours)
    offsets = []
    while mr.has_next():
        batch = mr.next_batch()
        assert batch.validate_crc()
        offsets.extend(r.offset for r in batch)
    assert offsets == list(range(12))
    assert mr.valid_bytes() == len(ours)


@pytest.mark.parametrize("codec", CODECS)
def test_transactional_flag_both_ways(codec: Compression) -> None:
    data = rilke_batch(
        codec, producer_id=3, producer_epoch=0, base_sequence=0, is_transactional=True
    )
    assert DefaultRecordBatch(data).is_transactional
    data = kafka_batch(codec, transactional=True, producer_id=3, producer_epoch=0, base_sequence=0)
    assert check_batch(data).is_transactional
    assert all(r.is_transactional for r in read_records(data))


def test_control_batches_both_ways() -> None:
    data = build_control_batch(
        ControlType.ABORT,
        end_txn_marker_value(coordinator_epoch=11),
        timestamp_ms=123,
        producer_id=8,
        producer_epoch=2,
        is_transactional=True,
    )
    batch = DefaultRecordBatch(data)
    assert batch.validate_crc()
    assert batch.is_control_batch and batch.is_transactional
    (marker,) = list(batch)
    assert marker.abort and marker.version == 0 and marker.type == 0
    assert marker.timestamp == 123

    # Rilke's Raft types are just other control types to kafka-python.
    (noop,) = list(DefaultRecordBatch(build_control_batch(ControlType.RAFT_NOOP, timestamp_ms=1)))
    assert noop.type == ControlType.RAFT_NOOP

    # kafka-python's builder makes no control batches (only brokers do): set the bit and CRC.
    b = DefaultRecordBatchBuilder(2, 0, True, 8, 2, -1, 1 << 20)
    b.append(0, 5, b"\x00\x00\x00\x01", end_txn_marker_value(4), [])
    buf = b.build()
    (attributes,) = struct.unpack_from(">h", buf, 21)
    struct.pack_into(">h", buf, 21, attributes | 0x20)
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    (record,) = read_records(bytes(buf))
    assert record.is_control and record.is_transactional
    assert record.control_type == ControlType.COMMIT


def test_kafka_python_empty_values_and_many_records() -> None:
    b = DefaultRecordBatchBuilder(2, Compression.LZ4, False, -1, -1, -1, 1 << 30)
    for i in range(5000):
        b.append(i, 1000 + i % 7, None if i % 3 else b"%d" % i, b"", [])
    data = bytes(b.build())
    records = list(read_records(data))
    assert len(records) == 5000
    assert records[-1].offset == 4999
    assert records[3].key == b"3" and records[4].key is None
    (batch,) = iter_batches(data)
    assert batch.header.max_timestamp == 1006
