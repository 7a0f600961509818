"""`rilke bench failover`'s analysis of acknowledgement times (synthetic timelines)."""

from __future__ import annotations

import pytest

from rilke.bench.cluster_failover import (
    duplicate_offsets,
    first_ack_after,
    full_rate_at,
    window_counts,
)


def _steady(start: float, end: float, rate: float) -> list[float]:
    n = round((end - start) * rate)
    return [start + i / rate for i in range(n)]


KILL = 10.0


def test_the_first_ack_after_the_outage_skips_the_dead_leaders_last_responses() -> None:
    acks = [*_steady(7.0, KILL, 1000), KILL + 0.001, KILL + 0.002, *_steady(11.2, 15.0, 1000)]
    first, stragglers = first_ack_after(acks, KILL, 0.1)
    assert first == pytest.approx(11.2)
    assert stragglers == 2


def test_without_a_gap_the_first_ack_after_the_kill_counts() -> None:
    acks = _steady(7.0, 15.0, 1000)
    first, stragglers = first_ack_after(acks, KILL, 0.1)
    assert KILL < first <= KILL + 0.001
    assert stragglers == 0


def test_a_gap_right_at_the_kill_counts_from_the_kill() -> None:
    acks = [*_steady(7.0, KILL, 1000), *_steady(11.5, 12.0, 1000)]
    assert first_ack_after(acks, KILL, 0.1) == (pytest.approx(11.5), 0)


def test_nothing_acknowledged_after_the_kill_is_an_error() -> None:
    with pytest.raises(ValueError, match="nothing acknowledged"):
        first_ack_after(_steady(7.0, KILL, 1000), KILL, 0.1)


def test_windows_count_acks_and_drop_the_partial_last_one() -> None:
    acks = [0.01, 0.02, 0.15, 0.31, 0.35]
    assert window_counts(acks, 0.0, 0.35, 0.1) == [2, 1, 0]


def test_full_rate_needs_the_sustained_windows() -> None:
    # Recovers at 11.2 at 40% of the rate for 0.5 s, then full from 11.7.
    acks = [*_steady(11.2, 11.7, 400), *_steady(11.7, 14.0, 1000)]
    at = full_rate_at(acks, 11.2, 14.0, 1000, 0.1, 0.9, 3)
    assert at == pytest.approx(11.7)
    # One full window among slow ones is not full rate.
    blip = [*_steady(11.2, 11.3, 400), *_steady(11.3, 11.4, 1000), *_steady(11.4, 12.0, 400)]
    assert full_rate_at(blip, 11.2, 12.0, 1000, 0.1, 0.9, 3) is None


def test_the_backlog_burst_counts_as_full_rate() -> None:
    acks = [11.2] * 1200 + _steady(11.2, 13.0, 1000)
    assert full_rate_at(sorted(acks), 11.2, 13.0, 1000, 0.1, 0.9, 3) == pytest.approx(11.2)


def test_offsets_given_twice_are_counted() -> None:
    assert duplicate_offsets([0, 1, 2, 3]) == 0
    assert duplicate_offsets([0, 1, 1, 2, 2, 2]) == 3
