"""Partition moves: checking a requested replica set, and planning rebalance and decommission.

A move gives a partition a ``target`` replica set (the :class:`~records.ReassignmentStarted`
record); the partition's leader carries it out in the partition's Raft group one membership
change at a time (:mod:`rilke.replication.controller.move_steps`). This module decides WHAT
moves, never how:

- :func:`check_target`: a user's ``rilke topic reassign`` request, refused with a specific
  error (unknown topic, partition or broker, an unavailable broker, a count other than the
  replication factor without ``force``, a move already running) before anything changes.
- :func:`plan_rebalance`: after a broker was added, the fewest single-replica moves that
  spread replicas over the live brokers within one of each other (no move puts two replicas
  of a partition on one rack: the spread may stay wider when racks forbid it), then reorders
  replica lists (no data moves) so that preferred leaders (first replicas) are spread the
  same way.
- :func:`plan_decommission`: every replica off one broker, each to the live broker with the
  fewest replicas that holds none of that partition.

Pure and deterministic: the same state gives the same plan. Partitions are visited by topic
name, then partition number. Partitions with a move running, or with a replica on a broker
that is not alive, are left alone by the planners (a degraded group is not made to move).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rilke.errors import (
    InvalidReplicaAssignmentError,
    ReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)
from rilke.replication.controller.state import (
    BrokerState,
    MetadataState,
    PartitionInfo,
    TopicMeta,
)

Move = tuple[str, int, tuple[int, ...]]
"""(topic name, partition, target replicas, preferred leader first)."""


def check_target(
    state: MetadataState,
    topic_name: str,
    partition: int,
    target: Sequence[int],
    *,
    force: bool = False,
) -> PartitionInfo:
    """The partition a reassignment of ``topic_name``-``partition`` to ``target`` would move,
    once the request holds. Raises UnknownTopicOrPartitionError, InvalidReplicaAssignmentError
    (empty or repeated brokers, an unregistered broker, a new replica on a broker that is not
    alive, a replica count other than the partition's without ``force``),
    ReassignmentInProgressError."""
    topic = state.topics.get(topic_name)
    if topic is None:
        raise UnknownTopicOrPartitionError(f"topic {topic_name!r} does not exist")
    if not 0 <= partition < len(topic.partitions):
        raise UnknownTopicOrPartitionError(
            f"topic {topic_name!r} has no partition {partition} (it has "
            f"{len(topic.partitions)}: 0..{len(topic.partitions) - 1})"
        )
    part = topic.partitions[partition]
    where = f"{topic_name}-{partition}"
    wanted = tuple(target)
    if not wanted:
        raise InvalidReplicaAssignmentError(f"{where}: the new replica list is empty")
    if len(set(wanted)) != len(wanted):
        raise InvalidReplicaAssignmentError(
            f"{where}: the new replicas {list(wanted)} name a broker twice"
        )
    unknown = sorted(b for b in wanted if b not in state.brokers)
    if unknown:
        raise InvalidReplicaAssignmentError(
            f"{where}: broker(s) {unknown} are not registered (brokers: {sorted(state.brokers)})"
        )
    for b in wanted:
        info = state.brokers[b]
        if b not in part.replicas and info.state is not BrokerState.ALIVE:
            raise InvalidReplicaAssignmentError(
                f"{where}: broker {b} is {info.state.value}: a new replica needs a live broker"
            )
    if len(wanted) != len(part.replicas) and not force:
        raise InvalidReplicaAssignmentError(
            f"{where} has {len(part.replicas)} replicas {list(part.replicas)}; the new list "
            f"{list(wanted)} has {len(wanted)} (pass --force to change the replication factor)"
        )
    if part.target:
        raise ReassignmentInProgressError(
            f"{where} is already moving from {list(part.replicas)} to {list(part.target)}: "
            "wait until that move completes"
        )
    return part


def _partitions(state: MetadataState) -> Iterator[tuple[TopicMeta, int, PartitionInfo]]:
    for name in sorted(state.topics):
        topic = state.topics[name]
        for p, part in enumerate(topic.partitions):
            yield topic, p, part


def _alive(state: MetadataState) -> list[int]:
    return [b.broker_id for b in state.live_brokers()]


def plan_rebalance(state: MetadataState) -> list[Move]:
    """Moves that spread replicas, then preferred leaders, over the live brokers (see the
    module docstring). Each partition gets at most one target; empty when balanced."""
    alive = _alive(state)
    if len(alive) < 2:
        return []
    alive_set = set(alive)
    replica_count = dict.fromkeys(alive, 0)
    targets: dict[tuple[str, int], list[int]] = {}
    for topic, p, part in _partitions(state):
        for b in part.target or part.replicas:  # a running move counts as done
            if b in replica_count:
                replica_count[b] += 1
        if not part.target and set(part.replicas) <= alive_set:
            targets[(topic.name, p)] = list(part.replicas)

    # Replicas: move one from the fullest broker to the emptiest until within one (or until
    # no move keeps the partitions' racks distinct).
    rack = {b.broker_id: b.rack for b in state.brokers.values()}
    while True:
        move = _find_replica_move(alive, replica_count, targets, rack)
        if move is None:
            break
        key, hi, lo = move
        replicas = targets[key]
        replicas[replicas.index(hi)] = lo
        replica_count[hi] -= 1
        replica_count[lo] += 1

    # Preferred leaders: reorder replica lists (the same brokers) until within one.
    leader_count = dict.fromkeys(alive, 0)
    for topic, p, part in _partitions(state):
        first = (targets.get((topic.name, p)) or list(part.target or part.replicas))[0]
        if first in leader_count:
            leader_count[first] += 1
    while True:
        swap = _find_leader_swap(alive, leader_count, targets)
        if swap is None:
            break
        key, hi, lo = swap
        replicas = targets[key]
        i = replicas.index(lo)
        replicas[0], replicas[i] = lo, hi
        leader_count[hi] -= 1
        leader_count[lo] += 1

    moves = []
    for topic, p, part in _partitions(state):
        target = targets.get((topic.name, p))
        if target is not None and tuple(target) != part.replicas:
            moves.append((topic.name, p, tuple(target)))
    return moves


def _by_load(alive: list[int], count: dict[int, int]) -> tuple[list[int], list[int]]:
    """The brokers fullest first, and emptiest first (ties by id)."""
    full = sorted(alive, key=lambda b: (-count[b], b))
    empty = sorted(alive, key=lambda b: (count[b], b))
    return full, empty


def _rack_kept(replicas: list[int], hi: int, lo: int, rack: dict[int, str | None]) -> bool:
    """Whether moving a replica from ``hi`` to ``lo`` puts no two replicas of the partition on
    one rack that were not already (as placement does on create; brokers without a rack
    constrain nothing)."""
    lo_rack = rack.get(lo)
    if lo_rack is None or lo_rack == rack.get(hi):
        return True
    return all(rack.get(b) != lo_rack for b in replicas if b != hi)


def _find_replica_move(
    alive: list[int],
    count: dict[int, int],
    targets: dict[tuple[str, int], list[int]],
    rack: dict[int, str | None],
) -> tuple[tuple[str, int], int, int] | None:
    """(partition, from, to) of one replica move narrowing the spread, or None. A move off a
    partition's preferred leader is taken only when no other fits (leaders stay put); a move
    that would put two of a partition's replicas on one rack is never taken."""
    full, empty = _by_load(alive, count)
    for hi in full:
        for lo in empty:
            if count[hi] - count[lo] <= 1:
                break
            fallback = None
            for key, replicas in targets.items():
                if hi in replicas and lo not in replicas and _rack_kept(replicas, hi, lo, rack):
                    if replicas[0] != hi:
                        return key, hi, lo
                    fallback = fallback or key
            if fallback is not None:
                return fallback, hi, lo
    return None


def _find_leader_swap(
    alive: list[int], count: dict[int, int], targets: dict[tuple[str, int], list[int]]
) -> tuple[tuple[str, int], int, int] | None:
    """(partition, preferred leader now, the replica to put first) narrowing the spread."""
    full, empty = _by_load(alive, count)
    for hi in full:
        for lo in empty:
            if count[hi] - count[lo] <= 1:
                break
            for key, replicas in targets.items():
                if replicas[0] == hi and lo in replicas:
                    return key, hi, lo
    return None


def plan_decommission(state: MetadataState, broker_id: int) -> list[Move]:
    """A move per partition with a replica on ``broker_id``: the replica leaves and a live
    broker holding none of that partition (the one with the fewest replicas, counting the
    moves planned so far, then the lowest id) joins at the end of the list, so the
    preferred leader becomes one of the replicas that stay. Partitions already moving off
    the broker are left to that move. Raises ReassignmentInProgressError when a running move
    keeps a replica on the broker, InvalidReplicaAssignmentError when a partition has no
    broker to go to (the plan is whole or nothing)."""
    candidates = [b for b in _alive(state) if b != broker_id]
    count = {b: state.replica_counts.get(b, 0) for b in candidates}
    moves: list[Move] = []
    for topic, p, part in _partitions(state):
        where = f"{topic.name}-{p}"
        if part.target:
            if broker_id in part.target:
                raise ReassignmentInProgressError(
                    f"{where} is moving to {list(part.target)}, which keeps a replica on "
                    f"broker {broker_id}: wait until that move completes"
                )
            continue
        if broker_id not in part.replicas:
            continue
        free = [b for b in candidates if b not in part.replicas]
        if not free:
            raise InvalidReplicaAssignmentError(
                f"cannot move {where}'s replica off broker {broker_id}: its replicas are "
                f"{list(part.replicas)} and no other live broker is free (live: {candidates}); "
                "add a broker first"
            )
        to = min(free, key=lambda b: (count[b], b))
        count[to] += 1
        target = (*(b for b in part.replicas if b != broker_id), to)
        moves.append((topic.name, p, target))
    return moves
