"""Seeded runs of the whole simulation: faults, then healing, then liveness.

CI runs a fixed budget of seeds (a mix of all faults, and a few seeds of each fault family);
the long sweep runs with ``python -m pytest tests/sim --sim-sweep N -k sweep`` (or
``python -m tests.sim.run --sweep --seeds N``). A failing seed is shrunk and reported with the
command that replays it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.sim.simulator.checker import SafetyViolation
from tests.sim.simulator.cluster import Cluster
from tests.sim.simulator.runner import RunResult, plan, report, run_seed, shrink

# (scenario, first seed, seeds): 140 seeds, about a minute on a loaded 2-core machine.
CI_BUDGET = [
    ("ci", 0, 60),
    ("isolate", 1_000, 10),
    ("minority", 2_000, 10),
    ("split", 3_000, 10),
    ("asymmetric", 4_000, 10),
    ("crash", 5_000, 10),
    ("membership", 6_000, 10),
    ("lease", 7_000, 10),
    ("storm", 8_000, 10),
    ("small", 9_000, 10),
    ("fig8", 10_000, 10),
]


def _run_many(scenario: str, seeds: range) -> tuple[int, float]:
    """Run the seeds; fail with the first failure shrunk. Returns (steps, seconds)."""
    failures: list[RunResult] = []
    steps = 0
    started = time.perf_counter()
    for seed in seeds:
        result = run_seed(seed, scenario)
        steps += result.steps
        if not result.ok:
            failures.append(result)
    elapsed = time.perf_counter() - started
    if failures:
        shrunk = shrink(failures[0], max_runs=20)
        pytest.fail(
            f"{len(failures)} of {len(seeds)} seeds failed ({scenario}): "
            f"{[(f.seed, f.prop) for f in failures]}\n\n{report(shrunk, trace_lines=200)}",
            pytrace=False,
        )
    assert steps > 0
    return steps, elapsed


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "first", "count"), CI_BUDGET)
def test_seeds_keep_raft_safe_and_live(scenario: str, first: int, count: int) -> None:
    _run_many(scenario, range(first, first + count))


@pytest.mark.sweep
def test_sweep(request: pytest.FixtureRequest) -> None:
    count = request.config.getoption("--sim-sweep")
    first = request.config.getoption("--sim-first-seed")
    steps, elapsed = _run_many("random", range(first, first + count))
    # Shown in the terminal summary by conftest.py (output is captured during the test).
    lines = getattr(request.config, "sim_sweep_lines", [])
    lines.append(
        f"sweep: {count} seeds {first}..{first + count - 1} with no violation in "
        f"{elapsed:.1f}s: {count / elapsed:.2f} seeds/s, {steps / elapsed:,.0f} steps/s"
    )
    setattr(request.config, "sim_sweep_lines", lines)  # noqa: B010


def test_a_seed_replays_exactly() -> None:
    first = run_seed(3, "ci", trace=True)
    again = run_seed(3, "ci", trace=True)
    assert first.ok and again.ok
    assert first.steps == again.steps and first.sim_ms == again.sim_ms
    assert first.trace is not None and again.trace is not None
    assert first.trace.lines() == again.trace.lines()
    other = run_seed(4, "ci")
    assert other.steps != first.steps


def test_a_run_does_real_work() -> None:
    """A seed elects leaders, commits, applies, crashes and heals: the checks are not vacuous."""
    totals = {"leaders": 0, "committed": 0, "applied": 0, "restarts": 0, "faults": 0}
    for seed in range(3):
        result = run_seed(seed, "random")
        assert result.ok, result.failure
        cluster = result.cluster
        assert cluster is not None
        stats = cluster.checker.stats
        totals["leaders"] += stats.leaders
        totals["committed"] += stats.committed_entries
        totals["applied"] += stats.applied_entries
        totals["restarts"] += stats.restarts
        totals["faults"] += sum(cluster.faults.applied.values())
    assert totals["leaders"] >= 3 and totals["committed"] > 300
    assert totals["applied"] > totals["committed"]  # every node applies
    assert totals["restarts"] > 0 and totals["faults"] > 20


def test_a_failure_is_shrunk_to_the_faults_that_cause_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A planted bug (a violation raised when a node crashes while a given node is leader) is
    reported with its seed, shrunk to a single fault, and replayed by the printed command."""
    real = Cluster.apply_fault

    def buggy(self: Cluster, event: object) -> None:
        real(self, event)  # type: ignore[arg-type]
        if getattr(event, "kind", "") == "crash":
            raise SafetyViolation("Planted", "a crash happened")

    monkeypatch.setattr(Cluster, "apply_fault", buggy)
    seed = next(s for s in range(100) if sum(e.kind == "crash" for e in plan(s, "crash")[1]) >= 2)
    result = run_seed(seed, "crash")
    assert not result.ok and result.prop == "Planted"
    shrunk = shrink(result)
    assert shrunk.prop == "Planted"
    assert shrunk.keep is not None and len(shrunk.keep) == 1
    assert shrunk.schedule[shrunk.keep[0]].kind == "crash"
    text = report(shrunk)
    assert f"--seed {seed} --scenario crash --keep {shrunk.keep[0]}" in text
    assert "crash" in text and "trace" in text
    replay = run_seed(seed, "crash", shrunk.keep)
    assert replay.prop == "Planted" and replay.steps == shrunk.steps


