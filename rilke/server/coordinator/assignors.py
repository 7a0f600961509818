"""Server-side partition assignors: range, round-robin and sticky (the default).

An assignor is a pure function from the group's members (their subscriptions), the partition
counts of the subscribed topics, and the current target assignment (for stickiness) to a new
target assignment. Every partition of a subscribed topic is assigned to exactly one member that
subscribes to its topic; a topic nobody subscribes to is ignored. Results are deterministic:
members are ordered by their instance id when they have one (so a restarted static member lands
in the same place), else by member id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rilke.errors import UnsupportedAssignorError

from .types import Assignment, TopicPartition


@dataclass(frozen=True)
class AssignmentMember:
    member_id: str
    instance_id: str | None
    topics: frozenset[str]

    @property
    def sort_key(self) -> tuple[str, str]:
        return (self.instance_id or "", self.member_id)


AssignorFn = Callable[
    [Mapping[str, AssignmentMember], Mapping[str, int], Mapping[str, Assignment]],
    dict[str, Assignment],
]


def _ordered(members: Mapping[str, AssignmentMember]) -> list[AssignmentMember]:
    return sorted(members.values(), key=lambda m: m.sort_key)


def _subscribed_topics(
    members: Mapping[str, AssignmentMember], partitions: Mapping[str, int]
) -> list[str]:
    wanted: set[str] = set()
    for m in members.values():
        wanted |= m.topics
    return sorted(t for t in wanted if partitions.get(t, 0) > 0)


def range_assign(
    members: Mapping[str, AssignmentMember],
    partitions: Mapping[str, int],
    current: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Per topic, contiguous ranges of partitions to the members that subscribe to it, in
    member order; the first ``count % n`` members get one more. Ignores ``current``."""
    out: dict[str, set[TopicPartition]] = {mid: set() for mid in members}
    ordered = _ordered(members)
    for topic in _subscribed_topics(members, partitions):
        subscribers = [m for m in ordered if topic in m.topics]
        count = partitions[topic]
        quota, extra = divmod(count, len(subscribers))
        start = 0
        for i, m in enumerate(subscribers):
            n = quota + (1 if i < extra else 0)
            out[m.member_id].update(TopicPartition(topic, p) for p in range(start, start + n))
            start += n
    return {mid: frozenset(tps) for mid, tps in out.items()}


def round_robin_assign(
    members: Mapping[str, AssignmentMember],
    partitions: Mapping[str, int],
    current: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """All subscribed partitions in (topic, partition) order dealt to members in turn,
    skipping members that do not subscribe to the partition's topic. Ignores ``current``."""
    out: dict[str, set[TopicPartition]] = {mid: set() for mid in members}
    ordered = _ordered(members)
    if not ordered:
        return {}
    cursor = 0
    for topic in _subscribed_topics(members, partitions):
        for p in range(partitions[topic]):
            # Some member subscribes to the topic, so this finds one within len(ordered) steps.
            for _ in range(len(ordered)):
                m = ordered[cursor % len(ordered)]
                cursor += 1
                if topic in m.topics:
                    out[m.member_id].add(TopicPartition(topic, p))
                    break
    return {mid: frozenset(tps) for mid, tps in out.items()}


def sticky_assign(
    members: Mapping[str, AssignmentMember],
    partitions: Mapping[str, int],
    current: Mapping[str, Assignment],
) -> dict[str, Assignment]:
    """Balanced, and moving as few partitions as it can.

    1. Every member keeps the partitions of its current target that are still valid (the
       topic exists with that partition and the member subscribes to it), each partition once.
    2. Members above their fair share give up their excess (for identical subscriptions the
       share is ``n // m`` or one more, and only ``n % m`` members may hold one more).
    3. Unassigned partitions go, one by one, to the least loaded member that subscribes.
    4. While some member holds two or more partitions more than another member that could take
       one of them, move one (most loaded to least loaded). Each move lowers the sum of squared
       loads, so this ends.

    With identical subscriptions the result differs by at most one partition between members.
    """
    ordered = _ordered(members)
    if not ordered:
        return {}
    valid: set[TopicPartition] = set()
    for topic in _subscribed_topics(members, partitions):
        valid.update(TopicPartition(topic, p) for p in range(partitions[topic]))

    load: dict[str, list[TopicPartition]] = {m.member_id: [] for m in ordered}
    taken: set[TopicPartition] = set()
    for m in ordered:
        for tp in sorted(current.get(m.member_id, frozenset())):
            if tp in valid and tp.topic in m.topics and tp not in taken:
                load[m.member_id].append(tp)
                taken.add(tp)

    # Step 2: trim to the fair share when subscriptions are identical (the common case; for
    # mixed subscriptions step 4 does the balancing).
    topic_sets = {m.topics for m in ordered}
    released: list[TopicPartition] = []
    if len(topic_sets) == 1 and valid:
        quota, extra = divmod(len(valid), len(ordered))
        # Members that already hold more than the quota keep the extra slots first (most
        # loaded first, so the fewest partitions move).
        for m in sorted(ordered, key=lambda m: (-len(load[m.member_id]), m.sort_key)):
            held = load[m.member_id]
            allowed = quota
            if extra > 0 and len(held) > quota:
                allowed = quota + 1
                extra -= 1
            if len(held) > allowed:
                released.extend(held[allowed:])
                del held[allowed:]
    for tp in released:
        taken.discard(tp)

    order_index = {m.member_id: i for i, m in enumerate(ordered)}

    def least_loaded(topic: str) -> str | None:
        best: str | None = None
        for m in ordered:
            if topic in m.topics and (best is None or len(load[m.member_id]) < len(load[best])):
                best = m.member_id
        return best

    for tp in sorted(valid - taken):
        target = least_loaded(tp.topic)
        assert target is not None  # tp is valid, so some member subscribes to its topic
        load[target].append(tp)

    # Step 4: balance.
    while True:
        moved = False
        donors = sorted(ordered, key=lambda m: (-len(load[m.member_id]), m.sort_key))
        for donor in donors:
            held = load[donor.member_id]
            best_move: tuple[int, int, TopicPartition, str] | None = None
            for tp in held:
                taker = least_loaded(tp.topic)
                if taker is None or taker == donor.member_id:
                    continue
                gap = len(held) - len(load[taker])
                if gap >= 2:
                    cand = (-gap, order_index[taker], tp, taker)
                    if best_move is None or cand < best_move:
                        best_move = cand
            if best_move is not None:
                _, _, tp, taker = best_move
                held.remove(tp)
                load[taker].append(tp)
                moved = True
                break
        if not moved:
            break
    return {mid: frozenset(tps) for mid, tps in load.items()}


ASSIGNORS: dict[str, AssignorFn] = {
    "sticky": sticky_assign,
    "uniform": sticky_assign,  # Kafka's name for its sticky server-side assignor
    "range": range_assign,
    "roundrobin": round_robin_assign,
}


def get_assignor(name: str) -> AssignorFn:
    """The assignor called ``name``; raises UnsupportedAssignorError for an unknown name."""
    try:
        return ASSIGNORS[name]
    except KeyError:
        raise UnsupportedAssignorError(
            f"unknown assignor {name!r}: use one of {', '.join(sorted(ASSIGNORS))}"
        ) from None
