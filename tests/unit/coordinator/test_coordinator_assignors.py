"""The assignors as pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rilke.errors import UnsupportedAssignorError
from rilke.server.coordinator import ASSIGNORS, AssignmentMember, TopicPartition, get_assignor
from rilke.server.coordinator.assignors import range_assign, round_robin_assign, sticky_assign


def members(*specs: tuple[str, tuple[str, ...]]) -> dict[str, AssignmentMember]:
    return {mid: AssignmentMember(mid, None, frozenset(topics)) for mid, topics in specs}


def parts(out: dict[str, frozenset[TopicPartition]], mid: str) -> list[tuple[str, int]]:
    return sorted((tp.topic, tp.partition) for tp in out[mid])


def test_range_gives_contiguous_ranges_per_topic() -> None:
    ms = members(("m1", ("t", "u")), ("m2", ("t", "u")))
    out = range_assign(ms, {"t": 5, "u": 2}, {})
    assert parts(out, "m1") == [("t", 0), ("t", 1), ("t", 2), ("u", 0)]
    assert parts(out, "m2") == [("t", 3), ("t", 4), ("u", 1)]


def test_round_robin_deals_in_turn_and_skips_non_subscribers() -> None:
    ms = members(("m1", ("t",)), ("m2", ("t", "u")))
    out = round_robin_assign(ms, {"t": 3, "u": 2}, {})
    assert parts(out, "m1") == [("t", 0), ("t", 2)]
    assert parts(out, "m2") == [("t", 1), ("u", 0), ("u", 1)]


def test_static_members_are_ordered_by_instance_id() -> None:
    ms = {
        "zzz": AssignmentMember("zzz", "a-host", frozenset({"t"})),
        "aaa": AssignmentMember("aaa", "b-host", frozenset({"t"})),
    }
    out = range_assign(ms, {"t": 2}, {})
    assert parts(out, "zzz") == [("t", 0)]


def test_sticky_keeps_owners_and_moves_only_the_excess() -> None:
    ms = members(("m1", ("t",)), ("m2", ("t",)))
    first = sticky_assign(ms, {"t": 6}, {})
    ms3 = members(("m1", ("t",)), ("m2", ("t",)), ("m3", ("t",)))
    second = sticky_assign(ms3, {"t": 6}, first)
    assert second["m1"] <= first["m1"] and len(second["m1"]) == 2
    assert second["m2"] <= first["m2"] and len(second["m2"]) == 2
    assert len(second["m3"]) == 2


def test_sticky_drops_partitions_of_unsubscribed_or_missing_topics() -> None:
    ms = members(("m1", ("t",)))
    current = {"m1": frozenset({TopicPartition("t", 5), TopicPartition("gone", 0)})}
    out = sticky_assign(ms, {"t": 2}, current)
    assert parts(out, "m1") == [("t", 0), ("t", 1)]


def test_sticky_heterogeneous_balances_what_it_can() -> None:
    ms = members(("m1", ("t",)), ("m2", ("t", "u")), ("m3", ("u",)))
    out = sticky_assign(
        ms, {"t": 4, "u": 4}, {"m2": frozenset(TopicPartition("t", p) for p in range(4))}
    )
    sizes = sorted(len(v) for v in out.values())
    assert sizes[-1] - sizes[0] <= 1


def test_unknown_assignor() -> None:
    with pytest.raises(UnsupportedAssignorError):
        get_assignor("cooperative-magic")


def test_sticky_is_fast_enough_for_big_groups() -> None:
    # Not a timing assertion: a big case must simply finish (it is O(members x partitions)).
    ms = {f"m{i:03d}": AssignmentMember(f"m{i:03d}", None, frozenset({"t"})) for i in range(100)}
    out = sticky_assign(ms, {"t": 1000}, {})
    assert sum(len(v) for v in out.values()) == 1000


@settings(max_examples=200)
@given(
    name=st.sampled_from(sorted(ASSIGNORS)),
    counts=st.dictionaries(st.sampled_from("abcd"), st.integers(0, 9), max_size=4),
    subs=st.lists(st.frozensets(st.sampled_from("abcd"), min_size=1), min_size=1, max_size=6),
    seed_current=st.booleans(),
)
def test_every_partition_goes_to_exactly_one_subscriber(
    name: str, counts: dict[str, int], subs: list[frozenset[str]], seed_current: bool
) -> None:
    ms = {f"m{i}": AssignmentMember(f"m{i}", None, s) for i, s in enumerate(subs)}
    assign = get_assignor(name)
    current = assign(ms, counts, {}) if seed_current else {}
    # Change the world a little and assign again from the current assignment.
    counts2 = {t: n + 1 for t, n in counts.items()}
    out = assign(ms, counts2, current)
    assert set(out) == set(ms)
    seen: set[TopicPartition] = set()
    for mid, tps in out.items():
        for tp in tps:
            assert tp.topic in ms[mid].topics
            assert tp not in seen
            seen.add(tp)
    subscribed = set().union(*subs)
    assert seen == {
        TopicPartition(t, p) for t, n in counts2.items() if t in subscribed for p in range(n)
    }
    if name in ("sticky", "uniform") and len(set(subs)) == 1:
        sizes = [len(v) for v in out.values()]
        assert max(sizes) - min(sizes) <= 1
