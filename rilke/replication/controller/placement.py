"""Replica placement: which brokers hold the replicas of new partitions, and which leads.

Pure and deterministic: the same brokers and counts give the same placement. Each partition's
leader is the broker with the fewest leaderships (then the fewest replicas, then the lowest
id); its followers are the brokers with the fewest replicas, preferring racks the partition
does not use yet (brokers without a rack constrain nothing). Counts include the partitions
being placed, so one call balances a whole new topic and later calls balance against it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rilke.errors import InvalidPartitionsError, InvalidReplicationFactorError
from rilke.replication.controller.state import BrokerInfo

MAX_PARTITIONS_PER_REQUEST = 100_000


def place_partitions(
    brokers: Sequence[BrokerInfo],
    num_partitions: int,
    replication_factor: int,
    replica_counts: Mapping[int, int],
    leader_counts: Mapping[int, int],
) -> list[tuple[int, ...]]:
    """The replicas of ``num_partitions`` new partitions, leader first, over ``brokers`` (the
    live ones). ``replica_counts`` / ``leader_counts`` are what each broker holds already.

    Raises InvalidReplicationFactorError when the factor is < 1 or above the number of live
    brokers, InvalidPartitionsError when the count is < 1 or above MAX_PARTITIONS_PER_REQUEST.
    """
    if replication_factor < 1:
        raise InvalidReplicationFactorError(
            f"replication factor must be at least 1, got {replication_factor}"
        )
    if replication_factor > len(brokers):
        raise InvalidReplicationFactorError(
            f"replication factor {replication_factor} is larger than the number of live "
            f"brokers ({len(brokers)}: {[b.broker_id for b in brokers]})"
        )
    if not 1 <= num_partitions <= MAX_PARTITIONS_PER_REQUEST:
        raise InvalidPartitionsError(
            f"number of partitions must be 1..{MAX_PARTITIONS_PER_REQUEST}, got {num_partitions}"
        )
    replicas = {b.broker_id: replica_counts.get(b.broker_id, 0) for b in brokers}
    leaders = {b.broker_id: leader_counts.get(b.broker_id, 0) for b in brokers}
    rack = {b.broker_id: b.rack for b in brokers}
    ids = sorted(replicas)
    placed: list[tuple[int, ...]] = []
    for _ in range(num_partitions):
        leader = min(ids, key=lambda b: (leaders[b], replicas[b], b))
        chosen = [leader]
        racks = {rack[leader]} - {None}
        while len(chosen) < replication_factor:
            follower = min(
                (b for b in ids if b not in chosen),
                key=lambda b: (rack[b] in racks, replicas[b], -leaders[b], b),
            )
            chosen.append(follower)
            if rack[follower] is not None:
                racks.add(rack[follower])
        leaders[leader] += 1
        for b in chosen:
            replicas[b] += 1
        placed.append(tuple(chosen))
    return placed
