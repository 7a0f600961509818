"""Rilke's errors as Kafka codes: the replication refusals a partition of a cluster raises
are retriable Kafka codes (an unmapped one would reach clients as UNKNOWN_SERVER_ERROR)."""

from __future__ import annotations

import pytest

from rilke import errors as e
from rilke.server.kafka import errors as ec


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (e.NotLeaderError("x"), ec.NOT_LEADER_OR_FOLLOWER),
        (e.ProposalDroppedError("a leader transfer is in progress"), ec.NOT_LEADER_OR_FOLLOWER),
        (e.FencedLeaderEpochError("x"), ec.FENCED_LEADER_EPOCH),
        (e.UnknownLeaderEpochError("x"), ec.UNKNOWN_LEADER_EPOCH),
        (e.NotEnoughReplicasError("x"), ec.NOT_ENOUGH_REPLICAS),
        (e.LogClosedError("x"), ec.NOT_LEADER_OR_FOLLOWER),
        (TimeoutError("x"), ec.REQUEST_TIMED_OUT),
        (ValueError("x"), ec.UNKNOWN_SERVER_ERROR),
    ],
)
def test_kafka_code(error: BaseException, code: int) -> None:
    assert ec.kafka_code(error) == code
