"""The steps of one partition move, and when a preferred leader gets its leadership back.

Both are decided on the partition's Raft leader, from what its Raft group knows now (the
voters, learners and each member's progress) and the metadata (the target, the brokers'
states). Pure: no I/O, no clock (time is passed in). The executor
(``rilke.server.cluster.mover``) does what they say and asks again.

A move is a sequence of single-server membership changes, decided again from the group's
configuration at every step, so a move survives a leader change or a restart part-way (the
new leader finds the configuration where the old one left it):

1. a target broker that is not a member: add it as a learner;
2. a learner of the target that has caught up: promote it to voter (wait while it has not);
3. a learner that the target does not hold (left over): remove it;
4. a voter the target does not hold: remove it, or, if it is this leader, hand the
   leadership to an in-sync voter of the target first (a leader cannot remove itself);
5. the voters are the target's brokers: done, the leader reports it to the controller.

Leader balancing (:class:`LeaderBalancer`): the leader of a partition whose preferred
leader (the first replica) is another broker transfers the leadership to it once that
broker has been alive in the metadata and in sync in the group, without a break, for
``delay_s``; after a transfer it tries that partition again only after ``cooldown_s``. A
broker that flaps (fenced, back, fenced) restarts its delay every time it comes back, so
leaders do not bounce.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from rilke.replication.raft.types import PeerStatus


class StepKind(enum.Enum):
    ADD_LEARNER = "add-learner"
    PROMOTE = "promote"
    REMOVE = "remove"
    TRANSFER = "transfer-leadership"
    WAIT = "wait"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    node: int = 0
    """The member the step changes (TRANSFER: the voter to hand the leadership to)."""
    why: str = ""


def caught_up(progress: PeerStatus | None, commit_index: int) -> bool:
    """Whether a member has everything committed, as the leader sees it (the rule the Raft
    core itself applies before it lets a learner vote)."""
    return progress is not None and progress.match >= commit_index


def next_step(
    self_id: int,
    voters: Collection[int],
    learners: Collection[int],
    target: Sequence[int],
    *,
    progress: dict[int, PeerStatus],
    commit_index: int,
) -> Step:
    """The next membership step towards ``target`` on the leader ``self_id`` (see the module
    docstring). ``progress`` is the leader's view of every member, ``commit_index`` its
    commit index."""
    members = set(voters) | set(learners)
    for node in target:
        if node not in members:
            return Step(StepKind.ADD_LEARNER, node, f"add {node} as a learner")
    for node in target:
        if node in learners:
            if caught_up(progress.get(node), commit_index):
                return Step(StepKind.PROMOTE, node, f"promote learner {node}")
            return Step(StepKind.WAIT, node, f"learner {node} is catching up")
    for node in sorted(learners):
        if node not in target:
            return Step(StepKind.REMOVE, node, f"remove learner {node}")
    leaving = [v for v in sorted(voters) if v not in target]
    for node in leaving:
        if node != self_id:
            return Step(StepKind.REMOVE, node, f"remove voter {node}")
    if leaving:
        heir = next(
            (
                v
                for v in target
                if v in voters and v != self_id and caught_up(progress.get(v), commit_index)
            ),
            None,
        )
        if heir is None:
            return Step(StepKind.WAIT, self_id, "no voter of the target is in sync to lead")
        return Step(StepKind.TRANSFER, heir, f"hand the leadership to {heir} before leaving")
    return Step(StepKind.DONE, 0, f"voters are {sorted(voters)}")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A partition this node leads whose preferred leader is another broker: ``ready`` when
    that broker is alive in the metadata and in sync in the group right now."""

    group: str
    preferred: int
    ready: bool


class LeaderBalancer:
    """When to give preferred leaders their leadership back (see the module docstring).
    Not thread-safe; time in seconds from any monotonic clock, passed in."""

    def __init__(self, delay_s: float = 10.0, cooldown_s: float = 30.0) -> None:
        assert delay_s >= 0 and cooldown_s >= 0
        self.delay_s = delay_s
        self.cooldown_s = cooldown_s
        self._ready_since: dict[tuple[str, int], float] = {}
        self._last_transfer: dict[str, float] = {}

    def transfers(self, now_s: float, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The candidates whose leadership should move to the preferred leader now. Call it
        regularly with every current candidate: one missing or not ready forgets its delay."""
        due = []
        seen = set()
        for c in candidates:
            key = (c.group, c.preferred)
            if not c.ready:
                continue
            seen.add(key)
            since = self._ready_since.setdefault(key, now_s)
            if now_s - since < self.delay_s:
                continue
            last = self._last_transfer.get(c.group)
            if last is not None and now_s - last < self.cooldown_s:
                continue
            self._last_transfer[c.group] = now_s
            due.append(c)
        for key in [k for k in self._ready_since if k not in seen]:
            del self._ready_since[key]
        horizon = now_s - self.cooldown_s
        for group in [g for g, t in self._last_transfer.items() if t < horizon]:
            del self._last_transfer[group]
        return due
