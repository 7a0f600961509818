"""Side-by-side peer figures for `rilke bench produce --peers` and `rilke bench consume --peers`.

The peers are the scripts of the shared peers folder (``../shared/peers`` beside the project,
or ``--peers-dir`` / ``RILKE_PEERS_DIR``): ``bench_redis.py`` (Redis Streams through redis-py
and hiredis: XADD pipelined x1000, XREADGROUP NOACK) and ``bench_nats.py --mode single``
(NATS JetStream R1 through nats-py: async publish). Each runs as a child process right after
Rilke's own figure, in the same window (this machine kind is noisy: only ratios from one run
compare), with one repeat at 100 B; its servers are its own children, stopped by it.

A peer that cannot run here (no peers folder, no ``redis-server``/``nats-server`` on PATH, a
Python package missing: ``pip install 'rilke[peers]'``) is skipped with a line that says why;
a peer that fails or prints no figure is reported as failed, with the end of its output.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

PEER_TIMEOUT_S = 600.0
"""The most one peer script may take: one repeat at 100 B took under a minute on this machine
kind (2026-12-03, three peer runs and six benchmarks in under 3 minutes), 10x headroom."""


@dataclass(frozen=True)
class Peer:
    """One peer script: how to run it, what it needs, and the figures it prints."""

    name: str
    script: str
    args: tuple[str, ...]
    executables: tuple[str, ...]
    modules: tuple[str, ...]
    install_hint: str


REDIS = Peer(
    "Redis Streams",
    "bench_redis.py",
    ("--repeats", "1", "--sizes", "100"),
    ("redis-server", "redis-benchmark"),
    ("redis", "hiredis"),
    "apt-get install redis-server redis-tools",
)
NATS = Peer(
    "NATS JetStream R1",
    "bench_nats.py",
    ("--mode", "single", "--repeats", "1", "--sizes", "100"),
    ("nats-server",),
    ("nats",),
    "apt-get install nats-server",
)
NATS_R3 = Peer(
    "NATS JetStream R3",
    "bench_nats.py",
    ("--mode", "cluster", "--repeats", "1", "--sizes", "100"),
    ("nats-server",),
    ("nats",),
    "apt-get install nats-server",
)
"""Three nats-server processes on 127.0.0.1, a stream with replicas=3 (the peer of a cluster)."""

# The figures compared, as the peer scripts print them ("run 0 <name>: 71,234 msg/s ...").
XADD_PIPELINED = "XADD pipelined x1000 100B"
XREADGROUP_NOACK = "XREADGROUP COUNT 1000 NOACK 100B"
NATS_ASYNC_PUBLISH = "R1 async publish 100B"
NATS_R3_ASYNC_PUBLISH = "R3 async publish 100B"

_FIGURE = re.compile(r"^run \d+ (?P<name>[^:]+): (?P<rate>[\d,]+(?:\.\d+)?) msg/s", re.M)


@dataclass
class PeerRun:
    """What one peer script gave: its figures (msgs/s by name), or why it has none."""

    peer: Peer
    figures: dict[str, float] = field(default_factory=dict)
    skipped: str | None = None
    failed: str | None = None


def parse_figures(output: str) -> dict[str, float]:
    """The ``msg/s`` figures a peer script printed, by name (the last of each name wins)."""
    return {
        m.group("name").strip(): float(m.group("rate").replace(",", ""))
        for m in _FIGURE.finditer(output)
    }


def find_peers_dir(given: str | None = None) -> Path | None:
    """``given``, else ``RILKE_PEERS_DIR``, else ``shared/peers`` beside the project's folder
    (or beside a folder above it: a git worktree may lie deeper). None if none holds the
    peers' ``common.py``."""
    if given or os.environ.get("RILKE_PEERS_DIR"):
        chosen = Path(given or os.environ["RILKE_PEERS_DIR"])
        return chosen if (chosen / "common.py").is_file() else None
    root = Path(__file__).resolve().parents[2]
    for folder in root.parents:
        candidate = folder / "shared" / "peers"
        if (candidate / "common.py").is_file():
            return candidate
    return None


