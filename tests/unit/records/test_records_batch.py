"""BatchBuilder, the reader and the header view working together."""

import struct

import pytest
from crc32c import crc32c

from rilke.errors import (
    CorruptRecordError,
    DecompressedTooLargeError,
    InvalidRecordError,
    RecordsError,
    RecordTooLargeError,
    UnsupportedCompressionError,
)
from rilke.records import (
    HEADER_SIZE,
    LOG_APPEND_TIME,
    MAX_RECORD_OVERHEAD,
    BatchBuilder,
    Compression,
    ControlType,
    build_control_batch,
    check_batch,
    compression,
    control_key,
    end_txn_marker_value,
    iter_batches,
    iter_headers,
    peek_size,
    read_batch,
    read_header,
    read_records,
    record_size_upper_bound,
    set_base_offset,
    set_log_append_time,
    set_partition_leader_epoch,
    supported_codecs,
)
from rilke.records.varint import encode_varint

CODECS = list(supported_codecs())


def fix_crc(buf: bytearray) -> bytearray:
    struct.pack_into(">I", buf, 17, crc32c(bytes(buf[21:])))
    return buf


def raw_record(
    offset_delta: int,
    key: bytes | None = b"k",
    value: bytes | None = b"v",
    ts_delta: int = 0,
    tail: bytes = b"\x00",
    length_adjust: int = 0,
) -> bytes:
    """A hand-made record, to build batches the builder refuses to make."""
    body = b"\x00" + encode_varint(ts_delta) + encode_varint(offset_delta)
    for field in (key, value):
        body += b"\x01" if field is None else encode_varint(len(field)) + field
    body += tail
    return encode_varint(len(body) + length_adjust) + body


def raw_batch(records: bytes, count: int, last_offset_delta: int, attributes: int = 0) -> bytes:
    header = struct.pack(
        ">qiibIhiqqqhii",
        0,
        HEADER_SIZE - 12 + len(records),
        0,
        2,
        0,
        attributes,
        last_offset_delta,
        1000,
        1000,
        -1,
        -1,
        -1,
        count,
    )
    return bytes(fix_crc(bytearray(header + records)))


@pytest.mark.parametrize("codec", CODECS)
def test_build_and_read(codec: Compression) -> None:
    b = BatchBuilder(
        compression=codec,
        base_offset=100,
        partition_leader_epoch=7,
        producer_id=42,
        producer_epoch=3,
        base_sequence=2**31 - 2,
    )
    assert b.is_empty
    b.append(None, b"v" * 100, None, 5000)
    b.append(b"key", None, [("a", b"1"), ("\u00e9", None)], 4000)
    size = b.append(b"", b"", (), 9000)
    assert size == b.size_in_bytes
    assert b.record_count == 3
    data = b.build()
    assert b.build() is data
    assert isinstance(data, bytes)
    h = check_batch(data)
    assert h.size == len(data)
    assert (h.base_offset, h.last_offset, h.records_count) == (100, 102, 3)
    assert (h.base_timestamp, h.max_timestamp) == (5000, 9000)
    assert (h.producer_id, h.producer_epoch, h.base_sequence) == (42, 3, 2**31 - 2)
    assert h.partition_leader_epoch == 7
    assert h.compression == codec
    assert not h.is_control and not h.is_transactional and h.timestamp_type == 0
    records = list(read_records(data))
    assert [r.offset for r in records] == [100, 101, 102]
    assert [r.timestamp for r in records] == [5000, 4000, 9000]
    assert [r.key for r in records] == [None, b"key", b""]
    assert [r.value for r in records] == [b"v" * 100, None, b""]
    assert records[1].headers == (("a", b"1"), ("\u00e9", None))
    assert records[0].headers == ()
    assert [r.sequence for r in records] == [2**31 - 2, 2**31 - 1, 0]
    assert records[0].batch == h
    assert records[0].producer_id == 42
    assert records[0].partition_leader_epoch == 7
    assert records[0].control_type is None


