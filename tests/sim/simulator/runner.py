"""Run one seed (safety phase with faults, heal, liveness phase), and shrink a failure.

A run is a function of ``(seed, scenario, keep)``: the seed draws the knobs and the fault
schedule; ``keep`` (positions in that schedule) replays only some of its faults. Every random
stream (network, fsync, client, each node incarnation's election timer, the schedule) is its own
``random.Random`` seeded from ``"<seed>/<stream>"``, so removing a fault perturbs the other
streams as little as possible, and a shrunk schedule usually still fails the same way.
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .checker import SafetyViolation
from .cluster import Cluster, LivenessViolation
from .faults import FAULT_KINDS, FaultEvent, FaultKnobs, draw_knobs, draw_schedule
from .network import LinkKnobs
from .trace import Trace


@dataclass(frozen=True)
class Scenario:
    """A named family of runs: knob overrides and cluster settings."""

    name: str
    overrides: dict[str, object] = field(default_factory=dict)
    compact_every: int = 0
    config: dict[str, object] = field(default_factory=dict)


def _only(*kinds: str) -> tuple[tuple[str, int], ...]:
    assert all(k in FAULT_KINDS for k in kinds)
    return tuple((k, 1) for k in kinds)


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario("random", compact_every=40),
        Scenario("ci", {"fault_until_ms": 3_000, "liveness_ms": 3_000}, compact_every=30),
        Scenario("isolate", {"fault_weights": _only("isolate", "isolate_leader")}),
        Scenario("minority", {"fault_weights": _only("partition_minority")}),
        Scenario("split", {"fault_weights": _only("split_no_majority", "partition_minority")}),
        Scenario("asymmetric", {"fault_weights": _only("asymmetric", "lossy_link")}),
        Scenario(
            "crash",
            {"fault_weights": _only("crash", "crash_leader", "slow_disk", "pause")},
            compact_every=30,
        ),
        Scenario(
            "membership",
            {
                "spares": 2,
                "fault_weights": (
                    ("add_learner", 3),
                    ("promote_learner", 3),
                    ("remove_voter", 2),
                    ("transfer_leader", 2),
                    ("isolate", 1),
                    ("crash", 1),
                    ("partition_minority", 1),
                    ("asymmetric", 1),
                ),
            },
            compact_every=30,
        ),
        # A group that starts with one voter and grows by learners (one- and two-voter
        # quorums, the single-voter shortcuts).
        Scenario("small", {"voters": 1, "spares": 2}, compact_every=30),
        # Everything harsher: frequent short faults, a slow lossy network, tiny flow-control
        # windows and uncommitted-bytes bound, frequent heartbeats.
        Scenario(
            "storm",
            {
                "voters": 5,
                "spares": 2,
                "fault_interval_ms": 80,
                "fault_max_ms": 600,
                "fsync_max_ms": 15,
                "link": LinkKnobs(
                    delay_min_ms=0,
                    delay_max_ms=40,
                    loss_probability=0.25,
                    duplicate_probability=0.15,
                    reorder_probability=0.3,
                    reorder_extra_ms=60,
                    replay_max_ms=3_000,
                ),
                "tick_jitter_ms": 3,
                "batch_probability": 0.3,
                # Offered load the small windows can carry, so liveness is about faults.
                "client_interval_ms": 40,
            },
            compact_every=15,
            config={
                "max_inflight_msgs": 3,
                "max_uncommitted_bytes": 200,
                "max_size_per_msg": 32,
                "heartbeat_timeout_ticks": 1,
            },
        ),
        # Raft paper Figure 8: leaders crash or are cut off all the time while holding long
        # uncommitted tails, and they replicate one small entry per APPEND, so a new leader's
        # old-term entries reach a quorum before its own term's do.
        Scenario(
            "fig8",
            {
                "voters": 5,
                "spares": 0,
                "fault_weights": (
                    ("crash_leader", 3),
                    ("isolate_leader", 3),
                    ("partition_minority", 1),
                    ("crash", 1),
                ),
                "fault_interval_ms": 120,
                "fault_min_ms": 50,
                "fault_max_ms": 400,
                "link": LinkKnobs(
                    delay_min_ms=1,
                    delay_max_ms=20,
                    loss_probability=0.1,
                    reorder_probability=0.2,
                    reorder_extra_ms=40,
                ),
                "client_interval_ms": 15,
                "batch_probability": 0.2,
                "fsync_max_ms": 10,
            },
            config={"max_size_per_msg": 8, "max_inflight_msgs": 1},
        ),
        # Leader lease reads (no heartbeat round): safe while clocks run at the same rate, so
        # no pauses and no clock drift here (a paused leader's clock stops; see
        # test_sim_faults).
        Scenario(
            "lease",
            {
                "fault_weights": tuple((k, 1) for k in FAULT_KINDS if k != "pause"),
                "tick_jitter_ms": 0,
            },
            compact_every=30,
            config={"read_lease": True},
        ),
    )
}


@dataclass
class RunResult:
    seed: int
    scenario: str
    keep: list[int] | None
    knobs: FaultKnobs
    schedule: list[FaultEvent]
    steps: int = 0
    sim_ms: int = 0
    failure: str | None = None
    prop: str | None = None
    failure_step: int = 0
    trace: Trace | None = None
    cluster: Cluster | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def replay_command(self) -> str:
        cmd = f"python -m tests.sim.run --seed {self.seed} --scenario {self.scenario}"
        if self.keep is not None:
            cmd += " --keep " + (",".join(map(str, self.keep)) or "none")
        return cmd + " --trace"


def draw_config(rng: random.Random) -> dict[str, object]:
    """The core's settings a seed draws (flow-control windows, heartbeat rate, commit
    broadcast); a scenario's own ``config`` pins some of them."""
    return {
        "heartbeat_timeout_ticks": rng.choice([1, 2, 3]),
        "max_inflight_msgs": rng.choice([1, 4, 16, 256]),
        "max_size_per_msg": rng.choice([16, 256, 4096]),
        "broadcast_commit": rng.choice([True, False]),
    }


