"""The steps of a partition move, decided again from the group's configuration at each step,
and the leader balancer's delay and cooldown (pure: a simulated group, time passed in)."""

from __future__ import annotations

import pytest

from rilke.replication.controller.move_steps import (
    Candidate,
    LeaderBalancer,
    Step,
    StepKind,
    next_step,
)
from rilke.replication.raft.types import PeerStatus, ProgressState


def status(match: int) -> PeerStatus:
    return PeerStatus(match, match + 1, ProgressState.REPLICATE, True, False, 0, 0)


class Group:
    """A group's configuration as the leader sees it; each step is applied as Raft would."""

    def __init__(self, leader: int, voters: set[int]) -> None:
        self.leader = leader
        self.voters = set(voters)
        self.learners: set[int] = set()
        self.commit = 10
        self.match = dict.fromkeys(voters, 10)

    def step(self, target: tuple[int, ...]) -> Step:
        progress = {n: status(m) for n, m in self.match.items()}
        return next_step(
            self.leader,
            self.voters,
            self.learners,
            target,
            progress=progress,
            commit_index=self.commit,
        )

    def do(self, step: Step) -> None:
        if step.kind is StepKind.ADD_LEARNER:
            self.learners.add(step.node)
            self.match[step.node] = 0
        elif step.kind is StepKind.PROMOTE:
            self.learners.discard(step.node)
            self.voters.add(step.node)
        elif step.kind is StepKind.REMOVE:
            self.voters.discard(step.node)
            self.learners.discard(step.node)
            del self.match[step.node]
        elif step.kind is StepKind.TRANSFER:
            self.leader = step.node
        elif step.kind is StepKind.WAIT:
            self.match = dict.fromkeys(self.match, self.commit)  # replication catches up


def run(group: Group, target: tuple[int, ...]) -> list[tuple[StepKind, int]]:
    done = []
    for _ in range(20):
        step = group.step(target)
        done.append((step.kind, step.node))
        if step.kind is StepKind.DONE:
            return done
        group.do(step)
    raise AssertionError(f"no end: {done}")


def test_replacing_a_follower_is_learner_catch_up_promote_remove() -> None:
    group = Group(1, {1, 2, 3})
    assert run(group, (1, 2, 4)) == [
        (StepKind.ADD_LEARNER, 4),
        (StepKind.WAIT, 4),
        (StepKind.PROMOTE, 4),
        (StepKind.REMOVE, 3),
        (StepKind.DONE, 0),
    ]
    assert group.voters == {1, 2, 4} and not group.learners


def test_the_leaving_leader_hands_over_first_and_the_new_leader_finishes() -> None:
    group = Group(3, {1, 2, 3})
    steps = run(group, (1, 2, 4))
    assert steps[-3:] == [(StepKind.TRANSFER, 1), (StepKind.REMOVE, 3), (StepKind.DONE, 0)]
    assert group.leader == 1 and group.voters == {1, 2, 4}


def test_two_new_replicas_one_change_at_a_time_and_a_leftover_learner() -> None:
    group = Group(1, {1, 2, 3})
    group.learners.add(9)  # a learner of an abandoned earlier attempt
    group.match[9] = 0
    kinds = run(group, (1, 4, 5))
    assert [k for k, _ in kinds].count(StepKind.PROMOTE) == 2
    assert (StepKind.REMOVE, 9) in kinds
    assert group.voters == {1, 4, 5} and not group.learners


def test_no_heir_in_sync_waits() -> None:
    group = Group(3, {1, 2, 3})
    group.match[1] = group.match[2] = 3
    step = group.step((1, 2))
    assert step.kind is StepKind.WAIT and "in sync" in step.why


def test_a_reordered_target_is_done_at_once() -> None:
    assert Group(1, {1, 2, 3}).step((3, 1, 2)).kind is StepKind.DONE


def test_balancer_waits_for_the_delay_and_a_flapping_broker_restarts_it() -> None:
    balancer = LeaderBalancer(delay_s=10, cooldown_s=30)
    ready = Candidate("g/0", 1, True)
    gone = Candidate("g/0", 1, False)
    assert balancer.transfers(0, [ready]) == []
    assert balancer.transfers(9.9, [ready]) == []
    assert balancer.transfers(5, [gone]) == []  # a flap: the delay starts again
    assert balancer.transfers(10, [ready]) == []
    assert balancer.transfers(19.9, [ready]) == []
    assert balancer.transfers(20, [ready]) == [ready]
    # The transfer did not happen (still a candidate): no new try inside the cooldown.
    assert balancer.transfers(30, [ready]) == []
    assert balancer.transfers(50, [ready]) == [ready]


def test_balancer_forgets_a_partition_that_is_no_longer_a_candidate() -> None:
    balancer = LeaderBalancer(delay_s=1, cooldown_s=0)
    ready = Candidate("g/1", 2, True)
    assert balancer.transfers(0, [ready]) == []
    assert balancer.transfers(0.5, []) == []
    assert balancer.transfers(1.2, [ready]) == []  # its delay started again at 1.2
    assert balancer.transfers(2.2, [ready]) == [ready]


@pytest.mark.parametrize("bad", [(-1.0, 0.0), (0.0, -1.0)])
def test_balancer_refuses_negative_times(bad: tuple[float, float]) -> None:
    with pytest.raises(AssertionError):
        LeaderBalancer(*bad)


def test_a_cancelled_move_removes_what_it_added_and_keeps_the_old_replicas() -> None:
    """Cancel = the target becomes the old replicas again, at any point of the move."""
    # Cancelled while the learner catches up: the learner is removed.
    group = Group(1, {1, 2, 3})
    group.do(group.step((1, 2, 4)))  # learner 4 added
    assert run(group, (1, 2, 3)) == [(StepKind.REMOVE, 4), (StepKind.DONE, 0)]
    assert group.voters == {1, 2, 3} and not group.learners
    # Cancelled once it was promoted: the new voter is removed.
    group = Group(1, {1, 2, 3})
    for _ in range(3):  # add, wait, promote
        group.do(group.step((1, 2, 4)))
    assert group.voters == {1, 2, 3, 4}
    assert run(group, (1, 2, 3)) == [(StepKind.REMOVE, 4), (StepKind.DONE, 0)]
    assert group.voters == {1, 2, 3}
    # Cancelled after an old replica left: it comes back as any new replica does.
    group = Group(1, {1, 2, 3})
    run(group, (1, 2, 4))
    steps = run(group, (1, 2, 3))
    assert steps[0] == (StepKind.ADD_LEARNER, 3) and group.voters == {1, 2, 3}