def test_empty_batch() -> None:
    data = BatchBuilder().build()
    h = check_batch(data)
    assert len(data) == HEADER_SIZE
    assert (h.records_count, h.last_offset_delta, h.base_timestamp) == (0, 0, -1)
    assert list(read_records(data)) == []


def test_append_at_leaves_gaps_and_keeps_span() -> None:
    b = BatchBuilder(base_offset=10)
    b.append_at(10, b"a", b"1", None, 1)
    b.append_at(13, b"b", b"2", None, 2)
    with pytest.raises(ValueError):
        b.append_at(13, b"c", b"3", None, 3)
    b.append(b"d", b"4", None, 4)  # next after 13
    with pytest.raises(ValueError):
        b.build(last_offset_delta=3)
    data = b.build(last_offset_delta=9)
    h = check_batch(data)
    assert (h.records_count, h.last_offset) == (3, 19)
    assert [r.offset for r in read_records(data)] == [10, 13, 14]


def test_build_closes_the_builder() -> None:
    b = BatchBuilder()
    b.append(b"k", b"v", None, 1)
    b.build()
    with pytest.raises(ValueError):
        b.append(b"k", b"v", None, 1)
    with pytest.raises(ValueError):
        b.set_producer_state(1, 1, 1, False)


def test_bad_input_changes_nothing() -> None:
    b = BatchBuilder()
    b.append(b"k", b"v", None, 1)
    before = b.size_in_bytes
    with pytest.raises(TypeError):
        b.append("text", b"v", None, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.append(b"k", "text", None, 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        b.append(b"k", b"v", [(b"bytes-key", b"v")], 2)  # type: ignore[list-item]
    with pytest.raises(ValueError):
        b.append(b"k", b"v", None, 2**64)
    assert (b.size_in_bytes, b.record_count, b.max_timestamp) == (before, 1, 1)
    assert [r.key for r in read_records(b.build())] == [b"k"]


def test_first_timestamp_range() -> None:
    with pytest.raises(ValueError):
        BatchBuilder().append(None, None, None, 2**63)
    b = BatchBuilder()
    b.append(None, None, None, -(2**62))
    with pytest.raises(ValueError):
        b.append(None, None, None, 2**62)  # a delta of 2**63 does not fit a varlong
    b.append(None, None, None, 2**62 - 1)
    assert [r.timestamp for r in read_records(b.build())] == [-(2**62), 2**62 - 1]


def test_memoryview_and_bytearray_values() -> None:
    b = BatchBuilder()
    key = bytearray(b"kk")
    b.append(key, memoryview(b"vvv"), [("h", bytearray(b"x"))], 1)
    key[0] = 0  # the builder copied it
    (r,) = read_records(b.build())
    assert (r.key, r.value, r.headers) == (b"kk", b"vvv", (("h", b"x"),))


def test_record_size_upper_bound() -> None:
    cases: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]] = [
        (None, None, []),
        (b"k" * 300, b"v" * 20000, [("h" * 70, b"x" * 200), ("n", None)]),
    ]
    for key, value, headers in cases:
        b = BatchBuilder()
        b.append(key, value, headers, 2**40)
        size = b.append(key, value, headers, 0)  # a large negative delta
        one = (size - HEADER_SIZE) // 2
        assert one <= record_size_upper_bound(key, value, headers)
        assert record_size_upper_bound(key, value, headers) <= one + MAX_RECORD_OVERHEAD


def test_unsupported_compression_fails_at_once() -> None:
    with pytest.raises(UnsupportedCompressionError):
        BatchBuilder(compression=5)
    with pytest.raises(ValueError):
        BatchBuilder(timestamp_type=2)
    with pytest.raises(ValueError):
        BatchBuilder(is_transactional=True)


