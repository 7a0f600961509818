"""Retry backoff with jitter, and the per-broker circuit breaker.

Both are pure: they take the current time (seconds, a monotonic clock) and a random source as
arguments and read no clock themselves, so tests drive them deterministically.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rilke.errors import BrokerNotAvailableError

JITTER = 0.2
"""Each backoff is spread uniformly over +-20% of its nominal value (as Kafka does)."""


def backoff_s(
    attempt: int, base_ms: float, max_ms: float, rng: random.Random | None = None
) -> float:
    """The delay before retry number ``attempt`` (1 for the first retry), in seconds.

    Exponential: ``base_ms * 2**(attempt-1)``, capped at ``max_ms``, then jittered by +-20%,
    and never above ``max_ms``. Spreading retries keeps many clients from retrying in step.
    """
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, not {attempt}")
    nominal = min(float(max_ms), float(base_ms) * (2.0 ** min(attempt - 1, 62)))
    r = (rng or random).uniform(1.0 - JITTER, 1.0 + JITTER)
    return min(float(max_ms), nominal * r) / 1000.0


@dataclass
class CircuitBreaker:
    """Fails calls to one broker fast after it failed ``failure_threshold`` times in a row.

    States: closed (calls go through), open (calls fail at once with
    :class:`BrokerNotAvailableError` until ``open_until``), half-open (after the cool-down one
    trial call goes through; its success closes the breaker, its failure opens it again for
    twice as long, up to ``max_cooldown_s``). A dead broker then costs one failed call per
    cool-down instead of a full deadline per request.

    Not thread-safe: used from the client's event loop only.
    """

    address: str
    failure_threshold: int = 3
    cooldown_s: float = 0.5
    max_cooldown_s: float = 2.0
    failures: int = 0
    open_until: float = 0.0
    trial_in_flight: bool = False
    failing_since: float = 0.0
    """When the current run of failures began (meaningful while ``failures > 0``)."""
    last_failure: str = ""
    """What the last failed call said (for error messages)."""
    _current_cooldown_s: float = field(default=0.0, repr=False)

    @property
    def is_open(self) -> bool:
        return self.failures >= self.failure_threshold

    def check(self, now: float) -> None:
        """Raise :class:`BrokerNotAvailableError` if a call must not go through now."""
        if not self.is_open:
            return
        if now < self.open_until or self.trial_in_flight:
            wait_s = max(0.0, self.open_until - now)
            raise BrokerNotAvailableError(
                f"broker {self.address} is unreachable ({self.failures} failures in a row); "
                f"not trying again for {wait_s:.1f}s: check that it is running and that "
                f"bootstrap_servers names it"
            )
        self.trial_in_flight = True  # half-open: let exactly one call through

    def down_for(self, now: float) -> float | None:
        """How long the broker has failed every call, while the circuit refuses calls (open
        and cooling down); None when a call may go through now (closed, or half-open with
        no trial in flight) or a trial is out (its answer is not known yet)."""
        if not self.is_open or now >= self.open_until or self.trial_in_flight:
            return None
        return now - self.failing_since

    def record_success(self) -> None:
        self.failures = 0
        self.trial_in_flight = False
        self._current_cooldown_s = 0.0

    def record_failure(self, now: float, reason: str = "") -> None:
        if self.failures == 0:
            self.failing_since = now
        if reason:
            self.last_failure = reason
        self.failures += 1
        self.trial_in_flight = False
        if self.failures >= self.failure_threshold:
            if self._current_cooldown_s <= 0.0:
                self._current_cooldown_s = self.cooldown_s
            else:
                self._current_cooldown_s = min(self.max_cooldown_s, self._current_cooldown_s * 2)
            self.open_until = now + self._current_cooldown_s
