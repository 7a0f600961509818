"""Named, seeded fault knobs and the fault schedule drawn from them.

Every fault is a knob with a name (TigerBeetle's packet simulator and storage faults are the
model): the run's :class:`FaultKnobs` are drawn from the seed, and the schedule of timed
:class:`FaultEvent` is drawn from the knobs before the run starts. A schedule is a plain list,
so a failing run can be replayed with some of its events removed (shrinking): an event is named
by its position in the original schedule.

Targets that only make sense at the moment a fault fires ("the current leader", "a learner to
promote") are resolved then, from the cluster's state, which is itself determined by the seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .network import LinkKnobs

# The fault kinds, with what each does. Each lasts ``duration_ms`` where that makes sense,
# then the cluster undoes it (heals the links, restarts the node, resumes it).
FAULT_KINDS: dict[str, str] = {
    "isolate": "cut one node off from all others, both ways",
    "isolate_leader": "cut the current leader off from all others, both ways",
    "partition_minority": "split the voters into a minority and a majority",
    "split_no_majority": "split the nodes into groups none of which holds a majority",
    "asymmetric": "cut some directed links one way only",
    "lossy_link": "one directed link loses most of its messages",
    "crash": "crash one node (unsynced writes lost), restart it later",
    "crash_leader": "crash the current leader, restart it later",
    "pause": "stop one node's clock and inbox (a GC or VM pause), then resume it",
    "slow_disk": "one node's writes take much longer to reach stable storage",
    "transfer_leader": "ask the leader to hand leadership to another voter",
    "add_learner": "add a spare node as a learner (a non-voting member)",
    "promote_learner": "promote a caught-up learner to voter",
    "remove_voter": "remove one voter (never below three voters)",
}


@dataclass(frozen=True)
class FaultEvent:
    """One scheduled fault: ``kind`` at ``at_ms`` for ``duration_ms``; ``seed`` picks targets."""

    at_ms: int
    kind: str
    duration_ms: int
    seed: int

    def __str__(self) -> str:
        return f"{self.kind}@{self.at_ms}ms+{self.duration_ms}ms"


@dataclass(frozen=True)
class FaultKnobs:
    """Everything about one run that is drawn from its seed, by name."""

    voters: int = 3
    spares: int = 1
    # Safety phase: faults happen in [0, fault_until_ms); then everything heals.
    fault_until_ms: int = 6_000
    # Liveness phase: after healing, a leader within this bound, and every proposal made after
    # healing committed within ``commit_bound_ms`` of being made.
    election_bound_ms: int = 3_000
    commit_bound_ms: int = 3_000
    liveness_ms: int = 4_000
    tick_ms: int = 10
    link: LinkKnobs = field(default_factory=LinkKnobs)
    fault_interval_ms: int = 400
    fault_min_ms: int = 100
    fault_max_ms: int = 1_500
    fault_weights: tuple[tuple[str, int], ...] = tuple((k, 1) for k in FAULT_KINDS)
    fsync_min_ms: int = 0
    fsync_max_ms: int = 3
    slow_fsync_ms: int = 60
    client_interval_ms: int = 20
    client_retry_ms: int = 300
    pause_max_ms: int = 800
    # Each node's clock runs at tick_ms plus up to this many ms of drift per tick (0 = none).
    tick_jitter_ms: int = 0
    # A crash during a write keeps a prefix of it (snapshot, truncation, some entries, but not
    # the hard state) with this probability; otherwise it loses the whole write.
    torn_write_probability: float = 0.0
    # The share of client proposals that carry several entries in one propose() call.
    batch_probability: float = 0.0

    def describe(self) -> str:
        link = self.link
        return (
            f"voters={self.voters} spares={self.spares} faults_until={self.fault_until_ms}ms "
            f"every~{self.fault_interval_ms}ms delay={link.delay_min_ms}-{link.delay_max_ms}ms "
            f"loss={link.loss_probability:.2f} dup={link.duplicate_probability:.2f} "
            f"reorder={link.reorder_probability:.2f} fsync={self.fsync_min_ms}-"
            f"{self.fsync_max_ms}ms replay<={link.replay_max_ms}ms "
            f"tick_jitter={self.tick_jitter_ms}ms batch={self.batch_probability:.1f} "
            f"torn={self.torn_write_probability:.1f}"
        )


def draw_knobs(rng: random.Random, **overrides: object) -> FaultKnobs:
    """Draw a run's knobs from its seed; ``overrides`` pin any of them by name."""
    link = LinkKnobs(
        delay_min_ms=rng.randint(0, 3),
        delay_max_ms=rng.randint(4, 25),
        loss_probability=rng.choice([0.0, 0.01, 0.05, 0.1, 0.2]),
        duplicate_probability=rng.choice([0.0, 0.01, 0.05, 0.1]),
        reorder_probability=rng.choice([0.0, 0.05, 0.2]),
        reorder_extra_ms=rng.randint(5, 80),
        replay_max_ms=rng.choice([0, 200, 2_000]),
    )
    knobs = FaultKnobs(
        voters=rng.choice([3, 3, 5]),
        spares=rng.choice([0, 1, 2]),
        link=link,
        fault_interval_ms=rng.choice([150, 300, 600]),
        fault_max_ms=rng.choice([500, 1_500, 3_000]),
        fsync_max_ms=rng.choice([0, 2, 8]),
        client_interval_ms=rng.choice([5, 20, 50]),
        tick_jitter_ms=rng.choice([0, 0, 1, 3]),
        batch_probability=rng.choice([0.0, 0.2]),
        torn_write_probability=rng.choice([0.0, 0.5, 1.0]),
    )
    if overrides:
        fields = {**knobs.__dict__, **overrides}
        knobs = FaultKnobs(**fields)
    return knobs


def draw_schedule(rng: random.Random, knobs: FaultKnobs) -> list[FaultEvent]:
    """The timed faults of the safety phase, in time order."""
    kinds = [k for k, w in knobs.fault_weights for _ in range(w)]
    if not kinds:
        return []
    events = []
    at = 0
    while True:
        at += rng.randint(1, 2 * knobs.fault_interval_ms)
        if at >= knobs.fault_until_ms:
            break
        kind = rng.choice(kinds)
        duration = rng.randint(knobs.fault_min_ms, knobs.fault_max_ms)
        events.append(FaultEvent(at, kind, duration, rng.getrandbits(32)))
    return events
