"""The producer's own metrics (kafka-python's ``metrics()``): what was sent, failed, retried,
how big the batches were, how long requests took, how full the buffer is, and each broker's
circuit-breaker state.

:class:`ProducerMetrics` is updated by the sender once per batch or request, never per record,
so it costs the hot path nothing it can measure. Its fields are plain numbers written on the
client's event loop; :meth:`ProducerMetrics.snapshot` may be read from any thread (a reading
taken while a request completes may be one request behind).
"""

from __future__ import annotations

import collections
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rilke.client.accumulator import RecordAccumulator
    from rilke.client.backoff import CircuitBreaker
    from rilke.client.transport import Transport

LATENCY_WINDOW = 1024
"""How many recent request latencies the percentiles are taken over."""


def breaker_state(breaker: CircuitBreaker, now: float) -> str:
    """``"closed"`` (calls go through), ``"open"`` (calls fail at once until the cool-down
    ends) or ``"half-open"`` (the cool-down is over, or its one trial call is out)."""
    if not breaker.is_open:
        return "closed"
    if now < breaker.open_until and not breaker.trial_in_flight:
        return "open"
    return "half-open"


def breaker_states(transport: Transport | None, now: float | None = None) -> dict[str, str]:
    """The circuit-breaker state of every broker address the client has called."""
    if transport is None:
        return {}
    t = time.monotonic() if now is None else now
    return {a: breaker_state(b, t) for a, b in list(transport._breakers.items())}


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return sorted_values[index]


class ProducerMetrics:
    """Counters of one producer. Invariant: ``records_sent + records_failed`` counts each
    record whose future has completed exactly once."""

    def __init__(self) -> None:
        self.records_sent = 0
        self.records_failed = 0
        self.batches_sent = 0
        self.batch_bytes_total = 0
        self.batch_bytes_max = 0
        self.retries = 0
        self.requests = 0
        self.request_errors = 0
        self.request_latency_total_s = 0.0
        self.request_latency_max_s = 0.0
        self._latencies: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def on_batch_sent(self, record_count: int, size_bytes: int) -> None:
        """A batch was acknowledged (its records are delivered)."""
        self.records_sent += record_count
        self.batches_sent += 1
        self.batch_bytes_total += size_bytes
        self.batch_bytes_max = max(self.batch_bytes_max, size_bytes)

    def on_batch_failed(self, record_count: int) -> None:
        """A batch failed for good (its records' futures raise)."""
        self.records_failed += record_count

    def on_retry(self) -> None:
        self.retries += 1

    def on_request(self, latency_s: float, ok: bool) -> None:
        self.requests += 1
        if not ok:
            self.request_errors += 1
        self.request_latency_total_s += latency_s
        self.request_latency_max_s = max(self.request_latency_max_s, latency_s)
        self._latencies.append(latency_s)

    def snapshot(
        self, accumulator: RecordAccumulator | None = None, transport: Transport | None = None
    ) -> dict[str, Any]:
        """The metrics as a flat dict (names as kafka-python's where one exists; units last):

        ``record_send_total``, ``record_error_total``, ``record_retry_total``,
        ``batch_total``, ``batch_size_avg`` and ``batch_size_max`` (bytes),
        ``request_total``, ``request_error_total``, ``request_latency_avg_ms``,
        ``request_latency_max_ms``, ``request_latency_p50_ms``, ``request_latency_p99_ms``,
        ``buffer_total_bytes``, ``buffer_used_bytes``, ``buffer_available_bytes``,
        ``breaker_state`` (broker address -> "closed" | "open" | "half-open").
        """
        latencies = sorted(self._latencies)
        out: dict[str, Any] = {
            "record_send_total": self.records_sent,
            "record_error_total": self.records_failed,
            "record_retry_total": self.retries,
            "batch_total": self.batches_sent,
            "batch_size_avg": (
                self.batch_bytes_total / self.batches_sent if self.batches_sent else 0.0
            ),
            "batch_size_max": self.batch_bytes_max,
            "request_total": self.requests,
            "request_error_total": self.request_errors,
            "request_latency_avg_ms": (
                1000.0 * self.request_latency_total_s / self.requests if self.requests else 0.0
            ),
            "request_latency_max_ms": 1000.0 * self.request_latency_max_s,
            "request_latency_p50_ms": 1000.0 * _percentile(latencies, 0.50),
            "request_latency_p99_ms": 1000.0 * _percentile(latencies, 0.99),
        }
        if accumulator is not None:
            used = accumulator.buffered_bytes
            out["buffer_total_bytes"] = accumulator.buffer_memory
            out["buffer_used_bytes"] = used
            out["buffer_available_bytes"] = max(0, accumulator.buffer_memory - used)
        out["breaker_state"] = breaker_states(transport)
        return out
