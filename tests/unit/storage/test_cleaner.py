from __future__ import annotations

from pathlib import Path

from batches import DefaultRecordBatch, make_batch
from storage_crash import crash

from rilke.records.header import BatchHeader, iter_headers, read_header
from rilke.storage import LogConfig, PartitionLog
from rilke.storage.cleaner import finish_compaction, plan_compaction

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


def _keyed_log(tmp_path: Path, config: LogConfig = COMPACT) -> PartitionLog:
    log = PartitionLog.open(tmp_path / "t-0", config, now_ms=0, recover=False)
    for i in range(60):
        log.append(make_batch([(b"k%d" % (i % 5), b"v%d" % i)], timestamp_ms=i), now_ms=1)
    return log


def test_a_compaction_plan_runs_while_the_log_takes_appends_and_reads(tmp_path: Path) -> None:
    log = _keyed_log(tmp_path)
    log.flush_rolled_segments()
    log.checkpoint()
    plan = plan_compaction(log, now_ms=0)
    assert plan is not None
    sealed = len(log.segments) - 1
    # The plan runs (elsewhere: it only uses its own descriptors) while the log goes on.
    for i in range(20):
        log.append(make_batch([(b"new%d" % i, b"x" * 50)]), now_ms=1)
    before = all_records(log)
    plan.run()
    assert all_records(log) == before  # nothing swapped in yet
    freed = finish_compaction(log, plan)
    assert freed > 0
    after = all_records(log)
    assert [r for r in after if r[0] >= 60] == [r for r in before if r[0] >= 60]
    # Of the 60 records of 5 keys in the segments sealed when planned, only each key's newest
    # in them is left (and whatever was in the then-active segment).
    planned_end = log.segments[sealed].base_offset
    old = [r for r in after if r[0] < planned_end]
    assert len({k for _, k, _ in old}) == len(old) == 5
    assert not list(tmp_path.glob("t-0/*.cleaned"))


def test_segments_deleted_or_truncated_meanwhile_are_not_swapped(tmp_path: Path) -> None:
    log = _keyed_log(tmp_path)
    log.flush_rolled_segments()
    plan = plan_compaction(log, now_ms=0)
    assert plan is not None
    plan.run()
    assert len(plan.cleaned) >= 2
    first_kept = log.segments[1].base_offset
    log.delete_records_before(first_kept)  # drops the first segment (closes its files)
    log.truncate_to(log.segments[2].base_offset)  # and everything from the third on
    expected = all_records(log)
    finish_compaction(log, plan)
    assert not list(tmp_path.glob("t-0/*.cleaned"))
    after = all_records(log)
    # Only the second segment (still there, unchanged, now the last sealed one or active)
    # may have been compacted: its newest records per key remain.
    assert {k for _, k, _ in after} == {k for _, k, _ in expected}
    assert log.log_end_offset == expected[-1][0] + 1
    reopened_end = log.log_end_offset
    log.close()
    log = PartitionLog.open(tmp_path / "t-0", COMPACT, now_ms=0, recover=True)
    assert log.log_end_offset == reopened_end


def test_an_aborted_plan_leaves_no_cleaned_files(tmp_path: Path) -> None:
    log = _keyed_log(tmp_path)
    plan = plan_compaction(log, now_ms=0)
    assert plan is not None
    plan.run()
    assert list(tmp_path.glob("t-0/*.cleaned"))
    plan.abort()
    assert not list(tmp_path.glob("t-0/*.cleaned"))
    assert len(all_records(log)) == 60


def test_a_plan_takes_only_segments_below_the_given_recovery_point(tmp_path: Path) -> None:
    log = _keyed_log(tmp_path)
    first, second = log.segments[0], log.segments[1]
    plan = plan_compaction(log, now_ms=0, up_to_offset=second.next_offset - 1)
    assert plan is not None
    plan.run()
    assert [segment for segment, *_ in plan.cleaned] == [first]
    finish_compaction(log, plan)
    assert log.segments[1] is second


def test_kept_empty_batches_leave_no_offset_gap(tmp_path: Path) -> None:
    # A replicated log's batches are its Raft entries: with keep_empty_batches a batch whose
    # records all went stays as a header with its offset span, so the offsets stay contiguous
    # batch by batch and the kept records are those plain compaction keeps.
    plain = _keyed_log(tmp_path / "plain")
    kept_log = _keyed_log(tmp_path / "kept")
    headers_before = [h for _, h in _headers(kept_log)]
    for log, keep in ((plain, False), (kept_log, True)):
        log.flush_rolled_segments()
        log.checkpoint()
        plan = plan_compaction(log, now_ms=0, keep_empty_batches=keep)
        assert plan is not None
        plan.run()
        finish_compaction(log, plan)
    assert all_records(kept_log) == all_records(plain)
    headers_after = [h for _, h in _headers(kept_log)]
    assert [(h.base_offset, h.last_offset_delta) for h in headers_after] == [
        (h.base_offset, h.last_offset_delta) for h in headers_before
    ]
    emptied = [h for h in headers_after if h.records_count == 0]
    assert len(emptied) > 40  # 60 batches of 5 keys: all but each key's newest (and the active)
    before_by_offset = {h.base_offset: h for h in headers_before}
    for header in emptied:
        old = before_by_offset[header.base_offset]
        assert (header.max_timestamp, header.partition_leader_epoch) == (
            old.max_timestamp,
            old.partition_leader_epoch,
        )
    # Plain compaction left gaps instead.
    plain_bases = [h.base_offset for _, h in _headers(plain)]
    assert len(plain_bases) < len(headers_before)
    # The cleaned log reopens after a crash with the same batches.
    crash(kept_log)
    reopened = PartitionLog.open(tmp_path / "kept" / "t-0", COMPACT, now_ms=0, recover=True)
    assert [h for _, h in _headers(reopened)] == headers_after


def _headers(log: PartitionLog) -> list[tuple[int, BatchHeader]]:
    out = []
    offset = log.log_start_offset
    while offset < log.log_end_offset:
        result = log.read(offset, 1 << 20)
        if not result.records:
            break
        for position, header in iter_headers(result.records, check=True):
            out.append((position, header))
            offset = header.next_offset
    return out