def test_reader_refuses_unsupported_codec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_cramjam", None)
    buf = bytearray(BatchBuilder().build())
    struct.pack_into(">h", buf, 21, Compression.SNAPPY)
    fix_crc(buf)
    check_batch(buf)  # a codec Kafka defines: the header is fine
    with pytest.raises(UnsupportedCompressionError):
        list(read_records(bytes(buf)))
    struct.pack_into(">h", buf, 21, 5)
    fix_crc(buf)
    with pytest.raises(InvalidRecordError):
        check_batch(buf)


def test_control_batches() -> None:
    data = build_control_batch(
        ControlType.COMMIT,
        end_txn_marker_value(5),
        timestamp_ms=77,
        base_offset=9,
        producer_id=3,
        producer_epoch=1,
        is_transactional=True,
    )
    h = check_batch(data)
    assert h.is_control and h.is_transactional
    (r,) = read_records(data)
    assert r.control_type == ControlType.COMMIT
    assert r.key == control_key(ControlType.COMMIT) == b"\x00\x00\x00\x01"
    assert r.value == b"\x00\x00\x00\x00\x00\x05"
    noop = build_control_batch(ControlType.RAFT_NOOP, timestamp_ms=1, partition_leader_epoch=4)
    config = build_control_batch(ControlType.RAFT_CONFIG, b"cfg", timestamp_ms=2)
    plain = BatchBuilder()
    plain.append(b"k", b"v", None, 3)
    buf = noop + plain.build() + config
    assert [r.control_type for r in read_records(buf)] == [1000, None, 1001]
    assert [r.key for r in read_records(buf, skip_control=True)] == [b"k"]
    assert read_header(noop).partition_leader_epoch == 4


def test_log_append_time() -> None:
    b = BatchBuilder(compression=Compression.LZ4)
    b.append(b"a", b"1", None, 10)
    b.append(b"b", b"2", None, 20)
    buf = bytearray(b.build())
    set_log_append_time(buf, 5555)
    h = check_batch(buf)
    assert h.timestamp_type == LOG_APPEND_TIME
    assert [r.timestamp for r in read_records(bytes(buf))] == [5555, 5555]
    b = BatchBuilder(timestamp_type=LOG_APPEND_TIME)
    b.append(b"a", b"1", None, 10)
    assert check_batch(b.build()).timestamp_type == LOG_APPEND_TIME


def test_rewrites_outside_the_crc() -> None:
    b = BatchBuilder()
    b.append(b"a", b"1", None, 10)
    first = bytearray(b.build())
    second = bytearray(first)
    set_base_offset(first, 1000)
    set_partition_leader_epoch(first, 12)
    buf = bytearray(first + second)
    set_base_offset(buf, 1001, pos=len(first))
    set_partition_leader_epoch(buf, 13, pos=len(first))
    headers = [h for _, h in iter_headers(buf)]
    assert [(h.base_offset, h.partition_leader_epoch) for h in headers] == [(1000, 12), (1001, 13)]
    assert [r.offset for r in read_records(buf)] == [1000, 1001]


def test_iter_batches_and_read_batch() -> None:
    parts = []
    for i in range(3):
        b = BatchBuilder(base_offset=i * 10, compression=Compression.GZIP)
        b.append(None, b"x%d" % i, None, i)
        parts.append(b.build())
    buf = b"".join(parts)
    batches = list(iter_batches(memoryview(buf)))
    assert [b.position for b in batches] == [0, len(parts[0]), len(parts[0]) + len(parts[1])]
    assert [b.raw for b in batches] == parts
    assert [b.records()[0].value for b in batches] == [b"x0", b"x1", b"x2"]
    assert read_batch(buf, len(parts[0])).header.base_offset == 10
    assert peek_size(buf) == len(parts[0])
    assert peek_size(buf[:11]) is None
    with pytest.raises(RecordTooLargeError):
        read_batch(buf, max_size=len(parts[0]) - 1)


def test_decompression_limit_applies_to_batches() -> None:
    b = BatchBuilder(compression=Compression.LZ4)
    b.append(None, bytes(100_000), None, 1)
    data = b.build()
    (batch,) = iter_batches(data)
    with pytest.raises(DecompressedTooLargeError):
        batch.records(max_decompressed_bytes=50_000)
    with pytest.raises(DecompressedTooLargeError):
        list(read_records(data, max_decompressed_bytes=50_000))
    assert batch.records()[0].value == bytes(100_000)


