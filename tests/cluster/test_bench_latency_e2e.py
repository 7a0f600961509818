"""`rilke bench produce --rate` and `rilke bench consume`'s live phase report latency beside the
bare gRPC round trip of the same run (figures are not asserted: no timings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rilke_broker_process")

REPO_ROOT = Path(__file__).resolve().parents[2]


def _rilke(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        capture_output=True,
        timeout=timeout,
        env=env,
        check=False,
    )


@pytest.mark.slow
def test_produce_at_a_rate_measures_every_record_beside_the_floor(broker, tmp_path):
    out = tmp_path / "p.json"
    r = _rilke(
        "bench", "produce", "-b", broker.address, "--rate", "400", "--duration", "0.5",
        "--linger-ms", "0", "--acks", "all", "--topic-config", "flush.messages=1",
        "--no-progress", "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["records"] > 0 and result["latency_samples"] == result["records"]
    assert result["floor_p50_ms"] > 0
    assert result["ratio_p50"] == pytest.approx(result["p50_ms"] / result["floor_p50_ms"], 0.01)
    assert b"latency / floor" in r.stdout


@pytest.mark.slow
def test_produce_at_full_speed_has_no_floor(broker, tmp_path):
    out = tmp_path / "p.json"
    r = _rilke(
        "bench", "produce", "-b", broker.address, "--count", "2000", "--no-progress",
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    assert result["records"] == 2000 and "floor_p50_ms" not in result


@pytest.mark.slow
def test_consume_live_phase_stamps_records_and_reports_the_floor(broker, tmp_path):
    out = tmp_path / "c.json"
    r = _rilke(
        "bench", "consume", "-b", broker.address, "--count", "1000", "--live-seconds", "0.5",
        "--live-rate", "400", "--no-progress", "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    result = json.loads(out.read_text())
    # Every live record carries its send time: all are measured, none from another source.
    assert result["live_records"] > 0
    assert result["settings"]["live_linger_ms"] == 0
    assert result["floor_p50_ms"] > 0 and result["ratio_p50"] > 0
    assert b"end-to-end / floor" in r.stdout
