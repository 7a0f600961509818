"""The nemesis's schedules: pure in the seed, within the run, faults one at a time, pauses
longer than an election timeout, splits that leave a majority, every theme reachable."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tests.faults.nemesis import (
    EXTRA_KINDS,
    KINDS,
    PAUSE_S,
    SLOW_RATES_KBIT,
    THEMES,
    plan,
    schedule_text,
    theme_of,
)
from tests.faults.run import RunResult, from_summary, rtt_lines, rtt_table, summary, table


@pytest.mark.parametrize("nodes", [[1, 2, 3], [1, 2, 3, 4, 5]])
@pytest.mark.parametrize("seed", range(0, 40, 3))
def test_schedules_are_replayable_bounded_and_sequential(seed: int, nodes: list[int]) -> None:
    steps = plan(seed, 20.0, nodes)
    assert steps == plan(seed, 20.0, nodes)  # the seed is the whole schedule
    assert steps, schedule_text(steps)
    for before, after in itertools.pairwise(steps):
        assert after.at_s >= before.at_s + before.duration_s  # one fault at a time
    assert steps[-1].at_s + steps[-1].duration_s <= 20.0
    theme = theme_of(seed)
    for step in steps:
        assert step.kind == theme or theme == "mixed"
        assert step.node in nodes
        if step.kind.startswith("pause"):
            assert step.duration_s >= PAUSE_S[0] > 2.0  # longer than the 1-2 s election timeout
        if step.kind == "split_minority":
            assert 0 < len(step.others) < len(nodes) / 2


def test_every_theme_is_some_seed_and_mixed_mixes() -> None:
    assert {theme_of(s) for s in range(len(THEMES))} == set(THEMES)
    kinds = {step.kind for seed in range(50) for step in plan(seed, 60.0, [1, 2, 3], "mixed")}
    assert kinds == set(KINDS)


def test_an_unknown_theme_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown theme 'flood'"):
        plan(1, 20.0, [1, 2, 3], "flood")


def test_slow_link_is_chosen_by_name_only_so_every_seed_keeps_its_schedule() -> None:
    assert not {theme_of(s) for s in range(1000)} & set(EXTRA_KINDS)
    mixed = {step.kind for seed in range(50) for step in plan(seed, 60.0, [1, 2, 3], "mixed")}
    assert not mixed & set(EXTRA_KINDS)
    # The seeds FINDINGS.md and CI replay: their themes as when they were written.
    assert [theme_of(s) for s in (0, 5, 77, 101, 103)] == [
        "kill_leader", "isolate_leader", "mixed", "full_disk", "mixed"
    ]  # fmt: skip
    steps = plan(7, 20.0, [1, 2, 3], "slow_link")
    assert steps and {(s.kind, s.target) for s in steps} == {("slow_link", "leader")}
    assert {s.rate_kbit for s in steps} <= set(SLOW_RATES_KBIT)
    assert {s.rate_kbit for seed in range(20) for s in plan(seed, 20.0, [1, 2, 3])} == {0}


def test_the_run_prints_what_a_slow_link_did_to_the_round_trip() -> None:
    faults = [
        {"kind": "slow_link", "node": 2, "step": 0},
        {
            "kind": "rtt",
            "node": 2,
            "rate_kbit": 512,
            "idle_ms": [0.3, 0.2, 0.4],
            "slow_ms": [120.0, 480.0, None],
        },
    ]
    assert rtt_lines(faults) == [
        "slow_link n2 at 512 kbit/s: handshake RTT idle p50 0.3 max 0.4 ms; slowed p50 120.0 max 480.0 ms, "
        "1 of 3 over 3 s (3 samples)"
    ]
    failed = {"kind": "rtt", "node": 1, "rate_kbit": 256, "idle_ms": [], "slow_ms": [None]}
    assert rtt_lines([failed]) == [
        "slow_link n1 at 256 kbit/s: handshake RTT idle no answer in 0 tries; slowed no answer in 1 tries "
        "(1 samples)"
    ]


def test_the_sweep_sums_the_round_trips_per_slow_link_rate() -> None:
    def rtt(rate: int, slow: list[float | None]) -> dict[str, object]:
        return {"kind": "rtt", "node": 1, "rate_kbit": rate, "idle_ms": [0.2], "slow_ms": slow}

    run = RunResult(1, "slow_link", 3, 20.0, [], Path("/nonexistent"))
    run.faults = [rtt(256, [100.0, 300.0]), rtt(1000, [5.0]), rtt(256, [None, 200.0])]
    assert rtt_table([run]).splitlines() == [
        "slow_link 256 kbit/s: 4 handshakes, RTT p50/p99/max 200.00/300.00/300.00 ms, "
        "1 over 3 s; idle p50 0.20 ms",
        "slow_link 1000 kbit/s: 1 handshakes, RTT p50/p99/max 5.00/5.00/5.00 ms, 0 over 3 s; "
        "idle p50 0.20 ms",
    ]
    assert rtt_table([RunResult(2, "kill_leader", 3, 20.0, [], Path("/nonexistent"))]) == ""


def test_tables_from_summaries_are_the_tables_of_the_runs() -> None:
    ok = RunResult(0, "kill_leader", 3, 20.0, [], Path("/nonexistent"), timings={"faults": 20.0})
    ok.faults = [{"kind": "kill", "node": 1, "step": 0}, {"kind": "start", "node": 1}]
    ok.report.acked_all, ok.report.acked_acks1 = 100, 50
    ok.report.lost_acks1.count = 2
    ok.report.failover_s = [0.8, 1.5]
    bad = RunResult(5, "slow_link", 5, 20.0, [], Path("/nonexistent"), stuck=["pa"])
    bad.error = "acks=all producer(s) pa got no acknowledgement"
    bad.report.duplicates.count = 3
    bad.faults = [{"kind": "rtt", "node": 2, "rate_kbit": 256, "idle_ms": [0.2], "slow_ms": [9.0]}]
    short = RunResult(6, "loss", 3, 20.0, [], Path("/nonexistent"))
    short.report.incomplete.count = 4
    runs = [ok, bad, short]
    again = [from_summary(json.loads(json.dumps(summary(r)))) for r in runs]
    assert table(again) == table(runs)
    assert rtt_table(again) == rtt_table(runs)
    assert [r.failed() for r in again] == [False, True, True]
    assert "2/50" in table(again) and "0.80/1.50/1.50" in table(again)