def why_not_runnable(
    peer: Peer, peers_dir: Path | None, python: str = sys.executable
) -> str | None:
    """None if ``peer`` can run here, else the reason it cannot (with what to install)."""
    if peers_dir is None:
        return "no peers folder (../shared/peers beside the project, or --peers-dir)"
    if not (peers_dir / peer.script).is_file():
        return f"{peers_dir / peer.script} does not exist"
    missing = [exe for exe in peer.executables if shutil.which(exe) is None]
    if missing:
        return f"{', '.join(missing)} not found on PATH ({peer.install_hint})"
    if python == sys.executable:
        absent = [m for m in peer.modules if importlib.util.find_spec(m) is None]
        if absent:
            return f"Python package(s) {', '.join(absent)} missing (pip install 'rilke[peers]')"
    return None


def run_peer(
    peer: Peer, peers_dir: Path | None, timeout_s: float = PEER_TIMEOUT_S, python: str = ""
) -> PeerRun:
    """Run one peer script to its end (or ``timeout_s``) and collect its figures."""
    python = python or sys.executable
    reason = why_not_runnable(peer, peers_dir, python)
    if reason is not None:
        return PeerRun(peer, skipped=reason)
    assert peers_dir is not None
    data_root = tempfile.mkdtemp(prefix="rilke-peers-")
    try:
        proc = subprocess.run(
            [python, peer.script, *peer.args],
            cwd=peers_dir,
            env={**os.environ, "PEERS_DATA": data_root},
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PeerRun(peer, failed=f"did not finish within {timeout_s:.0f} s")
    finally:
        shutil.rmtree(data_root, ignore_errors=True)
    figures = parse_figures(proc.stdout)
    if proc.returncode != 0 or not figures:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return PeerRun(
            peer, figures, failed=f"exit code {proc.returncode}: {' | '.join(tail) or 'no output'}"
        )
    return PeerRun(peer, figures)


def ratio_rows(
    rilke_msgs_per_s: float, runs: list[PeerRun], wanted: list[tuple[Peer, str, str]]
) -> list[tuple[str, str]]:
    """Table rows: each wanted peer figure (peer, figure name, label) and Rilke's ratio to it,
    or the reason it is missing."""
    rows: list[tuple[str, str]] = []
    by_peer = {run.peer.name: run for run in runs}
    for peer, figure, label in wanted:
        run = by_peer.get(peer.name)
        name = f"{peer.name} {label}"
        if run is None:
            continue
        if run.skipped is not None:
            rows.append((name, f"skipped: {run.skipped}"))
            continue
        rate = run.figures.get(figure)
        if rate is None:
            rows.append((name, f"failed: {run.failed or 'no figure ' + repr(figure)}"))
            continue
        ratio = rilke_msgs_per_s / rate if rate else float("inf")
        rows.append((name, f"{rate:,.0f} msgs/s  (Rilke {ratio:.2f}x)"))
    return rows


PRODUCE_FIGURES = [
    (REDIS, XADD_PIPELINED, "XADD pipelined x1000"),
    (NATS, NATS_ASYNC_PUBLISH, "async publish"),
]
CONSUME_FIGURES = [(REDIS, XREADGROUP_NOACK, "XREADGROUP NOACK")]
CLUSTER_PRODUCE_FIGURES = [(NATS_R3, NATS_R3_ASYNC_PUBLISH, "async publish")]
"""What a replicated topic's produce is compared with (issue 10's goal: 8x NATS R3)."""


def add_peer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--peers",
        action="store_true",
        help="then run the peers (Redis Streams, NATS JetStream R1: ../shared/peers; with a "
        "replicated topic NATS JetStream R3) in the same window and print Rilke's ratios to them",
    )
    parser.add_argument(
        "--peers-dir", metavar="DIR", help="the peers folder (default ../shared/peers)"
    )


def print_peer_table(
    title: str,
    rilke_row: tuple[str, str],
    rilke_msgs_per_s: float,
    wanted: list[tuple[Peer, str, str]],
    *,
    peers_dir: str | None,
    extra_rows: list[tuple[str, str]] | None = None,
) -> list[PeerRun]:
    """Run the peers ``wanted`` names (each script once) and print Rilke's figure beside
    theirs, with ratios. Returns the runs (for --json)."""
    from rilke.bench.common import print_table

    found = find_peers_dir(peers_dir)
    runs: list[PeerRun] = []
    for peer in dict.fromkeys(p for p, _, _ in wanted):
        print(f"running peer {peer.name} ({peer.script}) ...", flush=True)
        runs.append(run_peer(peer, found))
    rows = [rilke_row, *(extra_rows or []), *ratio_rows(rilke_msgs_per_s, runs, wanted)]
    print_table(title, rows)
    return runs
