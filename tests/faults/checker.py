"""The checker: what a fault run's histories (tests/faults/clients.py events) and the
nemesis's fault log say about the cluster's guarantees. Pure: events in, a Report out.

Must be zero in every run (``Report.violations()``):
- ``lost``: acks=all records acknowledged and not read back after the heal;
- ``duplicates``: a value of an idempotent producer read more than once;
- ``reordered``: one producer's records in a partition whose offsets disagree with the order
  it sent them (acks=all acknowledged offsets, and the read-back of every producer's);
- ``moved``: an acks=all record read back at another offset than the one acknowledged;
- ``unknown_reads``: a record read that no producer ever sent;
- ``offsets_backwards``: a group's committed offset lower than one acknowledged before (in a
  later acknowledged commit, a committed-offset read, or the final offsets);
- ``topic_ops_lost``: a topic whose last operation was acknowledged and is not in effect.
Reported, not failed: ``lost_acks1`` (what acks=1 means), ``incomplete`` (a part of the read-
back that did not finish: losses there cannot be judged and are not counted), and the
failover times from each kill -9 to the first acknowledged write on the partitions the
killed node led.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

Event = dict[str, Any]
SAMPLES = 5
"""How many examples of each violation a report keeps (the counts are exact)."""


@dataclass
class Finding:
    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, example: str) -> None:
        self.count += 1
        if len(self.examples) < SAMPLES:
            self.examples.append(example)


MUST_BE_ZERO = (
    "lost",
    "duplicates",
    "reordered",
    "moved",
    "unknown_reads",
    "offsets_backwards",
    "topic_ops_lost",
)


@dataclass
class Report:
    acked_all: int = 0
    acked_acks1: int = 0
    sent: int = 0
    read: int = 0
    commits: int = 0
    topic_ops: int = 0
    lost: Finding = field(default_factory=Finding)
    duplicates: Finding = field(default_factory=Finding)
    reordered: Finding = field(default_factory=Finding)
    moved: Finding = field(default_factory=Finding)
    unknown_reads: Finding = field(default_factory=Finding)
    offsets_backwards: Finding = field(default_factory=Finding)
    topic_ops_lost: Finding = field(default_factory=Finding)
    lost_acks1: Finding = field(default_factory=Finding)
    incomplete: Finding = field(default_factory=Finding)
    failover_s: list[float] = field(default_factory=list)
    no_ack_after_kill: int = 0
    client_errors: Counter[str] = field(default_factory=Counter)
    """``"<client>: <exception class>"`` -> how many calls failed so (not a verdict: faults
    make calls fail; it says what the clients saw)."""
    first_errors: dict[str, str] = field(default_factory=dict)
    """The first message of each ``client_errors`` kind (for triage: the run's files are
    removed when it passes)."""

    def violations(self) -> dict[str, Finding]:
        """The must-be-zero findings that are not zero."""
        return {name: f for name in MUST_BE_ZERO if (f := getattr(self, name)).count}

    def ok(self) -> bool:
        return not self.violations()

    def describe(self) -> str:
        lines = [
            f"sent {self.sent}, acknowledged acks=all {self.acked_all} acks=1 "
            f"{self.acked_acks1}, read back {self.read}, commits {self.commits}, "
            f"topic ops {self.topic_ops}"
        ]
        for name in (*MUST_BE_ZERO, "lost_acks1", "incomplete"):
            finding: Finding = getattr(self, name)
            if finding.count:
                lines.append(f"  {name}: {finding.count}  e.g. {'; '.join(finding.examples)}")
        if self.client_errors:
            seen = ", ".join(f"{k} x{n}" for k, n in self.client_errors.most_common(8))
            lines.append(f"  client errors: {seen}")
            for kind, _n in self.client_errors.most_common(8):
                lines.append(f"    first {kind}: {self.first_errors[kind][:200]}")
        return "\n".join(lines)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q`` percentile (0 < q <= 100) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def check(events: Iterable[Event], faults: Iterable[Event] = ()) -> Report:
    """Judge one run. ``events``: every client's history (any order; each has ``t``);
    ``faults``: the nemesis's log (``kind`` "kill" events name the ``node`` and the
    ``partitions`` [topic, partition] it led when killed)."""
    report = Report()
    by_type: dict[str, list[Event]] = defaultdict(list)
    for event in sorted(events, key=lambda e: e["t"]):
        by_type[event["type"]].append(event)
    for e in by_type["error"] + by_type["fail"]:
        kind = f"{e['client']}: {e['error'].partition(':')[0]}"
        report.client_errors[kind] += 1
        report.first_errors.setdefault(kind, e["error"])
    _check_records(report, by_type)
    _check_offsets(report, by_type)
    _check_topics(report, by_type)
    _failover(report, by_type["ack"], faults)
    return report


def _check_records(report: Report, by_type: dict[str, list[Event]]) -> None:
    sent = {e["value"] for e in by_type["send"]}
    report.sent = len(sent)
    read_topics = {e["topic"] for e in by_type["read_end"]}
    for e in by_type["final_error"]:
        report.incomplete.add(f"{e['topic']}: {e['error']}")
    reads: dict[str, list[Event]] = defaultdict(list)
    for e in by_type["read"]:
        report.read += 1
        if e["value"] not in sent:
            report.unknown_reads.add(f"{e['topic']}/{e['partition']}@{e['offset']}={e['value']!r}")
            continue
        reads[e["value"]].append(e)
    for value, copies in reads.items():
        if len(copies) > 1:
            where = ", ".join(f"{c['topic']}/{c['partition']}@{c['offset']}" for c in copies)
            report.duplicates.add(f"{value} at {where}")

    acked: dict[tuple[str, str, int], list[Event]] = defaultdict(list)
    for e in by_type["ack"]:
        acked[(e["client"], e["topic"], e["partition"])].append(e)
        if e["acks"] == "all":
            report.acked_all += 1
        else:
            report.acked_acks1 += 1
        if e["topic"] not in read_topics:
            continue  # the read-back of this topic did not finish: reported as incomplete
        copies = reads.get(e["value"], [])
        if not copies:
            (report.lost if e["acks"] == "all" else report.lost_acks1).add(
                f"{e['value']} acknowledged at {e['topic']}/{e['partition']}@{e['offset']}"
            )
        elif e["acks"] == "all" and all(
            (c["partition"], c["offset"]) != (e["partition"], e["offset"]) for c in copies
        ):
            report.moved.add(
                f"{e['value']} acknowledged at {e['partition']}@{e['offset']}, read at "
                + ", ".join(f"{c['partition']}@{c['offset']}" for c in copies)
            )
    for (client, topic, partition), acks in acked.items():
        if acks[0]["acks"] != "all":
            continue  # acks=1: a lost record's offset is given again (the read-back is checked)
        acks.sort(key=lambda a: a["seq"])
        for before, after in itertools.pairwise(acks):
            if after["offset"] <= before["offset"]:
                report.reordered.add(
                    f"{client} {topic}/{partition}: seq {before['seq']}@{before['offset']} "
                    f"then seq {after['seq']}@{after['offset']} (acknowledged)"
                )
    read_order: dict[tuple[str, str, int], list[tuple[int, int]]] = defaultdict(list)
    for value, copies in reads.items():
        client, _, seq = value.rpartition(":")
        for c in copies:
            read_order[(client, c["topic"], c["partition"])].append((c["offset"], int(seq)))
    for (client, topic, partition), pairs in read_order.items():
        pairs.sort()
        for (off_a, seq_a), (off_b, seq_b) in itertools.pairwise(pairs):
            if seq_b < seq_a:  # equal: a duplicate, counted as such
                report.reordered.add(
                    f"{client} {topic}/{partition}: seq {seq_a}@{off_a} before seq "
                    f"{seq_b}@{off_b} (read back)"
                )


def _check_offsets(report: Report, by_type: dict[str, list[Event]]) -> None:
    # (group, topic, partition) -> [(time acknowledged, offset)], in time order
    acked: dict[tuple[str, str, int], list[tuple[float, int]]] = defaultdict(list)
    for e in by_type["commit"]:
        report.commits += 1
        key = (e["group"], e["topic"], e["partition"])
        if acked[key] and e["offset"] < (high := max(o for _, o in acked[key])):
            report.offsets_backwards.add(
                f"{key}: commit {e['offset']} acknowledged after commit {high} was"
            )
        acked[key].append((e["t"], e["offset"]))

    def highest_before(key: tuple[str, str, int], t: float) -> int | None:
        offsets = [o for t_ack, o in acked.get(key, []) if t_ack < t]
        return max(offsets) if offsets else None

    for e in by_type["committed"]:
        key = (e["group"], e["topic"], e["partition"])
        floor = highest_before(key, e["t0"])
        if floor is not None and e["offset"] < floor:
            report.offsets_backwards.add(
                f"{key}: read committed {e['offset']} after commit {floor} was acknowledged"
            )
    final = {
        (e["group"], e["topic"], e["partition"]): e["offset"] for e in by_type["final_committed"]
    }
    final_groups = {e["group"] for e in by_type["final_committed"]}
    for key, commits in acked.items():
        if key[0] not in final_groups:
            continue
        high = max(o for _, o in commits)
        if final.get(key, -1) < high:
            report.offsets_backwards.add(
                f"{key}: final committed {final.get(key)} below acknowledged commit {high}"
            )


def _check_topics(report: Report, by_type: dict[str, list[Event]]) -> None:
    """Each ``topics`` event is one node's final ListTopics (``node``, ``names``; names None
    when it did not answer). An acknowledged operation must be in effect on every node that
    answered."""
    listings = [e for e in by_type["topics"] if e.get("names") is not None]
    if not listings:
        if by_type["topic"]:
            report.incomplete.add("no final topic list: topic operations not judged")
        return
    last: dict[str, Event] = {}
    for e in by_type["topic"]:
        report.topic_ops += 1
        last[e["name"]] = e
    for name, e in last.items():
        if not e["ok"]:
            continue  # indeterminate: it may or may not have been applied
        wrong = [
            str(listing.get("node", "?"))
            for listing in listings
            if (name in listing["names"]) != (e["op"] == "create")
        ]
        if wrong:
            state = "missing" if e["op"] == "create" else "still there"
            report.topic_ops_lost.add(
                f"{e['op']} {name} acknowledged, topic {state} on node(s) {', '.join(wrong)}"
            )


def _failover(report: Report, acks: list[Event], faults: Iterable[Event]) -> None:
    ack_times: dict[tuple[str, int], list[float]] = defaultdict(list)
    for e in acks:
        ack_times[(e["topic"], e["partition"])].append(e["t"])
    for fault in faults:
        if fault.get("kind") != "kill":
            continue
        for topic, partition in fault.get("partitions", []):
            later = [t for t in ack_times.get((topic, partition), []) if t > fault["t"]]
            if later:
                report.failover_s.append(min(later) - fault["t"])
            else:
                report.no_ack_after_kill += 1
