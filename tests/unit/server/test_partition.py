import asyncio
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_storage import FakeLog
from produce_batches import batch_values, make_batch

from rilke.errors import (
    CorruptRecordError,
    InvalidRecordError,
    InvalidRequestError,
    OffsetOutOfRangeError,
    OutOfOrderSequenceError,
    RecordTooLargeError,
)
from rilke.records import BatchBuilder
from rilke.records.header import compute_crc, read_header
from rilke.server.partition import FlushSlots, LocalPartition
from rilke.storage.cleaner import CompactionPlan
from rilke.storage.config import LogConfig
from rilke.storage.log import FlushJob, PartitionLog


def make_partition(
    tmp_path: Path, config: LogConfig | None = None
) -> tuple[LocalPartition, FakeLog]:
    config = config or LogConfig()
    log = FakeLog(tmp_path / "t-0", config)
    return LocalPartition("t", 0, log, config, state_dir=tmp_path / "state"), log


def test_append_assigns_offsets_and_reads_back(tmp_path: Path) -> None:
    async def main() -> None:
        part, _ = make_partition(tmp_path)
        first = await part.append(make_batch([b"a", b"b"]), 1)
        second = await part.append(make_batch([b"c"]), 1)
        assert (first.base_offset, first.last_offset) == (0, 1)
        assert second.base_offset == 2
        data = part.read(0, 1 << 20)
        assert data.high_watermark == 3
        assert batch_values(data.records) == [(0, b"a"), (1, b"b"), (2, b"c")]
        assert part.read(3, 100).records == b""
        assert part.offsets().log_end_offset == 3

    asyncio.run(main())


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        part, log = make_partition(tmp_path, LogConfig(max_message_bytes=200))
        good = make_batch([b"x"])
        corrupt = bytearray(good)
        corrupt[-1] ^= 0xFF
        with pytest.raises(CorruptRecordError):
            part.append(good + bytes(corrupt), 1)
        wrong_magic = bytearray(good)
        wrong_magic[16] = 1
        with pytest.raises(CorruptRecordError, match="magic"):
            part.append(bytes(wrong_magic), 1)
        with pytest.raises(CorruptRecordError):
            part.append(good[:-3], 1)
        with pytest.raises(RecordTooLargeError):
            part.append(make_batch([b"y" * 300]), 1)
        with pytest.raises(InvalidRequestError):
            part.append(b"", 1)
        with pytest.raises(InvalidRequestError):
            part.append(good, 2)
        assert log.log_end_offset == 0
        with pytest.raises(OffsetOutOfRangeError):
            part.read(-1, 100)
        with pytest.raises(OffsetOutOfRangeError):
            part.read(5, 100)

    asyncio.run(main())


def test_flush_per_append_is_a_group_commit(tmp_path: Path) -> None:
    async def main() -> None:
        part, log = make_partition(tmp_path, LogConfig(flush_messages=1))
        futures = [part.append(make_batch([b"v"]), -1) for _ in range(10)]
        assert not any(f.done() for f in futures)
        results = await asyncio.gather(*futures)
        assert [r.base_offset for r in results] == list(range(10))
        # The first append of the idle partition started an fsync at once; the nine that
        # arrived while it was in flight shared the next one.
        assert log.flush_count == 2
        assert log.flushed_offset == 10
        # acks=0 does not wait for the flush
        assert part.append(make_batch([b"w"]), 0).done()

    asyncio.run(main())


def test_a_lone_append_on_an_idle_partition_starts_its_fsync_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated = _GatedRuns(monkeypatch)

    async def main() -> None:
        part, plog = _real_partition(tmp_path, LogConfig(flush_messages=1))
        future = part.append(make_batch([b"a"]), -1)
        # Started by the append itself, before the loop turned: no window to wait out.
        assert part._flusher.job_in_flight
        await _until(gated.started.is_set)
        assert not future.done()
        gated.gate.set()
        assert (await future).base_offset == 0
        assert (plog.flushed_offset, gated.runs) == (1, 1)
        # Idle again: the next lone append starts the next fsync at once as well.
        second = part.append(make_batch([b"b"]), -1)
        assert part._flusher.job_in_flight
        assert (await second).base_offset == 1
        assert (plog.flushed_offset, gated.runs) == (2, 2)
        part.close()
        plog.close()

    asyncio.run(main())


