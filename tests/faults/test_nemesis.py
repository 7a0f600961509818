"""The nemesis's schedules: pure in the seed, within the run, faults one at a time, pauses
longer than an election timeout, splits that leave a majority, every theme reachable."""

from __future__ import annotations

import itertools

import pytest

from tests.faults.nemesis import KINDS, PAUSE_S, THEMES, plan, schedule_text, theme_of


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
