"""`rilke bench produce|consume --peers`: finding, running and reading the peer scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rilke.bench import peers
from rilke.bench.peers import Peer, PeerRun, parse_figures, ratio_rows, run_peer

OUTPUT = """run 0 XADD pipelined x100 100B: 60,100 msg/s srv 0.41 cli 0.97
run 0 XADD pipelined x1000 100B: 71,234 msg/s srv 0.44 cli 0.99
run 0 XREADGROUP COUNT 1000 NOACK 100B: 263,500 msg/s (200000 of 200000)
run 0 XADD single call 100B: p50 80us p99 150us
"""


def fake_peer(tmp_path: Path, body: str, name: str = "fake") -> tuple[Peer, Path]:
    (tmp_path / "common.py").write_text("")
    (tmp_path / "bench_fake.py").write_text(body)
    peer = Peer(name, "bench_fake.py", ("--repeats", "1"), (), (), "nothing to install")
    return peer, tmp_path


def test_figures_are_read_from_the_lines_peer_scripts_print() -> None:
    assert parse_figures(OUTPUT) == {
        "XADD pipelined x100 100B": 60100.0,
        "XADD pipelined x1000 100B": 71234.0,
        "XREADGROUP COUNT 1000 NOACK 100B": 263500.0,
    }


def test_a_peer_script_runs_in_its_folder_and_its_figures_come_back(tmp_path: Path) -> None:
    body = (
        "import os, sys\n"
        "assert os.path.exists('common.py') and sys.argv[1:] == ['--repeats', '1']\n"
        "assert os.path.isdir(os.environ['PEERS_DATA'])\n"
        f"print({OUTPUT!r})\n"
    )
    peer, folder = fake_peer(tmp_path, body)
    run = run_peer(peer, folder)
    assert run.skipped is None and run.failed is None
    assert run.figures["XADD pipelined x1000 100B"] == 71234.0


def test_a_failing_peer_says_how_it_failed(tmp_path: Path) -> None:
    peer, folder = fake_peer(
        tmp_path, "import sys\nprint('port 16390 in use', file=sys.stderr)\nsys.exit(3)\n"
    )
    run = run_peer(peer, folder)
    assert run.failed is not None and "exit code 3" in run.failed and "16390" in run.failed


def test_a_peer_that_cannot_run_is_skipped_with_the_reason(tmp_path: Path) -> None:
    assert "no peers folder" in (run_peer(peers.REDIS, None).skipped or "")
    peer, folder = fake_peer(tmp_path, "")
    missing_exe = Peer("x", peer.script, (), ("no-such-server-here",), (), "apt-get install x")
    assert run_peer(missing_exe, folder).skipped == (
        "no-such-server-here not found on PATH (apt-get install x)"
    )
    missing_module = Peer("x", peer.script, (), (), ("no_such_module_here",), "")
    assert "no_such_module_here missing (pip install 'rilke[peers]')" in (
        run_peer(missing_module, folder).skipped or ""
    )
    no_script = Peer("x", "bench_none.py", (), (), (), "")
    assert "does not exist" in (run_peer(no_script, folder).skipped or "")


def test_the_peers_folder_is_found_from_the_flag_then_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "common.py").write_text("")
    assert peers.find_peers_dir(str(tmp_path)) == tmp_path
    monkeypatch.setenv("RILKE_PEERS_DIR", str(tmp_path))
    assert peers.find_peers_dir() == tmp_path
    assert peers.find_peers_dir(str(tmp_path / "absent")) is None


def test_ratios_are_rilkes_rate_over_the_peers() -> None:
    runs = [
        PeerRun(peers.REDIS, {peers.XADD_PIPELINED: 100_000.0}),
        PeerRun(peers.NATS, skipped="nats-server not found on PATH"),
    ]
    rows = dict(ratio_rows(350_000.0, runs, peers.PRODUCE_FIGURES))
    assert rows["Redis Streams XADD pipelined x1000"] == "100,000 msgs/s  (Rilke 3.50x)"
    assert rows["NATS JetStream R1 async publish"] == "skipped: nats-server not found on PATH"
    failed = [PeerRun(peers.REDIS, {}, failed="exit code 1: boom")]
    assert dict(ratio_rows(1.0, failed, peers.CONSUME_FIGURES)) == {
        "Redis Streams XREADGROUP NOACK": "failed: exit code 1: boom"
    }
