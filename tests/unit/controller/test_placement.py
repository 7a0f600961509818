"""Replica placement: spread, leader balance, racks, and the refusals."""

from __future__ import annotations

from collections import Counter

import pytest

from rilke.errors import InvalidPartitionsError, InvalidReplicationFactorError
from rilke.replication.controller.placement import place_partitions
from rilke.replication.controller.state import BrokerInfo, BrokerState


def brokers(n: int, racks: list[str | None] | None = None) -> list[BrokerInfo]:
    return [
        BrokerInfo(b, "h", 9000 + b, racks[b - 1] if racks else None, BrokerState.ALIVE, b)
        for b in range(1, n + 1)
    ]


def test_replicas_and_leaders_are_balanced() -> None:
    placed = place_partitions(brokers(3), 6, 3, {}, {})
    assert all(len(set(r)) == 3 for r in placed)
    assert Counter(r[0] for r in placed) == {1: 2, 2: 2, 3: 2}
    placed = place_partitions(brokers(5), 10, 2, {}, {})
    assert Counter(r[0] for r in placed) == dict.fromkeys(range(1, 6), 2)
    assert Counter(b for r in placed for b in r) == dict.fromkeys(range(1, 6), 4)


def test_placement_balances_against_what_brokers_hold_already() -> None:
    placed = place_partitions(brokers(3), 3, 1, {1: 5, 2: 5}, {1: 5, 2: 5})
    assert placed == [(3,), (3,), (3,)]


def test_replicas_spread_over_racks() -> None:
    racks: list[str | None] = ["a", "a", "b", "b", "c", "c"]
    rack = dict(enumerate(racks, start=1))
    placed = place_partitions(brokers(6, racks), 12, 3, {}, {})
    for replicas in placed:
        assert len({rack[b] for b in replicas}) == 3, replicas
    assert Counter(r[0] for r in placed) == dict.fromkeys(range(1, 7), 2)


def test_more_replicas_than_racks_still_places() -> None:
    placed = place_partitions(brokers(4, ["a", "a", "b", "b"]), 4, 3, {}, {})
    assert all(len(set(r)) == 3 for r in placed)


def test_placement_is_deterministic() -> None:
    assert place_partitions(brokers(4), 50, 3, {2: 1}, {}) == place_partitions(
        brokers(4), 50, 3, {2: 1}, {}
    )


def test_a_factor_above_the_live_brokers_is_refused() -> None:
    with pytest.raises(InvalidReplicationFactorError, match=r"3 is larger than .* \(2: \[1, 2\]\)"):
        place_partitions(brokers(2), 1, 3, {}, {})
    with pytest.raises(InvalidReplicationFactorError, match="at least 1"):
        place_partitions(brokers(2), 1, 0, {}, {})
    with pytest.raises(InvalidReplicationFactorError, match=r"\(0: \[\]\)"):
        place_partitions([], 1, 1, {}, {})


def test_a_bad_partition_count_is_refused() -> None:
    with pytest.raises(InvalidPartitionsError, match="got 0"):
        place_partitions(brokers(2), 0, 1, {}, {})


@pytest.mark.parametrize(
    ("n", "partitions", "factor"),
    [
        (5, 10, 2),
        (4, 10, 3),
        (7, 21, 3),
        (6, 100, 3),
        (5, 7, 2),
        (9, 1000, 3),
        (4, 4, 3),
        (2, 9, 1),
    ],
)
def test_replica_and_leader_counts_differ_by_at_most_one(
    n: int, partitions: int, factor: int
) -> None:
    placed = place_partitions(brokers(n), partitions, factor, {}, {})
    replicas = Counter(b for r in placed for b in r)
    leaders = Counter(r[0] for r in placed)
    assert len(replicas) == n
    assert max(replicas.values()) - min(replicas.values()) <= 1
    assert max(leaders.values()) - min(leaders[b] for b in range(1, n + 1)) <= 1
