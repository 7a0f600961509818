"""The checker on made-up histories: a clean run passes, and each kind of anomaly is found
and counted (and only it)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.faults.checker import Event, Report, check, percentile

_clock = itertools.count(1)


def ev(kind: str, t: float | None = None, **fields: Any) -> Event:
    return {"t": float(next(_clock)) if t is None else t, "type": kind, **fields}


def produced(
    client: str, acks: str, partition: int, seqs_offsets: list[tuple[int, int]], topic: str = "d"
) -> list[Event]:
    out = []
    for seq, offset in seqs_offsets:
        fields = {"client": client, "acks": acks, "topic": topic, "partition": partition,
                  "seq": seq, "value": f"{client}:{seq}"}  # fmt: skip
        out.append(ev("send", **fields))
        if offset >= 0:
            out.append(ev("ack", **fields, offset=offset))
    return out


def read(partition: int, offsets_values: list[tuple[int, str]], topic: str = "d") -> list[Event]:
    out = [
        ev("read", topic=topic, partition=partition, offset=o, value=v) for o, v in offsets_values
    ]
    return [*out, ev("read_end", topic=topic, ends={})]


def clean_history() -> list[Event]:
    return [
        *produced("p", "all", 0, [(0, 0), (1, 1), (2, 2)]),
        *produced("q", "1", 0, [(0, 3)]),
        *read(0, [(0, "p:0"), (1, "p:1"), (2, "p:2"), (3, "q:0")]),
        ev("commit", t=30, group="g", topic="d", partition=0, offset=2, t0=29),
        ev("committed", t=32, group="g", topic="d", partition=0, offset=2, t0=31),
        ev("commit", t=40, group="g", topic="d", partition=0, offset=4, t0=39),
        ev("final_committed", t=50, group="g", topic="d", partition=0, offset=4),
        ev("topic", op="create", name="a", ok=True, error=None, t0=0),
        ev("topic", op="create", name="b", ok=True, error=None, t0=0),
        ev("topic", op="delete", name="a", ok=True, error=None, t0=0),
        ev("topic", op="create", name="c", ok=False, error="timeout", t0=0),
        ev("topics", node=1, names=["d", "b"]),
        ev("topics", node=2, names=["d", "b"]),
        ev("topics", node=3, names=None),  # did not answer: not judged
    ]


def only(report: Report) -> dict[str, int]:
    return {name: f.count for name, f in report.violations().items()}


def test_a_clean_history_has_no_violations() -> None:
    report = check(clean_history())
    assert report.ok(), report.describe()
    assert (report.acked_all, report.acked_acks1, report.read, report.sent) == (3, 1, 4, 4)
    assert report.commits == 2 and report.topic_ops == 4


def test_a_lost_acks_all_record_is_a_violation_and_a_lost_acks1_is_reported() -> None:
    history = [
        *produced("p", "all", 0, [(0, 0), (1, 1)]),
        *produced("q", "1", 0, [(0, 2)]),
        *read(0, [(0, "p:0")]),
    ]
    errors = [ev("error", client="c", error=f"NotLeaderError: moved to {n}") for n in (2, 3)]
    report = check([*history, *errors])
    assert only(report) == {"lost": 1}
    assert "p:1" in report.lost.examples[0]
    assert report.lost_acks1.count == 1
    assert report.client_errors == {"c: NotLeaderError": 2}
    assert "c: NotLeaderError x2" in report.describe()
    assert "first c: NotLeaderError: NotLeaderError: moved to 2" in report.describe()


def test_an_unacknowledged_record_may_be_missing_or_present() -> None:
    history = [
        *produced("p", "all", 0, [(0, 0), (1, -1), (2, -1)]),
        *read(0, [(0, "p:0"), (1, "p:2")]),
    ]
    assert check(history).ok()


def test_losses_are_not_judged_when_the_read_back_did_not_finish() -> None:
    history = [
        *produced("p", "all", 0, [(0, 0)]),
        ev("final_error", topic="d", error="read-back timed out"),
    ]
    report = check(history)
    assert report.ok() and report.incomplete.count == 1


def test_duplicates_unknown_reads_and_moves() -> None:
    history = [
        *produced("p", "all", 0, [(0, 0), (1, 1)]),
        *read(0, [(0, "p:0"), (1, "p:1"), (2, "p:1"), (3, "ghost:7")]),
    ]
    assert only(check(history)) == {"duplicates": 1, "unknown_reads": 1}
    moved = [*produced("p", "all", 0, [(0, 0), (1, 1)]), *read(0, [(0, "p:0"), (5, "p:1")])]
    assert only(check(moved)) == {"moved": 1}


def test_order_against_acknowledgements_and_read_back() -> None:
    acked_out_of_order = [
        *produced("p", "all", 0, [(0, 0), (1, 2), (2, 1)]),
        *read(0, [(0, "p:0"), (1, "p:2"), (2, "p:1")]),
    ]
    report = check(acked_out_of_order)
    assert set(only(report)) == {"reordered"}
    assert report.reordered.count == 2  # once from the acks, once from the read-back
    # acks=1: a lost record's offset is given again; only the read-back order counts.
    acks1_offset_reused = [*produced("p", "1", 0, [(0, 5), (1, 5)]), *read(0, [(5, "p:1")])]
    report = check(acks1_offset_reused)
    assert report.ok() and report.lost_acks1.count == 1
    unacked_reordered = [
        *produced("p", "1", 0, [(0, -1), (1, -1)]),
        *read(0, [(0, "p:1"), (1, "p:0")]),
    ]
    assert only(check(unacked_reordered)) == {"reordered": 1}


def test_committed_offsets_going_backwards() -> None:
    def base() -> list[Event]:
        return [ev("commit", t=10, group="g", topic="d", partition=0, offset=5, t0=9)]

    later_commit = [*base(), ev("commit", t=20, group="g", topic="d", partition=0, offset=3, t0=19)]
    assert only(check(later_commit)) == {"offsets_backwards": 1}
    stale_read = [
        *base(),
        ev("committed", t=31, group="g", topic="d", partition=0, offset=4, t0=30),
    ]
    assert only(check(stale_read)) == {"offsets_backwards": 1}
    # A read that began before the commit was acknowledged may see the older value.
    concurrent = [
        *base(),
        ev("committed", t=11, group="g", topic="d", partition=0, offset=0, t0=9.5),
    ]
    assert check(concurrent).ok()
    final_low = [*base(), ev("final_committed", t=40, group="g", topic="d", partition=0, offset=4)]
    assert only(check(final_low)) == {"offsets_backwards": 1}
    final_missing = [
        *base(),
        ev("final_committed", t=40, group="g", topic="d", partition=1, offset=9),
    ]
    assert only(check(final_missing)) == {"offsets_backwards": 1}


def test_topic_operations_acknowledged_and_not_applied() -> None:
    history = [
        ev("topic", op="create", name="a", ok=True, error=None, t0=0),
        ev("topic", op="create", name="b", ok=True, error=None, t0=0),
        ev("topic", op="delete", name="b", ok=True, error=None, t0=0),
        ev("topic", op="create", name="c", ok=True, error=None, t0=0),
        ev("topic", op="delete", name="c", ok=False, error="timeout", t0=0),
        ev("topics", node=1, names=["b"]),
    ]
    report = check(history)
    assert only(report) == {"topic_ops_lost": 2}
    assert any("create a" in e for e in report.topic_ops_lost.examples)
    assert any("delete b" in e for e in report.topic_ops_lost.examples)


def test_a_node_whose_topic_list_is_stale_is_named() -> None:
    history = [
        ev("topic", op="create", name="a", ok=True, error=None, t0=0),
        ev("topics", node=1, names=["a"]),
        ev("topics", node=2, names=[]),
        ev("topics", node=3, names=["a"]),
    ]
    report = check(history)
    assert only(report) == {"topic_ops_lost": 1}
    assert report.topic_ops_lost.examples == ["create a acknowledged, topic missing on node(s) 2"]
    assert check(history[:1]).incomplete.count == 1  # no listing at all: not judged


def test_failover_time_is_kill_to_the_first_ack_on_each_led_partition() -> None:
    history = [
        ev(
            "ack",
            t=5.0,
            client="p",
            acks="all",
            topic="d",
            partition=0,
            seq=0,
            value="p:0",
            offset=0,
        ),
        ev(
            "ack",
            t=12.5,
            client="p",
            acks="all",
            topic="d",
            partition=0,
            seq=1,
            value="p:1",
            offset=1,
        ),
        ev(
            "ack",
            t=13.0,
            client="p",
            acks="all",
            topic="d",
            partition=0,
            seq=2,
            value="p:2",
            offset=2,
        ),
        ev(
            "ack",
            t=11.0,
            client="p",
            acks="all",
            topic="d",
            partition=1,
            seq=3,
            value="p:3",
            offset=0,
        ),
    ]
    faults = [
        {"t": 10.0, "kind": "kill", "node": 2, "partitions": [["d", 0], ["d", 1], ["d", 2]]},
        {"t": 11.0, "kind": "pause", "node": 1},
    ]
    report = check(history, faults)
    assert sorted(report.failover_s) == [1.0, 2.5]
    assert report.no_ack_after_kill == 1


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([], 50, None),
        ([3.0], 99, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),
        ([1.0, 2.0, 3.0, 4.0], 99, 4.0),
    ],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float | None) -> None:
    assert percentile(values, q) == expected
