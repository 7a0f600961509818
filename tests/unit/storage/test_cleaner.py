from __future__ import annotations

from pathlib import Path

from batches import DefaultRecordBatch, make_batch
from conftest import crash

from rilke.records.header import iter_headers, read_header
from rilke.storage import LogConfig, PartitionLog

COMPACT = LogConfig(
    segment_bytes=600, cleanup_policy="compact", delete_retention_ms=1000, retention_ms=-1
)


def all_records(log: PartitionLog) -> list[tuple[int, bytes | None, bytes | None]]:
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        if not result.records:
            break
        for position, header in iter_headers(result.records):
            batch = DefaultRecordBatch(result.records[position : position + header.size])
            assert batch.validate_crc()
            out.extend((r.offset, r.key, r.value) for r in batch)
        offset = result.next_offset
    return out


def test_compaction_keeps_the_newest_per_key_and_drops_old_tombstones(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "t-0", COMPACT, now_ms=0, recover=False)
    writes: list[tuple[bytes | None, bytes | None]] = []
    for i in range(60):
        key = b"k%d" % (i % 5) if i < 40 else b"filler%d" % i
        value = None if i in (36, 37) else b"v%d" % i
        pair = [(key, value), (None, b"nokey%d" % i)] if i % 10 == 0 else [(key, value)]
        writes.extend(pair)
        log.append(make_batch(pair, timestamp_ms=10_000 + i), now_ms=1)
    assert len(log.segments) > 3
    before = all_records(log)
    size_before = log.size_bytes()
    freed = log.compact(now_ms=10_500)  # tombstones are still young
    assert freed > 0
    assert log.size_bytes() == size_before - freed
    after = all_records(log)
    active_base = log.segments[-1].base_offset
    newest = {}
    for offset, key, _value in before:
        if key is not None and offset < active_base:
            newest[key] = offset
    expected = [
        (o, k, v) for o, k, v in before if o >= active_base or k is None or newest.get(k) == o
    ]
    assert after == expected
    assert any(v is None for _, _, v in after)  # young tombstones stay
    log.compact(now_ms=10**9)
    assert all(v is not None or o >= active_base for o, _, v in all_records(log))
    assert log.log_end_offset == len(writes)
    # Offsets never move, and the cleaned log survives a crash and reopen.
    kept = all_records(log)
    crash(log)
    log = PartitionLog.open(tmp_path / "t-0", COMPACT, now_ms=0, recover=True)
    assert all_records(log) == kept
    assert log.append(make_batch(1), now_ms=1).first_offset == len(writes)


def test_compaction_is_a_no_op_for_delete_policy_and_unique_keys(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "t-0", LogConfig(segment_bytes=600), now_ms=0, recover=False)
    for i in range(20):
        log.append(make_batch([(b"k%d" % i, b"v")]), now_ms=1)
    assert log.compact(now_ms=0) == 0
    log.update_config(COMPACT)
    assert log.compact(now_ms=0) == 0


def test_compressed_batches_are_kept_whole_or_dropped(tmp_path: Path) -> None:
    log = PartitionLog.open(tmp_path / "t-0", COMPACT, now_ms=0, recover=False)
    one, two = b"1" * 300, b"2" * 300  # compressible, so kafka-python does compress
    for pairs in (
        [(b"a", one), (b"b", one)],
        [(b"a", two), (b"c", one)],
        [(b"b", two), (b"c", two)],
    ):
        batch = make_batch(pairs, compression=1)  # gzip
        assert batch[22] & 0x07 == 1
        log.append(batch, now_ms=1)
    log.roll(now_ms=1)
    log.append(make_batch(1), now_ms=1)
    log.compact(now_ms=0)
    # Batch 0 holds no newest record (a and b were rewritten): dropped. Batch 2 keeps a's
    # newest, rebuilt compressed with the same codec; batch 4 holds b's and c's newest.
    assert all_records(log)[:3] == [(2, b"a", two), (4, b"b", two), (5, b"c", two)]
    data = log.read(2, 1).records
    assert data[22] & 0x07 == 1
    assert read_header(data).last_offset_delta == 1  # the batch keeps its offset span