def test_without_flush_policy_acks_all_is_acknowledged_when_written(tmp_path: Path) -> None:
    async def main() -> None:
        part, log = make_partition(tmp_path)
        assert part.append(make_batch([b"v"]), -1).done()
        assert log.flush_count == 0

    asyncio.run(main())


def test_subscribers_hear_appends(tmp_path: Path) -> None:
    async def main() -> None:
        part, _ = make_partition(tmp_path)
        calls: list[int] = []
        unsubscribe = part.subscribe(lambda: calls.append(1))
        await part.append(make_batch([b"v"]), 1)
        unsubscribe()
        await part.append(make_batch([b"v"]), 1)
        assert calls == [1]

    asyncio.run(main())


def test_idempotent_retry_gets_its_original_offset(tmp_path: Path) -> None:
    async def main() -> None:
        part, log = make_partition(tmp_path)
        await part.append(make_batch([b"other"]), 1)
        batch = make_batch([b"a", b"b"], producer_id=5, producer_epoch=0, base_sequence=0)
        first = await part.append(batch, 1)
        retry = await part.append(batch, 1)
        assert retry.base_offset == first.base_offset == 1
        assert retry.duplicate
        assert log.log_end_offset == 3
        with pytest.raises(OutOfOrderSequenceError):
            part.append(make_batch([b"c"], producer_id=5, producer_epoch=0, base_sequence=7), 1)
        assert log.log_end_offset == 3

    asyncio.run(main())


def test_producer_state_survives_reopen_from_log_tail_and_snapshot(tmp_path: Path) -> None:
    async def main() -> None:
        part, log = make_partition(tmp_path)
        batch = make_batch([b"a"], producer_id=5, producer_epoch=0, base_sequence=0)
        await part.append(batch, 1)
        # no snapshot: rebuilt from the log's batch headers
        reopened = LocalPartition("t", 0, log, log.config, state_dir=None)
        assert (await reopened.append(batch, 1)).base_offset == 0
        # with a snapshot written at close
        part.close()
        log.closed = False
        snap = LocalPartition("t", 0, log, log.config, state_dir=tmp_path / "state")
        assert (await snap.append(batch, 1)).duplicate
        nxt = make_batch([b"b"], producer_id=5, producer_epoch=0, base_sequence=1)
        assert (await snap.append(nxt, 1)).base_offset == 1

    asyncio.run(main())


def test_snapshot_ahead_of_the_log_is_ignored(tmp_path: Path) -> None:
    async def main() -> None:
        part, _ = make_partition(tmp_path)
        batch = make_batch([b"a"], producer_id=5, producer_epoch=0, base_sequence=0)
        await part.append(batch, 1)
        part.close()
        empty = FakeLog(tmp_path / "t-0", LogConfig())
        fresh = LocalPartition("t", 0, empty, empty.config, state_dir=tmp_path / "state")
        result = await fresh.append(batch, 1)
        assert not result.duplicate

    asyncio.run(main())


def test_config_update_keeps_flush_messages_out_of_storage(tmp_path: Path) -> None:
    part, log = make_partition(tmp_path)
    part.update_config(dataclasses.replace(LogConfig(), flush_messages=1, retention_ms=5))
    assert log.config.flush_messages is None
    assert log.config.retention_ms == 5


def test_a_retry_of_an_unflushed_batch_waits_for_the_flush(tmp_path: Path) -> None:
    async def main() -> None:
        part, log = make_partition(tmp_path, LogConfig(flush_messages=1))
        batch = make_batch([b"a"], producer_id=5, producer_epoch=0, base_sequence=0)
        first = part.append(batch, -1)
        retry = part.append(batch, -1)
        assert not retry.done()
        assert (await retry).base_offset == (await first).base_offset == 0
        assert log.flushed_offset == 1

    asyncio.run(main())


def _real_partition(tmp_path: Path, config: LogConfig) -> tuple[LocalPartition, PartitionLog]:
    plog = PartitionLog.open(tmp_path / "t-0", config, now_ms=0, recover=False)
    return LocalPartition("t", 0, plog, config, state_dir=tmp_path / "state"), plog


