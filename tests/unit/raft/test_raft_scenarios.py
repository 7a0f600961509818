"""Data-driven Raft scenarios (testdata/*.txt); RILKE_REWRITE=1 regenerates the expectations."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.raft.scenario import run_file

TESTDATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(TESTDATA.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    failures = run_file(path)
    assert not failures, "\n\n".join(failures)
