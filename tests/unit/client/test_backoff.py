"""Backoff bounds and the circuit breaker, on a hand-driven clock."""

from __future__ import annotations

import random

import pytest

from rilke.client.backoff import CircuitBreaker, backoff_s
from rilke.errors import BrokerNotAvailableError


def test_backoff_grows_exponentially_within_jitter_and_cap():
    rng = random.Random(7)
    for attempt in range(1, 12):
        nominal = min(1000.0, 100.0 * 2 ** (attempt - 1))
        for _ in range(50):
            d = backoff_s(attempt, 100, 1000, rng) * 1000
            assert nominal * 0.8 - 1e-9 <= d <= min(1000.0, nominal * 1.2) + 1e-9


def test_backoff_is_jittered():
    rng = random.Random(3)
    assert len({backoff_s(1, 100, 1000, rng) for _ in range(20)}) > 1
    with pytest.raises(ValueError):
        backoff_s(0, 100, 1000)


def test_breaker_opens_after_threshold_and_half_opens():
    b = CircuitBreaker("h:1", failure_threshold=2, cooldown_s=1.0, max_cooldown_s=3.0)
    b.check(0.0)
    b.record_failure(0.0)
    b.check(0.1)  # one failure: still closed
    b.record_failure(0.1)
    with pytest.raises(BrokerNotAvailableError, match="h:1"):
        b.check(0.5)
    b.check(1.2)  # cool-down over: one trial goes through
    with pytest.raises(BrokerNotAvailableError):
        b.check(1.2)  # ... and only one
    b.record_failure(1.3)  # the trial failed: open twice as long
    with pytest.raises(BrokerNotAvailableError):
        b.check(2.5)
    b.check(3.4)
    b.record_success()
    b.check(3.5)
    assert not b.is_open


def test_breaker_cooldown_is_capped():
    b = CircuitBreaker("h:1", failure_threshold=1, cooldown_s=1.0, max_cooldown_s=2.0)
    now = 0.0
    for _ in range(5):
        b.record_failure(now)
        assert b.open_until - now <= 2.0
        now = b.open_until
        b.check(now)


def test_breaker_down_for_counts_from_the_first_failure_while_cooling_down():
    b = CircuitBreaker("h:1", failure_threshold=2, cooldown_s=1.0)
    assert b.down_for(0.0) is None
    b.record_failure(0.0, "refused")
    assert b.down_for(0.5) is None  # one failure: the circuit is still closed
    b.record_failure(0.5, "refused again")
    assert b.down_for(1.0) == 1.0 and b.last_failure == "refused again"
    assert b.down_for(1.5) is None  # cool-down over: a trial may go through
    b.check(1.5)
    assert b.down_for(1.6) is None  # the trial is out: not known to be down
    b.record_failure(1.7)
    assert b.down_for(2.0) == 2.0
    b.record_success()
    assert b.down_for(2.0) is None
