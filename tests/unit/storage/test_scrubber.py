"""The scrubber finds what went bad in sealed segments, a bounded step at a time."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from batches import make_batch
from test_corruption import CONFIG, RECORDS, damage, filled_log, middle_segment, read_everything

from rilke.errors import CorruptLogDataError
from rilke.records.header import check_batch
from rilke.storage import PartitionLog
from rilke.storage.scrubber import Scrubber

STEP_BYTES = 16 << 10


def scrub_pass(scrubber: Scrubber, max_bytes: int = STEP_BYTES) -> int:
    """Run steps (plan, run, finish) until the pass ends; the number of steps."""
    steps = 0
    while (job := scrubber.plan(max_bytes)) is not None:
        try:
            job.run()
        finally:
            scrubber.finish(job)
        steps += 1
        assert steps < 10_000
    return steps


def test_a_flipped_payload_byte_is_found_and_then_refused_not_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    path = middle_segment(directory)
    bad_offset = damage(path, 5, payload=True)
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    # Before the scrub, the damaged batch is served as it is (no CRC on the read path).
    served = plog.read(bad_offset, 100).records
    with pytest.raises(Exception, match="CRC"):
        check_batch(served)

    scrubber = Scrubber(lambda: {("t", 0): plog})
    with caplog.at_level(logging.ERROR):
        steps = scrub_pass(scrubber)
    sealed = plog.segments[:-1]
    stats = scrubber.stats
    assert stats.corrupt_batches_found == 1
    assert stats.segments_scrubbed == len(sealed)
    assert stats.bytes_scrubbed == sum(s.size for s in sealed) - 452  # all but the bad batch
    assert stats.batches_scrubbed == sealed[-1].next_offset - 1
    assert steps > stats.bytes_scrubbed // (STEP_BYTES + 1000)  # each step is bounded
    assert scrubber.plan(STEP_BYTES) is not None  # the next pass starts over
    assert stats.passes_completed == 1
    assert any(
        path.name in r.getMessage() and f"offsets {bad_offset}-{bad_offset}" in r.getMessage()
        for r in caplog.records
        if r.levelno == logging.ERROR
    )

    with pytest.raises(CorruptLogDataError, match=f"seek\\(\\) to offset {bad_offset + 1}"):
        plog.read(bad_offset, 100)
    offsets, errors = read_everything(plog)
    assert len(errors) == 1 and offsets == [o for o in range(RECORDS) if o != bad_offset]
    plog.close()
    # Kept across a restart: refused again, without another scrub.
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    with pytest.raises(CorruptLogDataError):
        plog.read(bad_offset, 100)
    plog.close()


def test_the_active_segment_and_known_ranges_are_skipped(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    for _ in range(20):
        plog.append(make_batch(1, value_size=380), now_ms=0)
    scrubber = Scrubber(lambda: {("t", 0): plog})
    assert scrubber.plan(STEP_BYTES) is None  # only an active segment: nothing to check
    plog.roll(now_ms=0)
    plog.append(make_batch(1), now_ms=0)
    scrub_pass(scrubber)
    assert scrubber.stats.batches_scrubbed == 20
    assert scrubber.stats.corrupt_batches_found == 0
    plog.close()


def test_a_second_pass_does_not_count_a_known_range_again(tmp_path: Path) -> None:
    directory = tmp_path / "t-0"
    filled_log(directory)
    damage(middle_segment(directory), 2, payload=True)
    plog = PartitionLog.open(directory, CONFIG, now_ms=0, recover=False)
    scrubber = Scrubber(lambda: {("t", 0): plog})
    scrub_pass(scrubber)
    scrub_pass(scrubber)
    assert scrubber.stats.corrupt_batches_found == 1
    assert scrubber.stats.passes_completed == 2
    assert len(plog.corrupt_ranges()) == 1
    plog.close()
