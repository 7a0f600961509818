"""A hypothesis state machine: random operations on a PartitionLog against an in-memory model."""

from __future__ import annotations

import itertools
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import hypothesis.strategies as st
from batches import make_batch
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from storage_crash import crash

from rilke.errors import CorruptBatchError, NonContiguousOffsetError
from rilke.records.header import iter_headers, read_header
from rilke.storage import LogConfig, PartitionLog

CONFIG = LogConfig(segment_bytes=700, index_interval_bytes=120, retention_ms=-1)


class Batch:
    def __init__(self, data: bytes) -> None:
        header = read_header(data)
        self.data = data
        self.base = header.base_offset
        self.last = header.last_offset
        self.max_ts = header.max_timestamp


class LogModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="rilke-model-"))
        self.path = self.tmp / "t-0"
        self.log = PartitionLog.open(self.path, CONFIG, now_ms=0, recover=False)
        self.batches: list[Batch] = []
        self.lso = 0
        self.leo = 0

    def teardown(self) -> None:
        if not self.log.closed:
            self.log.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- operations ---------------------------------------------------------------------------

    @rule(
        sizes=st.lists(st.integers(1, 4), min_size=1, max_size=3),
        ts=st.integers(0, 10_000),
        value_size=st.integers(0, 120),
        follower=st.booleans(),
    )
    def append(self, sizes: list[int], ts: int, value_size: int, follower: bool) -> None:
        parts = []
        base = self.leo
        for count in sizes:
            parts.append(
                make_batch(count, base_offset=base, timestamp_ms=ts, value_size=value_size)
            )
            base += count
        buf = bytearray(b"".join(parts))
        info = self.log.append(buf, assign_offsets=not follower, now_ms=1)
        assert info.first_offset == self.leo
        assert info.last_offset == base - 1
        for _, header in iter_headers(buf):
            self.batches.append(Batch(bytes(buf[_ : _ + header.size])))
        self.leo = base

    @rule(offset_shift=st.sampled_from([-1, 1, 5]))
    def append_misplaced(self, offset_shift: int) -> None:
        if self.leo + offset_shift < 0:
            return
        try:
            self.log.append(
                make_batch(1, base_offset=self.leo + offset_shift),
                assign_offsets=False,
                now_ms=1,
            )
        except NonContiguousOffsetError:
            assert self.leo + offset_shift != self.leo
        else:
            raise AssertionError("accepted a batch that does not continue the log")

    @rule(position=st.integers(0, 80))
    def append_corrupt(self, position: int) -> None:
        data = bytearray(make_batch(2))
        data[min(position + 16, len(data) - 1)] ^= 0x04
        try:
            self.log.append(data, now_ms=1)
        except CorruptBatchError:
            return
        raise AssertionError("accepted a corrupt batch")

    @rule(data=st.data(), max_bytes=st.integers(1, 1500), bounded=st.booleans())
    def read(self, data: st.DataObject, max_bytes: int, bounded: bool) -> None:
        offset = data.draw(st.integers(self.lso, self.leo))
        max_offset = data.draw(st.integers(self.lso, self.leo + 1)) if bounded else None
        result = self.log.read(offset, max_bytes, max_offset)
        assert (result.log_start_offset, result.log_end_offset) == (self.lso, self.leo)
        candidates = [b for b in self.batches if b.last >= offset]
        if max_offset is not None:
            candidates = [b for b in candidates if b.base < max_offset]
        if not candidates:
            assert result.records == b""
            return
        got = result.records
        assert got.startswith(candidates[0].data)
        total = 0
        returned = []
        for batch in candidates:
            if total == len(got):
                break
            assert got[total : total + len(batch.data)] == batch.data
            total += len(batch.data)
            returned.append(batch)
        assert total == len(got)
        assert total <= max(max_bytes, len(candidates[0].data))
        assert result.next_offset == returned[-1].last + 1 or (
            result.next_offset > returned[-1].last and result.next_offset <= self.leo
        )

    @rule(ts=st.integers(-1, 10_001))
    def offset_for_timestamp(self, ts: int) -> None:
        expected = next(
            ((max(b.base, self.lso), b.max_ts) for b in self.batches if b.max_ts >= ts), None
        )
        assert self.log.offset_for_timestamp(ts) == expected

    @rule(data=st.data())
    def truncate_to(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(0, self.leo + 2))
        first_base = self.log.segments[0].base_offset
        self.log.truncate_to(offset)
        if offset >= self.leo:
            return
        if offset <= first_base or offset < self.lso:
            self.batches, self.lso, self.leo = [], offset, offset
            return
        removed = [b for b in self.batches if b.last >= offset]
        if removed and removed[0].base < self.lso:
            self.batches, self.lso, self.leo = [], offset, offset
            return
        self.batches = [b for b in self.batches if b.last < offset]
        self.leo = min([offset] + [b.base for b in removed])

    @rule(offset=st.integers(0, 1000))
    def truncate_fully_and_start_at(self, offset: int) -> None:
        self.log.truncate_fully_and_start_at(offset)
        self.batches, self.lso, self.leo = [], offset, offset

    @rule()
    def roll(self) -> None:
        self.log.roll(now_ms=1)

    @rule(data=st.data())
    def delete_records_before(self, data: st.DataObject) -> None:
        offset = data.draw(st.integers(self.lso, self.leo))
        self.log.delete_records_before(offset)
        self._drop_below(offset)

    @rule(retention_bytes=st.integers(0, 3000))
    def retention_by_bytes(self, retention_bytes: int) -> None:
        before = self.log.size_bytes()
        self.log.update_config(replace(CONFIG, retention_bytes=retention_bytes))
        deleted = self.log.apply_retention(now_ms=0)
        self.log.update_config(CONFIG)
        if not deleted:
            assert self.log.size_bytes() == before
        self._drop_below(self.log.log_start_offset)

    def _drop_below(self, offset: int) -> None:
        assert offset >= self.lso
        self.lso = offset
        self.batches = [b for b in self.batches if b.last >= offset]

    @rule(up_to=st.integers(0, 2000))
    def flush(self, up_to: int) -> None:
        self.log.flush(up_to)
        assert self.log.flushed_offset >= min(up_to, self.leo)

    @rule(clean=st.booleans(), checkpoint=st.booleans())
    def reopen(self, clean: bool, checkpoint: bool) -> None:
        if clean:
            self.log.close()
        else:
            if checkpoint:
                self.log.checkpoint()
            crash(self.log)
        self.log = PartitionLog.open(self.path, CONFIG, now_ms=0, recover=not clean)

    @precondition(lambda self: self.log.flushed_offset < self.leo)
    @rule(fraction=st.floats(0, 1))
    def crash_with_torn_tail(self, fraction: float) -> None:
        """Crash, losing an arbitrary part of what was written after the last flush."""
        self.log.checkpoint()
        flushed = self.log.flushed_offset
        active = self.log.segments[-1]
        raw = active.log_path.read_bytes()[: active.size]
        positions = [(pos, h) for pos, h in iter_headers(raw, check=False)]
        durable = sum(h.size for _, h in positions if h.last_offset < flushed)
        cut = durable + int(fraction * (active.size - durable))
        crash(self.log)
        with open(active.log_path, "r+b") as f:
            f.truncate(cut)
        self.log = PartitionLog.open(self.path, CONFIG, now_ms=0, recover=True)
        kept = [h for pos, h in positions if pos + h.size <= cut]
        self.leo = kept[-1].next_offset if kept else active.base_offset
        self.batches = [b for b in self.batches if b.last < self.leo]
        self.lso = min(self.lso, self.leo)

    # --- invariants ---------------------------------------------------------------------------

    @invariant()
    def bounds_match(self) -> None:
        assert self.log.log_start_offset == self.lso
        assert self.log.log_end_offset == self.leo
        assert self.log.size_bytes() >= sum(len(b.data) for b in self.batches)
        segments = self.log.segments
        assert all(a.base_offset < b.base_offset for a, b in itertools.pairwise(segments))


LogModel.TestCase.settings = settings(
    settings.default, max_examples=100, stateful_step_count=40, deadline=None
)
TestLogModel = LogModel.TestCase
