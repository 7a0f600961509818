"""Timeline marks (rilke.timeline) and the per-hop figures of `rilke bench timeline`."""

from __future__ import annotations

from pathlib import Path

from rilke import timeline
from rilke.bench.latency_timeline import hop_figures


def test_pending_marks_take_the_key_they_are_settled_with(tmp_path: Path) -> None:
    timeline.clear()
    owner = object()
    timeline.mark_pending(owner, "send")
    timeline.settle(owner, 7)
    dropped = object()
    timeline.mark_pending(dropped, "send")
    timeline.settle(dropped, -1)  # the offset never became known: dropped
    assert [(e, k) for e, k, _ in timeline.marks()] == [("send", 7)]
    timeline.clear()


def test_hops_count_only_whole_paths_within_the_window() -> None:
    hops = ("send", "request", "done")
    marks = [
        ("send", 0, 1_000),
        ("request", 0, 3_000),
        ("done", 0, 7_000),
        ("send", 1, 10_000),  # no "done": not a whole path
        ("request", 1, 11_000),
        ("send", 2, 99_000),  # outside the window
        ("done", 2, 99_500),
    ]
    counted, rows = hop_figures(marks, hops, (0, 50_000))
    assert counted == 1
    assert {name: p50 for name, p50, _ in rows} == {
        "send -> request": 2.0,
        "request -> done": 4.0,
        "total": 6.0,
    }