def test_trailing_partial_batch_after_good_ones() -> None:
    b = BatchBuilder()
    b.append(b"a", b"1", None, 1)
    good = b.build()
    buf = good + good[:-1]
    seen = []
    with pytest.raises(CorruptRecordError):
        for r in read_records(buf):
            seen.append(r.key)
    assert seen == [b"a"]


# --- records that disagree with a valid header and CRC -----------------------------------


def test_hand_made_batch_reads() -> None:
    data = raw_batch(raw_record(0) + raw_record(2, key=None, value=None), 2, 2)
    assert [(r.offset, r.key, r.value) for r in read_records(data)] == [
        (0, b"k", b"v"),
        (2, None, None),
    ]


@pytest.mark.parametrize(
    ("records", "count", "last_delta"),
    [
        pytest.param(raw_record(0), 2, 1, id="fewer-records-than-count"),
        pytest.param(raw_record(0) + raw_record(1), 1, 1, id="more-records-than-count"),
        pytest.param(raw_record(0) + raw_record(2), 2, 1, id="delta-past-last"),
        pytest.param(raw_record(1) + raw_record(1), 2, 1, id="delta-repeated"),
        pytest.param(raw_record(1) + raw_record(0), 2, 1, id="delta-backwards"),
        pytest.param(raw_record(-1), 1, 0, id="negative-delta"),
        pytest.param(raw_record(0, key=b"\xff" * 3, length_adjust=-1), 1, 0, id="short-length"),
        pytest.param(raw_record(0, length_adjust=1) + b"\x00", 1, 0, id="long-length"),
        pytest.param(raw_record(0, length_adjust=100), 1, 0, id="length-past-batch"),
        pytest.param(raw_record(0, tail=b"\x01"), 1, 0, id="negative-header-count"),
        pytest.param(raw_record(0, tail=b"\x02\x02\xff\xfe\x00"), 1, 0, id="bad-utf8-key"),
        pytest.param(raw_record(0, tail=b"\x02\x01\x00"), 1, 0, id="negative-header-key"),
        pytest.param(raw_record(0, tail=b"\x02\x02a\x03"), 1, 0, id="negative-header-value"),
        pytest.param(raw_record(0, tail=b"\x02\x02a\x0a"), 1, 0, id="header-value-past-end"),
        pytest.param(raw_record(0, tail=b"\xfe\xff\xff\xff\x0f"), 1, 0, id="huge-header-count"),
        pytest.param(raw_record(0) + b"\x00", 1, 0, id="trailing-byte"),
        pytest.param(b"\x02\x00", 1, 0, id="tiny-record"),
        pytest.param(b"\x80", 1, 0, id="truncated-length"),
        pytest.param(b"\xff" * 12, 1, 0, id="varint-too-long"),
    ],
)
def test_inconsistent_records_are_corrupt(records: bytes, count: int, last_delta: int) -> None:
    data = raw_batch(records, count, last_delta)
    check_batch(data)  # the header and CRC hold
    with pytest.raises(CorruptRecordError):
        list(read_records(data))


@pytest.mark.parametrize(
    ("field", "value"),
    [(b"key", 3), (b"value", 3)],
)
def test_negative_lengths_other_than_null(field: bytes, value: int) -> None:
    key = b"\x03" if field == b"key" else b"\x02k"
    val = b"\x03" if field == b"value" else b"\x02v"
    body = b"\x00\x00\x00" + key + val + b"\x00"
    data = raw_batch(encode_varint(len(body)) + body, 1, 0)
    with pytest.raises(CorruptRecordError):
        list(read_records(data))


