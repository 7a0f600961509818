"""close(0) with a retry waiting out a long backoff returns at once and fails the record:
the sender's sleep must not swallow the cancel that stop() sends right after waking it."""

from __future__ import annotations

import time

import pytest

from rilke.client.producer import Producer
from rilke.errors import NotLeaderError, ProducerClosedError


def test_close_0_with_a_long_retry_backoff_pending_fails_the_record(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(lambda m, r: NotLeaderError.code if m == "Produce" else 0)
    p = Producer(fake.address, linger_ms=0, retry_backoff_ms=60_000, retry_backoff_max_ms=60_000)
    try:
        f = p.send("t", b"x")
        # Wait (with a deadline) until the first attempt failed and its retry is scheduled.
        deadline = time.monotonic() + 10
        while p.metrics()["record_retry_total"] < 1:
            assert time.monotonic() < deadline, "the first attempt was never retried"
            time.sleep(0.01)
    finally:
        p.close(0)  # raised KafkaTimeoutError after 10 s on the old sender
    with pytest.raises(ProducerClosedError):
        f.get(1)
