"""Test helper: record batches built by kafka-python (an encoder no one here wrote)."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python's package import uses a deprecated importlib.resources call.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder

__all__ = ["DefaultRecordBatch", "make_batch"]


def make_batch(
    records: list[tuple[bytes | None, bytes | None]] | int = 1,
    *,
    base_offset: int = 0,
    timestamp_ms: int = 1_000,
    value_size: int = 10,
    compression: int = 0,
) -> bytes:
    """A batch of ``records`` (key, value) pairs, or of n records with filler values."""
    if isinstance(records, int):
        records = [(b"k%d" % i, b"v" * value_size) for i in range(records)]
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=-1,
        producer_epoch=-1,
        base_sequence=-1,
        batch_size=1 << 30,
    )
    for i, (key, value) in enumerate(records):
        builder.append(i, timestamp=timestamp_ms + i, key=key, value=value, headers=[])
    data = bytearray(builder.build())
    data[0:8] = base_offset.to_bytes(8, "big")
    return bytes(data)