def test_every_crc_is_computed_once_on_the_produce_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The partition checks header and CRC (for its records errors); the log then skips the CRC.
    import rilke.records.header as header_module
    import rilke.storage.log as log_module

    calls = {"records": 0, "storage": 0}

    def counting(name: str, real: Any) -> Any:
        def crc(data: Any, value: int = 0) -> int:
            calls[name] += 1
            return int(real(data, value))

        return crc

    monkeypatch.setattr(header_module, "crc32c", counting("records", header_module.crc32c))
    monkeypatch.setattr(log_module, "crc32c", counting("storage", log_module.crc32c))

    async def main() -> None:
        part, plog = _real_partition(tmp_path, LogConfig())
        await part.append(make_batch([b"a", b"b"]), 1)
        await part.append(make_batch([b"c"]) + make_batch([b"d"]), 1)
        assert calls == {"records": 3, "storage": 0}
        assert batch_values(part.read(0, 1 << 20).records) == [
            (0, b"a"),
            (1, b"b"),
            (2, b"c"),
            (3, b"d"),
        ]
        plog.close()

    asyncio.run(main())


def test_bad_input_is_refused_with_its_error_by_a_real_log(tmp_path: Path) -> None:
    async def main() -> None:
        part, plog = _real_partition(tmp_path, LogConfig(max_message_bytes=200))
        good = make_batch([b"x"])
        corrupt = bytearray(good)
        corrupt[-1] ^= 0xFF
        wrong_magic = bytearray(good)
        wrong_magic[16] = 1
        too_many = bytearray(good)
        too_many[57:61] = (3).to_bytes(4, "big")  # 3 records in 1 offset, CRC made to hold
        too_many[17:21] = compute_crc(too_many, 0, len(too_many)).to_bytes(4, "big")
        two = bytearray(make_batch([b"a", b"b"]))
        two[57:61] = (1).to_bytes(4, "big")  # 1 record in 2 offsets, CRC made to hold
        two[17:21] = compute_crc(two, 0, len(two)).to_bytes(4, "big")
        cases: list[tuple[bytes, type[Exception], str]] = [
            (bytes(two), InvalidRecordError, "1 records in 2 offsets"),
            (good + bytes(corrupt), CorruptRecordError, "CRC"),
            (bytes(wrong_magic), CorruptRecordError, "magic"),
            (good[:-3], CorruptRecordError, "truncated"),
            (make_batch([b"y" * 300]), RecordTooLargeError, "exceeds"),
            (bytes(too_many), InvalidRecordError, "claims 3 records"),
        ]
        for data, error, match in cases:
            with pytest.raises(error, match=match):
                part.append(data, 1)
        assert (plog.log_end_offset, plog.size_bytes()) == (0, 0)
        await part.append(good, 1)
        assert plog.log_end_offset == 1
        plog.close()

    asyncio.run(main())


