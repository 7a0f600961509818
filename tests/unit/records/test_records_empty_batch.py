"""build_empty_batch: what compaction keeps of a batch whose records all went."""

from __future__ import annotations

import pytest

from rilke.records import BatchBuilder, Compression, build_control_batch, build_empty_batch
from rilke.records.builder import ControlType
from rilke.records.header import LOG_APPEND_TIME, check_batch, read_header
from rilke.records.reader import read_batch


def test_an_empty_batch_keeps_the_span_and_fields_and_has_no_records() -> None:
    builder = BatchBuilder(
        compression=Compression.LZ4,
        base_offset=40,
        partition_leader_epoch=7,
        producer_id=12,
        producer_epoch=3,
        base_sequence=100,
        is_transactional=True,
        timestamp_type=LOG_APPEND_TIME,
    )
    for i in range(5):
        builder.append(b"k%d" % i, b"v" * 100, None, 5_000 + i)
    original = read_header(builder.build())
    empty = build_empty_batch(original)
    header = check_batch(empty, check_crc=True)
    assert len(empty) == 61
    assert header.records_count == 0
    assert header.compression == Compression.NONE
    for name in (
        "base_offset",
        "last_offset_delta",
        "partition_leader_epoch",
        "base_timestamp",
        "max_timestamp",
        "producer_id",
        "producer_epoch",
        "base_sequence",
        "is_transactional",
        "timestamp_type",
    ):
        assert getattr(header, name) == getattr(original, name), name
    assert header.next_offset == 45
    assert read_batch(empty).records() == []


def test_a_control_batch_is_never_emptied() -> None:
    control = build_control_batch(ControlType.RAFT_NOOP, b"", timestamp_ms=0, base_offset=3)
    with pytest.raises(ValueError, match="control batch at 3"):
        build_empty_batch(read_header(control))
