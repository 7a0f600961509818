"""`rilke bench kafka` end to end on tiny counts, so it cannot rot: one broker with
--kafka-listen, every phase with confluent-kafka and with Rilke's client (figures are not
asserted: no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip(
    "confluent_kafka", reason="confluent-kafka is not installed (the bench and test extras)"
)

pytestmark = pytest.mark.slow
COUNT = 3000


def test_bench_kafka_runs_every_phase_with_both_clients(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, "-m", "rilke", "bench", "kafka", "-n", str(COUNT), "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    phases = {(p["phase"], p["client"]): p for p in figures["phases"]}
    assert set(phases) == {
        (phase, client)
        for phase in ("produce-acks1", "produce-acksall", "consume")
        for client in ("kafka", "rilke")
    }
    for p in phases.values():
        assert p["records"] == COUNT and p["errors"] == 0, p
        assert p["msgs_per_s"] > 0
    for phase in ("produce-acks1", "produce-acksall", "consume"):
        assert f"{phase:<16} ratio" in done.stdout