class _GatedRuns:
    """Makes FlushJob.run wait for a gate (on its worker thread); counts the runs."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.runs = 0
        real_run = FlushJob.run

        def gated_run(job: FlushJob) -> None:
            self.runs += 1
            self.started.set()
            assert self.gate.wait(10), "the test never opened the gate"
            real_run(job)

        monkeypatch.setattr(FlushJob, "run", gated_run)


async def _until(condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + 10
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def test_an_fsync_in_flight_does_not_block_fetch_or_produce(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated = _GatedRuns(monkeypatch)

    async def main() -> None:
        part, plog = _real_partition(tmp_path, LogConfig(flush_messages=1))
        first = [part.append(make_batch([b"a%d" % i]), -1) for i in range(3)]
        await _until(gated.started.is_set)  # the fsync runs, blocked, on a worker thread
        # Meanwhile the loop serves fetches and takes more appends.
        assert batch_values(part.read(0, 1 << 20).records)[:1] == [(0, b"a0")]
        second = [part.append(make_batch([b"b%d" % i]), -1) for i in range(4)]
        assert plog.log_end_offset == 7
        await asyncio.sleep(0.01)  # (the loop turns meanwhile; the fsync is still blocked)
        assert not any(f.done() for f in first + second)
        assert plog.flushed_offset == 0
        assert gated.runs == 1  # nothing starts a second fsync while one is in flight
        gated.gate.set()
        results = await asyncio.gather(*first, *second)
        assert [r.base_offset for r in results] == list(range(7))
        assert plog.flushed_offset == 7
        # Group commit: the first append started an fsync at once, the six that arrived
        # while it ran shared the next.
        assert gated.runs == 2
        part.close()
        plog.close()

    asyncio.run(main())


def test_maintenance_flush_waits_for_the_one_in_flight(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gated = _GatedRuns(monkeypatch)

    async def main() -> None:
        part, plog = _real_partition(tmp_path, LogConfig(flush_messages=1))
        acked = part.append(make_batch([b"a"]), -1)
        await _until(gated.started.is_set)
        part.append(make_batch([b"b"]), 0)
        maintenance = asyncio.ensure_future(part.flush_async())
        await asyncio.sleep(0.01)
        assert not maintenance.done() and not acked.done()
        gated.gate.set()
        await maintenance
        assert (await acked).base_offset == 0
        assert plog.flushed_offset == 2
        part.close()
        plog.close()

    asyncio.run(main())


def _read_all(part: LocalPartition, plog: PartitionLog) -> bytes:
    out = b""
    offset = plog.log_start_offset
    while offset < plog.log_end_offset:
        data = part.read(offset, 1 << 20).records
        out += data
        last = read_header(data, 0)
        pos = 0
        while pos < len(data):
            last = read_header(data, pos)
            pos += last.size
        offset = last.next_offset
    return out


def _keyed(key: bytes, value: bytes) -> bytes:
    builder = BatchBuilder()
    builder.append(key, value, None, 1_000)
    return builder.build()


def test_compaction_in_maintenance_does_not_block_produce_or_fetch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    started = threading.Event()
    real_run = CompactionPlan.run

    def gated_run(plan: CompactionPlan) -> None:
        started.set()
        assert gate.wait(10), "the test never opened the gate"
        real_run(plan)

    monkeypatch.setattr(CompactionPlan, "run", gated_run)
    config = LogConfig(segment_bytes=600, cleanup_policy="compact", retention_ms=-1)

    async def main() -> None:
        part, plog = _real_partition(tmp_path, config)
        for i in range(40):
            await part.append(_keyed(b"k%d" % (i % 4), b"v%d" % i), 1)
        size_before = plog.size_bytes()
        maintenance = asyncio.ensure_future(part.maintain(now_ms=10**6))
        await _until(started.is_set)  # the compaction reads and rewrites on a worker thread
        # Meanwhile produce and fetch are served.
        result = await part.append(_keyed(b"other", b"during"), 1)
        assert result.base_offset == 40
        assert batch_values(part.read(0, 1 << 20).records)[0] == (0, b"v0")
        assert not maintenance.done()
        gate.set()
        await maintenance
        assert plog.size_bytes() < size_before
        values = dict(batch_values(_read_all(part, plog)))
        assert values[40] == b"during"
        assert len(values) < 41  # older values of the 4 keys were compacted away
        assert not list((tmp_path / "t-0").glob("*.cleaned"))
        part.close()
        plog.close()

    asyncio.run(main())


def test_maintenance_retention_unlinks_off_the_loop_and_leaves_nothing(tmp_path: Path) -> None:
    config = LogConfig(segment_bytes=600, retention_bytes=1)

    async def main() -> None:
        part, plog = _real_partition(tmp_path, config)
        for i in range(30):
            await part.append(make_batch([b"v%d" % i]), 1)
        assert len(plog.segments) > 3
        await part.maintain(now_ms=10**6)
        assert len(plog.segments) == 1
        directory = tmp_path / "t-0"
        assert not list(directory.glob("*.deleted"))
        assert len(list(directory.glob("*.log"))) == 1
        values = batch_values(part.read(plog.log_start_offset, 1 << 20).records)
        assert values[-1] == (29, b"v29")
        part.close()
        plog.close()

    asyncio.run(main())


def test_flush_async_yields_while_a_finished_job_waits_to_be_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker thread is done but the loop has not yet run the job's completion: a flush
    # waiting for it must yield to the loop (a regression spun here forever).
    ran = threading.Event()
    real_run = FlushJob.run

    def run_and_tell(job: FlushJob) -> None:
        real_run(job)
        ran.set()

    monkeypatch.setattr(FlushJob, "run", run_and_tell)

    async def main() -> None:
        part, plog = _real_partition(tmp_path, LogConfig(flush_messages=1))
        acked = part.append(make_batch([b"a"]), -1)
        await _until(lambda: part._flusher.job_in_flight)
        assert ran.wait(10)  # (blocking the loop on purpose: its completion is now queued)
        part.append(make_batch([b"b"]), 0)
        await asyncio.wait_for(part.flush_async(), 10)
        assert (await acked).base_offset == 0
        assert plog.flushed_offset == 2
        part.close()
        plog.close()

    asyncio.run(main())


def test_a_corrupt_range_in_the_tail_does_not_stop_the_partition_opening(tmp_path: Path) -> None:
    """Producer state is rebuilt from the log's tail; a range there is skipped, not fatal."""
    import struct

    config = LogConfig.from_topic_configs({"segment.bytes": "4096"})
    plog = PartitionLog.open(tmp_path / "t-0", config, now_ms=0, recover=False)
    batches = [
        make_batch([b"x" * 300], producer_id=5, producer_epoch=0, base_sequence=i)
        for i in range(30)
    ]
    for batch in batches:
        plog.append(batch, now_ms=0)
    middle = plog.segments[len(plog.segments) // 2]
    path = middle.log_path
    plog.close()
    with open(path, "r+b") as f:
        f.seek(8)
        f.write(struct.pack(">i", 0x7FFFFF00))  # the segment's first batch
    path.with_suffix(".index").unlink()  # so that opening checks the segment
    plog = PartitionLog.open(tmp_path / "t-0", config, now_ms=0, recover=False)
    assert len(plog.corrupt_ranges()) == 1

    async def main() -> None:
        part = LocalPartition("t", 0, plog, config, state_dir=None)
        retried = await part.append(batches[-1], 1)
        assert retried.duplicate and retried.base_offset == 29

    asyncio.run(main())
    plog.close()


def test_flushes_beyond_the_node_bound_wait_their_turn_and_all_are_acknowledged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With FlushSlots(2), five partitions flushing at once have two jobs (and their
    duplicated descriptors) in flight at most; the others wait, and every append is
    acknowledged once durable."""
    gated = _GatedRuns(monkeypatch)
    slots = FlushSlots(2)
    config = LogConfig(flush_messages=1)

    async def main() -> None:
        parts = []
        for p in range(5):
            plog = PartitionLog.open(tmp_path / f"t-{p}", config, now_ms=0, recover=False)
            parts.append((LocalPartition("t", p, plog, config, flush_slots=slots), plog))
        acked = [part.append(make_batch([b"v%d" % p]), -1) for p, (part, _) in enumerate(parts)]
        await _until(lambda: slots.in_flight == 2 and gated.runs == 2)
        assert len(slots._waiting) == 3
        maintenance = asyncio.ensure_future(parts[4][0].flush_async())  # waits its turn too
        more = parts[4][0].append(make_batch([b"w"]), -1)
        await asyncio.sleep(0.01)
        assert gated.runs == 2 and not any(f.done() for f in acked)
        gated.gate.set()
        await asyncio.gather(*acked, more, maintenance)
        assert slots.in_flight == 0 and not slots._waiting
        assert [plog.flushed_offset for _, plog in parts] == [1, 1, 1, 1, 2]
        # Closing a partition that waits for a slot resolves its flush (close flushes).
        gated.gate.clear()
        blocked = [part.append(make_batch([b"x"]), -1) for part, _ in parts[:3]]
        await _until(lambda: len(slots._waiting) == 1)
        waiting_part, waiting_log = parts[2]
        waiting_part.close()
        assert waiting_log.flushed_offset == 2
        gated.gate.set()
        await asyncio.gather(*blocked[:2])
        assert blocked[2].done()
        await _until(lambda: slots.in_flight == 0)
        for part, plog in parts:
            part.close()
            plog.close()

    asyncio.run(main())
