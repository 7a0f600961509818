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


def test_bench_kafka_against_a_spawned_three_node_cluster(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    command = ["bench", "kafka", "-n", str(COUNT), "--spawn-cluster", "3", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "rilke", *command, "--phases", "produce-acksall,consume"],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    figures = json.loads(out.read_text())
    assert figures["settings"]["nodes"] == 3 and figures["settings"]["replication_factor"] == 3
    assert {(p["phase"], p["client"]) for p in figures["phases"]} == {
        (phase, client) for phase in ("produce-acksall", "consume") for client in ("kafka", "rilke")
    }
    for p in figures["phases"]:
        assert p["records"] == COUNT and p["errors"] == 0, p
    assert "3 nodes, replication factor 3" in done.stdout


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--spawn-cluster", "-1"], "--spawn-cluster N needs N >= 1"),
        (["--replication-factor", "2"], "goes with --spawn-cluster"),
        (["--spawn-cluster", "2", "--replication-factor", "3"], "is above the 2 node(s)"),
        (["--spawn-cluster", "2", "--profile-dir", "x"], "not with --spawn-cluster"),
    ],
)
def test_bench_kafka_refuses_bad_cluster_arguments(extra: list[str], said: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "rilke", "bench", "kafka", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and said in done.stdout, done.stdout + done.stderr