def test_header_rules() -> None:
    data = bytearray(raw_batch(raw_record(0), 1, 0))
    struct.pack_into(">i", data, 57, 3)  # 3 records in 1 offset
    with pytest.raises(InvalidRecordError):
        check_batch(fix_crc(data))
    struct.pack_into(">i", data, 57, -1)
    with pytest.raises(InvalidRecordError):
        check_batch(fix_crc(data))
    data[16] = 1
    with pytest.raises(CorruptRecordError, match="magic"):
        check_batch(data)


def test_every_error_is_a_records_error() -> None:
    for cls in (
        CorruptRecordError,
        InvalidRecordError,
        UnsupportedCompressionError,
        RecordTooLargeError,
        DecompressedTooLargeError,
    ):
        assert issubclass(cls, RecordsError)


# --- columns, and a header read once ------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_columns_hold_what_records_hold(codec: Compression) -> None:
    b = BatchBuilder(compression=codec, base_offset=40)
    b.append(b"k0", b"v0", [("h", b"x"), ("n", None)], 1000)
    b.append(None, None, None, 1003)
    b.append_at(45, b"k2", bytes(300), None, 999)
    batch = read_batch(b.build())
    cols = batch.columns()
    records = batch.records()
    assert cols.offsets == [r.offset for r in records] == [40, 41, 45]
    assert cols.timestamps == [r.timestamp for r in records] == [1000, 1003, 999]
    assert cols.keys == [r.key for r in records] == [b"k0", None, b"k2"]
    assert cols.values == [r.value for r in records] == [b"v0", None, bytes(300)]
    assert cols.headers == [r.headers for r in records] == [(("h", b"x"), ("n", None)), (), ()]
    assert all(r.batch is batch.header for r in records)


def test_columns_of_a_log_append_time_batch_carry_the_append_time() -> None:
    b = BatchBuilder()
    b.append(b"a", b"1", None, 10)
    b.append(b"b", b"2", None, 20)
    buf = bytearray(b.build())
    set_log_append_time(buf, 5555)
    assert read_batch(bytes(buf)).columns().timestamps == [5555, 5555]


def test_a_header_read_before_is_checked_not_read_again() -> None:
    b = BatchBuilder()
    b.append(b"a", b"1", None, 10)
    data = b"pad" + b.build()
    header = read_header(data, 3)
    assert check_batch(data, 3, header=header) is header
    assert read_batch(data, 3, header=header).columns().values == [b"1"]
    broken = bytearray(data)
    broken[-1] ^= 0x01  # the CRC no longer holds: the given header does not vouch for it
    with pytest.raises(CorruptRecordError, match="CRC"):
        check_batch(bytes(broken), 3, header=header)
    with pytest.raises(CorruptRecordError, match="truncated"):
        check_batch(data[:-1], 3, header=header)
    check_batch(bytes(broken), 3, header=header, check_crc=False)


# --- append_many: the bulk form of append ---------------------------------------------------


def test_append_many_writes_what_appending_one_by_one_writes() -> None:
    keys: list[bytes | None] = [b"k%d" % i if i % 3 else None for i in range(500)]
    values: list[bytes | None] = [bytes(i % 300) if i % 7 else None for i in range(500)]
    for codec in CODECS:
        one = BatchBuilder(compression=codec)
        one.append(b"first", b"v", None, 1000)
        many = BatchBuilder(compression=codec)
        many.append(b"first", b"v", None, 1000)
        for k, v in zip(keys, values, strict=True):
            one.append(k, v, None, 9000)
        assert many.append_many(keys, values, 9000) == 500
        assert many.build() == one.build()
    nokeys = BatchBuilder()
    assert nokeys.append_many(None, [b"a", b"b"], 5) == 2
    assert [(r.offset, r.key, r.value, r.timestamp) for r in read_records(nokeys.build())] == [
        (0, None, b"a", 5),
        (1, None, b"b", 5),
    ]