def test_a_disk_that_loses_acknowledged_writes_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end, the checks see a real durability bug: a disk that, at a crash, also loses
    the last entry it had acknowledged as durable (and so lets a leader lose committed data)."""
    real_crash = Cluster.crash

    def crash_losing_the_tail(self: Cluster, node_id: int) -> None:
        real_crash(self, node_id)
        storage = self.nodes[node_id].storage
        entries = storage.all_entries()
        if entries and entries[-1].index > storage.hard_state.commit:
            storage.truncate_suffix(entries[-1].first_index)

    monkeypatch.setattr(Cluster, "crash", crash_losing_the_tail)
    caught = set()
    for seed in range(40):
        result = run_seed(seed, "crash")
        if not result.ok:
            caught.add(result.prop)
        if caught & {"Leader Completeness", "Committed entry lost", "State Machine Safety"}:
            return
    raise AssertionError(f"40 seeds with a lossy disk and no safety violation seen: {caught}")


def test_the_replay_command_reproduces_a_seed_in_a_new_process() -> None:
    """The printed replay command runs in another process, with another hash seed: the run
    must not depend on either (no set-of-bytes order, no id(), no clock)."""
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONPATH": str(root), "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-m", "tests.sim.run", "--seed", "5", "--scenario", "ci"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        outputs.append([line for line in done.stdout.splitlines() if line.startswith("steps=")])
    assert outputs[0] and outputs[0] == outputs[1]
    in_process = run_seed(5, "ci")
    assert f"steps={in_process.steps} " in outputs[0][0]


def _commit_any_term(self: Any, index: int, term: int) -> bool:
    """RaftLog.maybe_commit without Raft 5.4.2's rule (Figure 8): any term's entry commits."""
    if index > self.committed and self.term(index) is not None:
        self.commit_to(index)
        return True
    return False


def _any_log_is_up_to_date(self: Any, last_index: int, last_term: int) -> bool:
    """RaftLog.is_up_to_date without the election restriction (5.4.1): vote for anyone."""
    return True


def _prev_term_ignored(self: Any, index: int, term: int) -> bool:
    """RaftLog.match_term that ignores the term (5.3's consistency check on prev_log_term)."""
    return bool(self.term(index) is not None)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "broken", "scenario"),
    [
        ("maybe_commit", _commit_any_term, "fig8"),
        ("is_up_to_date", _any_log_is_up_to_date, "random"),
        ("match_term", _prev_term_ignored, "random"),
    ],
    ids=["figure8-commit-rule", "election-restriction", "append-consistency-check"],
)
def test_a_core_with_a_classic_raft_bug_is_caught(
    monkeypatch: pytest.MonkeyPatch, method: str, broken: Callable[..., bool], scenario: str
) -> None:
    """End to end: break one rule of the paper in the core and the simulation loses a
    committed entry, which the checker reports. Uses the core's private RaftLog."""
    from rilke.replication.raft import log as raft_log

    log_class = getattr(raft_log, "RaftLog", None)
    if log_class is None or not hasattr(log_class, method):
        pytest.skip(f"the core's RaftLog.{method} changed; adapt this mutation")
    monkeypatch.setattr(log_class, method, broken)
    for seed in range(400):
        result = run_seed(seed, scenario)
        if result.prop in {
            "Leader Completeness",
            "Committed entry lost",
            "State Machine Safety",
            "Log Matching",
        }:
            return
    raise AssertionError(f"400 {scenario} seeds with a broken {method} and no violation seen")