def plan(seed: int, scenario: str = "random") -> tuple[FaultKnobs, list[FaultEvent]]:
    """The knobs and the full fault schedule a seed draws."""
    spec = SCENARIOS[scenario]
    knobs = draw_knobs(random.Random(f"{seed}/knobs"), **spec.overrides)
    return knobs, draw_schedule(random.Random(f"{seed}/schedule"), knobs)


def run_seed(
    seed: int,
    scenario: str = "random",
    keep: Sequence[int] | None = None,
    trace: bool = False,
) -> RunResult:
    """Run one seed to the end, or to its first violation. Never raises for a violation."""
    spec = SCENARIOS[scenario]
    knobs, schedule = plan(seed, scenario)
    active = schedule if keep is None else [schedule[i] for i in sorted(set(keep))]
    result = RunResult(seed, scenario, None if keep is None else sorted(set(keep)), knobs, schedule)

    def rng_for(name: str) -> random.Random:
        return random.Random(f"{seed}/{name}")

    recorder = Trace(enabled=trace)
    result.trace = recorder
    cluster: Cluster | None = None
    try:
        cluster = Cluster(
            knobs,
            rng_for,
            recorder,
            compact_every=spec.compact_every,
            config_overrides={**draw_config(rng_for("config")), **spec.config},
        )
        result.cluster = cluster
        the_cluster = cluster
        for event in active:
            cluster.loop.call_at(event.at_ms, _fire(the_cluster, event))
        cluster.loop.call_at(knobs.fault_until_ms, cluster.heal)
        cluster.loop.call_at(
            knobs.fault_until_ms + knobs.election_bound_ms, lambda: _require_leader(the_cluster)
        )
        cluster.start_clients()
        cluster.loop.run_until(knobs.fault_until_ms + knobs.liveness_ms)
        _require_leader(cluster)
        for node in cluster.up_nodes():
            if node.raft is not None and not node.paused and not node.raft.has_ready():
                cluster.audit_log(node)
        if cluster.client.committed == 0:
            raise LivenessViolation("no proposal committed in the whole run")
    except (SafetyViolation, LivenessViolation) as exc:
        result.failure = str(exc)
        result.prop = exc.prop
    except Exception as exc:  # a crash of the core (an assertion, a bug): a failure too
        result.failure = f"{type(exc).__name__} in the core or harness: {exc}\n" + "".join(
            traceback.format_exception(exc)[-6:]
        )
        result.prop = type(exc).__name__
    if cluster is not None:
        result.steps = cluster.loop.steps
        result.sim_ms = cluster.loop.now_ms
        result.failure_step = cluster.loop.steps
    return result


def _fire(cluster: Cluster, event: FaultEvent) -> Callable[[], None]:
    return lambda: cluster.apply_fault(event)


def _require_leader(cluster: Cluster) -> None:
    leader = cluster.leader()
    if leader is None or leader.raft is None or leader.node_id not in leader.raft.conf.voters:
        raise LivenessViolation(
            f"no leader {cluster.knobs.election_bound_ms}ms after healing at "
            f"{cluster.healed_at_ms}ms"
        )


def shrink(result: RunResult, max_runs: int = 60) -> RunResult:
    """Remove fault events while the same property still breaks (chunks, then one by one).

    Returns the smallest failing run found (with its trace recorded), within ``max_runs``
    replays. The run itself already stops at the first violating step.
    """
    assert not result.ok
    keep = list(range(len(result.schedule))) if result.keep is None else list(result.keep)
    # Faults scheduled after the violating step never fired: dropping them changes nothing.
    keep = [i for i in keep if result.schedule[i].at_ms <= result.sim_ms]
    best = result
    runs = 0
    chunk = max(1, len(keep) // 2)
    while chunk >= 1 and runs < max_runs:
        i = 0
        while i < len(keep) and runs < max_runs:
            candidate = keep[:i] + keep[i + chunk :]
            runs += 1
            attempt = run_seed(result.seed, result.scenario, candidate)
            if not attempt.ok and attempt.prop == result.prop:
                keep, best = candidate, attempt
            else:
                i += chunk
        if chunk == 1:
            break
        chunk //= 2
    final = run_seed(result.seed, result.scenario, keep, trace=True)
    if final.ok or final.prop != result.prop:
        # Not reproducible with the trace on would be a harness bug; fall back to the original.
        final = run_seed(result.seed, result.scenario, best.keep, trace=True)
    return final


def report(result: RunResult, trace_lines: int | None = 300) -> str:
    """A failure report: seed, knobs, the kept faults, the violation, the replay command and
    the last ``trace_lines`` events of the trace (all with None, none with 0)."""
    lines = [
        f"seed {result.seed} scenario {result.scenario}: {result.failure}",
        f"knobs: {result.knobs.describe()}",
        f"faults kept ({len(result.keep) if result.keep is not None else len(result.schedule)}"
        f" of {len(result.schedule)}): "
        + " ".join(
            str(result.schedule[i])
            for i in (result.keep if result.keep is not None else range(len(result.schedule)))
        ),
        f"stopped at step {result.steps}, {result.sim_ms}ms simulated",
        f"replay: {result.replay_command()}",
    ]
    if result.trace is not None and len(result.trace) and trace_lines != 0:
        lines.append(f"trace (last {trace_lines} events):" if trace_lines else "trace:")
        lines.extend(result.trace.lines(trace_lines))
    return "\n".join(lines)