def test_append_many_stops_at_the_byte_limit_and_resumes() -> None:
    values: list[bytes | None] = [bytes(100)] * 50
    b = BatchBuilder()
    end = b.append_many(None, values, 7, limit_bytes=1000)
    assert 0 < end < 50 and b.size_in_bytes >= 1000
    assert b.size_in_bytes - 100 < 1000  # it stopped at the first record that reached it
    assert b.append_many(None, values, 7, start=end) == 50
    assert [r.offset for r in read_records(b.build())] == list(range(50))


def test_append_many_refuses_bad_input_and_changes_nothing() -> None:
    b = BatchBuilder()
    b.append(None, b"x", None, 7)
    before = b.size_in_bytes
    with pytest.raises(TypeError, match="value must be bytes"):
        b.append_many(None, [b"ok", "text"], 7)  # type: ignore[list-item]
    with pytest.raises(TypeError, match="key must be bytes"):
        b.append_many([b"k", 5], [b"ok", b"ok"], 7)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="keys"):
        b.append_many([b"k"], [b"ok", b"ok"], 7)
    with pytest.raises(ValueError, match="out of range"):
        b.append_many(None, [b"ok"], -(1 << 63) - 1)
    assert b.size_in_bytes == before and b.record_count == 1
    assert [r.value for r in read_records(b.build())] == [b"x"]
    with pytest.raises(ValueError, match="already built"):
        b.append_many(None, [b"late"], 7)


# --- append_columns: the producer's deferred encoding --------------------------------------


def test_append_columns_writes_what_appending_one_by_one_writes() -> None:
    from rilke.records.builder import encode_headers

    n = 300
    keys: list[bytes | None] = [b"k%d" % i if i % 3 else None for i in range(n)]
    values: list[bytes | None] = [bytes(i % 200) if i % 7 else None for i in range(n)]
    heads = [[("h", b"v%d" % i), ("n", None)] if i % 5 == 0 else None for i in range(n)]
    # Deltas before and after the base, small, two-byte and far (a varlong of many bytes).
    stamps = [10**12 + (i * 977 if i % 4 else -i) + (i == 9) * 10**11 for i in range(n)]
    for codec in CODECS:
        one = BatchBuilder(compression=codec)
        cols = BatchBuilder(compression=codec)
        for builder in (one, cols):
            builder.append(b"first", b"v", None, 10**12 - 5)
        for k, v, h, t in zip(keys, values, heads, stamps, strict=True):
            one.append(k, v, h, t)
        encoded = [encode_headers(h) if h else None for h in heads]
        assert cols.append_columns(keys, values, encoded, stamps) == one.size_in_bytes
        assert cols.max_timestamp == one.max_timestamp and cols.record_count == n + 1
        assert cols.build() == one.build()
    bare = BatchBuilder()
    bare.append_columns(None, [b"a", None], None, [7, 5])
    assert [
        (r.offset, r.key, r.value, r.timestamp, r.headers) for r in read_records(bare.build())
    ] == [
        (0, None, b"a", 7, ()),
        (1, None, None, 5, ()),
    ]


def test_append_columns_refuses_bad_input_and_changes_nothing() -> None:
    b = BatchBuilder()
    b.append(None, b"x", None, 7)
    before = b.size_in_bytes
    with pytest.raises(TypeError, match="value must be bytes"):
        b.append_columns(None, [b"ok", "text"], None, [7, 7])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="key must be bytes"):
        b.append_columns([b"k", 5], [b"ok", b"ok"], None, [7, 7])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="headers section"):
        b.append_columns(None, [b"ok"], [[("h", b"v")]], [7])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="keys"):
        b.append_columns([b"k"], [b"ok", b"ok"], None, [7, 7])
    with pytest.raises(ValueError, match="timestamps"):
        b.append_columns(None, [b"ok", b"ok"], None, [7])
    with pytest.raises(ValueError, match="out of range"):
        b.append_columns(None, [b"ok"], None, [1 << 63])
    assert b.size_in_bytes == before and b.record_count == 1
    assert [r.value for r in read_records(b.build())] == [b"x"]
    with pytest.raises(ValueError, match="already built"):
        b.append_columns(None, [b"late"], None, [7])
