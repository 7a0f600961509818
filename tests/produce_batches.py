"""Record batches for broker tests (tests/unit/server, tests/cluster), built with kafka-python's
builder (an encoder no one here wrote). Importable as ``produce_batches``: tests/ is on sys.path
(tests/conftest.py puts it there)."""

from __future__ import annotations

import time
import warnings

with warnings.catch_warnings():
    # kafka-python reads resources with an API Python deprecates.
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder


def make_batch(
    values: list[bytes],
    *,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    timestamp_ms: int | None = None,
    compression: int = 0,
) -> bytes:
    """One RecordBatch v2 holding ``values`` (keys None), base offset 0."""
    builder = DefaultRecordBatchBuilder(
        magic=2,
        compression_type=compression,
        is_transactional=False,
        producer_id=producer_id,
        producer_epoch=producer_epoch,
        base_sequence=base_sequence,
        batch_size=1 << 30,
    )
    ts = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
    for i, value in enumerate(values):
        builder.append(i, timestamp=ts, key=None, value=value, headers=[])
    return bytes(builder.build())


def batch_values(records: bytes) -> list[tuple[int, bytes]]:
    """(offset, value) of every record in whole batches (decoded with kafka-python)."""
    out = []
    pos = 0
    while pos < len(records):
        length = int.from_bytes(records[pos + 8 : pos + 12], "big") + 12
        batch = DefaultRecordBatch(bytes(records[pos : pos + length]))
        assert batch.validate_crc()
        out.extend((r.offset, r.value) for r in batch)
        pos += length
    return out
