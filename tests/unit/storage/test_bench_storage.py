"""Smoke test of `rilke bench storage` on a tiny log (figures are not asserted: no timings)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rilke.cli.main import main


@pytest.mark.slow
def test_bench_storage_runs_and_writes_its_figures(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    code = main(
        [
            "--log-level",
            "WARNING",
            "bench",
            "storage",
            "--size-mb",
            "3",
            "--segment-mb",
            "1",
            "--no-progress",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ]
    )
    assert code == 0
    figures = json.loads(out.read_text())
    assert set(figures) >= {"append", "append_fsync_1mib", "read", "open_clean", "open_after_kill"}
    assert figures["read"]["bytes"] == figures["append"]["bytes"]
    assert figures["open_clean"]["segments_scanned"] == []
    assert figures["open_after_kill"]["only_past_checkpoint"] is True
    assert [p.name for p in tmp_path.iterdir()] == ["figures.json"]
