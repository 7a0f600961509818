"""A batch that failed on a node that is not the leader goes out again at once when the
metadata names another leader (a failover), not after its retry backoff."""

from __future__ import annotations

from typing import Any

import pytest

from rilke.client.producer import Producer
from rilke.errors import NotLeaderError

BACKOFF_MS = 60_000  # far beyond the test's wait: only the new-leader rule can send in time


@pytest.mark.timeout(60)
def test_retry_goes_to_the_new_leader_without_waiting_out_the_backoff(fake):
    fake.broker.create("t", 1)
    failed: list[int] = []

    def not_leader_once(method: str, request: Any) -> int:
        if method != "Produce" or failed:
            return 0
        failed.append(fake.broker.node_id)
        fake.broker.node_id = 2  # the metadata names a new leader from now on
        return NotLeaderError.code

    fake.broker.faults.append(not_leader_once)
    with Producer(
        fake.address,
        linger_ms=0,
        retry_backoff_ms=BACKOFF_MS,
        retry_backoff_max_ms=BACKOFF_MS,
        delivery_timeout_ms=2 * BACKOFF_MS + 60_000,
    ) as p:
        assert p.send("t", b"x").get(10).offset == 0
    assert failed == [1]
    assert fake.broker.calls.count("Produce") == 2
