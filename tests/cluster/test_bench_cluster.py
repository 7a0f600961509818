"""The cluster benchmarks run against real spawned clusters and leave nothing behind
(`rilke bench produce --spawn-cluster`, `rilke bench cluster-idle`; figures are not asserted:
no timings). Each bench runs with TMPDIR in the test's directory, so its nodes' data
directories and command lines name that directory and what outlives the bench can be found."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rilke_broker_process")

REPO_ROOT = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path) -> dict[str, str]:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(scratch)}


def _rilke(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(tmp_path),
        check=False,
    )


def _servers_under(folder: Path) -> list[int]:
    """Pids of live processes whose command line names ``folder`` (the bench's nodes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(folder).encode() in cmdline and b" server " in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} not within {timeout_s} s"
        time.sleep(0.1)


def _nothing_left(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    _wait_for(lambda: not _servers_under(scratch), 30, "every node stopped")
    assert not list(scratch.glob("rilke-bench-cluster-*"))


@pytest.mark.slow
def test_produce_on_a_spawned_cluster_with_replication_factor_three(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = _rilke(
        tmp_path, "bench", "produce", "--spawn-cluster", "3", "--acks", "all",
        "--partitions", "2", "--count", "2000", "--half-rate", "--no-progress",
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["records"] == 2000 and result["errors"] == 0
    assert result["settings"]["replication_factor"] == 3
    assert result["settings"]["spawn_cluster"] == 3
    assert "of replication factor 3 on 3 spawned nodes" in r.stdout
    assert result["half_rate"]["rate"] > 0 and result["half_rate"]["p99_ms"] > 0
    _nothing_left(tmp_path)


@pytest.mark.slow
def test_bad_spawn_arguments_start_nothing(tmp_path: Path) -> None:
    r = _rilke(tmp_path, "bench", "produce", "--spawn-cluster", "2", "--replication-factor", "3")
    assert r.returncode == 2
    assert "more than the 2 node(s)" in r.stdout
    _nothing_left(tmp_path)


@pytest.mark.slow
def test_sigterm_to_the_bench_stops_every_node(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    command = [
        sys.executable, "-m", "rilke", "bench", "produce", "--spawn-cluster", "3",
        "--duration", "120", "--rate", "100", "--no-floor", "--no-progress",
    ]  # fmt: skip
    proc = subprocess.Popen(
        command,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: len(_servers_under(scratch)) == 3, 120, "three nodes up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
        _nothing_left(tmp_path)
    finally:
        proc.kill()
        for pid in _servers_under(scratch):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_cluster_idle_measures_every_node_with_and_without_partitions(tmp_path: Path) -> None:
    out = tmp_path / "idle.json"
    r = _rilke(
        tmp_path, "bench", "cluster-idle", "--partitions", "6", "--per-topic", "4",
        "--idle-s", "0.5", "--settle-s", "0", "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    result = json.loads(out.read_text())
    assert result["replication_factor"] == 3 and result["partitions"] == 6
    for phase in ("no_partitions", "with_partitions"):
        assert len(result[phase]["cpu_core_share"]) == 3
        assert all(rss > 0 for rss in result[phase]["rss_bytes"])
    _nothing_left(tmp_path)


@pytest.mark.slow
def test_a_node_that_cannot_start_is_named_and_its_log_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import tempfile

    from rilke.bench.cluster_spawn import ClusterError, SpawnedCluster

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cluster = SpawnedCluster(2, extra_args=["--no-such-flag"])
    with pytest.raises(ClusterError, match=r"node 1 did not start .*node-1\.log") as caught:
        cluster.__enter__()
    root = next(tmp_path.glob("rilke-bench-cluster-*"))
    assert "--no-such-flag" in (root / "node-1.log").read_text()
    assert not (root / "node-1").exists()  # data removed, log kept
    assert str(root / "node-1.log") in str(caught.value)
    assert not _servers_under(tmp_path)
    shutil.rmtree(root)


@pytest.mark.slow
def test_failover_writes_again_after_the_leader_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "failover.json"
    r = _rilke(
        tmp_path, "bench", "failover", "--rate", "200", "--before-s", "2", "--after-s", "12",
        "--json", str(out),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    (round_,) = json.loads(out.read_text())["rounds"]
    assert round_["first_ack_s"] > 0 and round_["election_s"] > 0
    assert round_["sent"] == round_["acknowledged"] > 0  # nothing failed, nothing unresolved
    assert round_["duplicate_offsets"] == 0
    assert "kill to first acknowledged write" in r.stdout
    _nothing_left(tmp_path)
