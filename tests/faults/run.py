"""Fault runs: a cluster in a bed, clients writing histories, the nemesis, the heal, the
read-back and the checker; and a table per fault type over many runs.

    python -m tests.faults.run --runs 100 [--seed S] [--nodes 3|5] [--seconds N] [--theme T]

Needs root and `ip` (network namespaces). Run ``i`` has seed ``S + i`` (S defaults to a
random one, printed); the seed picks the run's theme (one fault kind, or a mix) and its whole
schedule, so ``--seed S --runs 1`` replays run S. A failing run prints its seed, schedule and
findings, keeps its directory (node logs, histories) and makes the exit code 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.checker import MUST_BE_ZERO, Event, Report, check, percentile
from tests.faults.firewall import Firewall
from tests.faults.nemesis import (
    ALL_THEMES,
    Nemesis,
    Step,
    plan,
    schedule_text,
    steps_json,
    theme_of,
)
from tests.faults.netns import Testbed, cleanup_stale, unavailable_reason
from tests.faults.nodes import REPO_ROOT, ClusterError, FaultCluster, child_env

log = logging.getLogger(__name__)

TOPIC = "faults"
PARTITIONS = 3
GROUP = "faults-group"
FORM_TIMEOUT_S = 90.0
SETTLE_TIMEOUT_S = 60.0
PROGRESS_TIMEOUT_S = 30.0
"""After the heal, each producer must get an acknowledgement within this (liveness)."""
CLIENT_EXIT_TIMEOUT_S = 60.0
FINAL_TIMEOUT_S = 240.0
TOPIC_LISTS_TIMEOUT_S = 30.0
"""How long the nodes' ListTopics answers may take to agree after the read-back."""
RATE_PER_PRODUCER = 100
PRODUCERS = (("pa", "all"), ("pb", "all"), ("p1", "1"))


@dataclass
class RunResult:
    seed: int
    theme: str
    nodes: int
    seconds: float
    steps: list[Step]
    workdir: Path
    faults: list[dict[str, Any]] = field(default_factory=list)
    report: Report = field(default_factory=Report)
    unavailable: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    settled: bool = False
    progressed: bool = False
    stuck: list[str] = field(default_factory=list)
    """Producers with no acknowledgement after the heal: a run error for acks=all ones; an
    acks=1 one is reported (FINDINGS.md 4: its sequence stays refused after a lost write)."""
    prefix: str = ""  # the bed's name prefix: what it made is named so
    timings: dict[str, float] = field(default_factory=dict)
    """Where the run's wall time went: phase -> seconds, in the order they ran."""

    def failed(self) -> bool:
        """A violation, a harness/liveness error, or a read-back too incomplete to judge."""
        return self.error is not None or not self.report.ok() or self.report.incomplete.count > 0

    def injected(self) -> int:
        return sum(
            1 for f in self.faults if "step" in f and "skipped" not in f and "unavailable" not in f
        )

    def describe(self) -> str:
        lines = [
            f"run seed={self.seed} theme={self.theme} nodes={self.nodes} "
            f"seconds={self.seconds}: {'FAILED' if self.failed() else 'ok'}"
            f"  (replay: python -m tests.faults.run --runs 1 --seed {self.seed} "
            f"--nodes {self.nodes} --seconds {self.seconds:g})",
            "schedule:",
            schedule_text(self.steps),
            self.report.describe(),
        ]
        if self.error:
            lines.append(f"  harness/liveness: {self.error}")
        if not self.settled or not self.progressed:
            lines.append(f"  settled={self.settled}; no ack after the heal: {self.stuck}")
        for kind, reason in self.unavailable.items():
            lines.append(f"  {kind}: unavailable: {reason}")
        lines += [f"  {line}" for line in rtt_lines(self.faults)]
        if self.timings:
            spent = ", ".join(f"{k} {v:.1f}" for k, v in self.timings.items())
            lines.append(f"  time (s): {spent}; total {sum(self.timings.values()):.1f}")
        if self.failed():
            lines.append(f"  kept: {self.workdir}")
        return "\n".join(lines)


def summary(result: RunResult) -> dict[str, Any]:
    """One run as a JSON object (``--summary``): what ``table`` and ``rtt_table`` count, so
    tables over several sweeps can be made from their files (tests/faults/run.py --tables)."""
    report = result.report
    return {
        "seed": result.seed, "theme": result.theme, "nodes": result.nodes,
        "seconds": result.seconds, "failed": result.failed(), "error": result.error,
        "stuck": result.stuck, "injected": result.injected(),
        "unavailable": result.unavailable, "acked_all": report.acked_all,
        "acked_acks1": report.acked_acks1, "lost_acks1": report.lost_acks1.count,
        **{name: getattr(report, name).count for name in MUST_BE_ZERO},
        "failover_s": report.failover_s, "timings": result.timings,
        "rtt": [f for f in result.faults if f.get("kind") == "rtt"],
    }  # fmt: skip


def from_summary(entry: dict[str, Any]) -> RunResult:
    """A RunResult carrying what ``table`` and ``rtt_table`` read, from ``summary``'s JSON."""
    result = RunResult(entry["seed"], entry["theme"], entry["nodes"], entry["seconds"], [],
                       Path("."), error=entry["error"], stuck=entry["stuck"],
                       unavailable=entry["unavailable"], timings=entry["timings"])  # fmt: skip
    result.faults = [{"step": i} for i in range(entry["injected"])] + entry["rtt"]
    report = result.report
    report.acked_all, report.acked_acks1 = entry["acked_all"], entry["acked_acks1"]
    report.lost_acks1.count = entry["lost_acks1"]
    for name in MUST_BE_ZERO:
        getattr(report, name).count = entry[name]
    report.failover_s = list(entry["failover_s"])
    if entry["failed"] and result.error is None and report.ok():
        report.incomplete.count = 1  # the one way left to fail: a read-back too incomplete
    return result


def _rtt_figures(samples: list[float | None]) -> str:
    got = [s for s in samples if s is not None]
    if not got:
        return f"no answer in {len(samples)} tries"
    text = f"p50 {percentile(got, 50):.1f} max {max(got):.1f} ms"
    if failed := len(samples) - len(got):
        text += f", {failed} of {len(samples)} over 3 s"
    return text


def rtt_lines(faults: list[dict[str, Any]]) -> list[str]:
    """What each slow link did to the round trip: the TCP handshake time to the slowed node
    before it (idle) and while it was on (nemesis ``rtt`` events); how many packets each
    delay held (``delayed`` events)."""
    return [
        f"slow_link n{f['node']} at {f.get('rate_kbit', '?')} kbit/s: handshake RTT idle "
        f"{_rtt_figures(f['idle_ms'])}; "
        f"slowed {_rtt_figures(f['slow_ms'])} ({len(f['slow_ms'])} samples)"
        for f in faults
        if f.get("kind") == "rtt"
    ] + [
        f"delay n{f['node']} {f['delay_ms']} ms: {f['packets']} packets held"
        for f in faults
        if f.get("kind") == "delayed"
    ]


def rtt_table(results: list[RunResult]) -> str:
    """Per slow-link rate: links slowed, handshake samples, RTT p50/p99/max while slowed,
    those over 3 s, and the idle p50 measured just before."""
    idle: dict[int, list[float]] = defaultdict(list)
    slow: dict[int, list[float | None]] = defaultdict(list)
    for r in results:
        for f in r.faults:
            if f.get("kind") == "rtt":
                idle[f["rate_kbit"]] += [s for s in f["idle_ms"] if s is not None]
                slow[f["rate_kbit"]] += f["slow_ms"]
    lines = []
    for rate in sorted(slow):
        got = [s for s in slow[rate] if s is not None]
        figures = "/".join(_fmt(percentile(got, q)) for q in (50, 99, 100))
        lines.append(
            f"slow_link {rate} kbit/s: {len(slow[rate])} handshakes, RTT p50/p99/max "
            f"{figures} ms, {len(slow[rate]) - len(got)} over 3 s; idle p50 "
            f"{_fmt(percentile(idle[rate], 50))} ms"
        )
    return "\n".join(lines)


class _Clock:
    """Phase timings: ``mark(name)`` charges the time since the last mark to ``name``."""

    def __init__(self, into: dict[str, float]) -> None:
        self.into = into
        self.last = time.monotonic()

    def mark(self, name: str) -> None:
        now = time.monotonic()
        self.into[name] = self.into.get(name, 0.0) + now - self.last
        self.last = now


def _read_events(paths: list[Path]) -> list[Event]:
    events: list[Event] = []
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            for line in path.read_text().splitlines():
                with contextlib.suppress(ValueError):  # a torn last line of a killed client
                    events.append(json.loads(line))
    return events


class _Clients:
    def __init__(self, bed: Testbed, cluster: FaultCluster, root: Path, hard_s: float) -> None:
        self.bed, self.cluster, self.root, self.hard_s = bed, cluster, root, hard_s
        self.stop_file = root / "stop"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.outputs: list[Path] = []

    def start(self, role: str, name: str, *extra: str, seconds: float | None = None) -> Path:
        out = self.root / f"{name}.jsonl"
        argv = [
            sys.executable, "-m", "tests.faults.clients", role,
            "--bootstrap", self.cluster.bootstrap, "--out", str(out), "--client", name,
            "--seconds", str(self.hard_s if seconds is None else seconds),
            "--stop-file", str(self.stop_file), *extra,
        ]  # fmt: skip
        with open(self.root / f"{name}.log", "ab") as log_file:
            self.procs[name] = self.bed.popen(
                "client", argv, stdout=log_file, env=child_env(), cwd=REPO_ROOT
            )
        self.outputs.append(out)
        return out

    def wait(self, names: list[str], timeout_s: float) -> list[str]:
        """Wait for ``names`` to exit; kill those still running at the deadline (returned)."""
        deadline = time.monotonic() + timeout_s
        late = []
        for name in names:
            try:
                self.procs[name].wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.procs[name].kill()
                self.procs[name].wait(10)
                late.append(name)
        return late


def _acked_since(path: Path, since: float) -> bool:
    return any(e["type"] == "ack" and e["t"] > since for e in _read_events([path]))


def run_once(
    seed: int, nodes: int, seconds: float, root: Path, theme: str | None = None
) -> RunResult:
    """One run in ``root`` (made; the caller removes it). Never raises for what the cluster
    or the harness does: a cluster that does not form or settle, or a fault that could not be
    made, is the result's ``error`` (Ctrl-C and SystemExit still end it, bed removed)."""
    ids = list(range(1, nodes + 1))
    theme = theme or theme_of(seed)
    steps = plan(seed, seconds, ids, theme)
    result = RunResult(seed, theme, nodes, seconds, steps, root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "schedule.json").write_text(json.dumps({"seed": seed, "theme": theme,
                                                    "steps": steps_json(steps)}))  # fmt: skip
    replicas = min(3, nodes)
    clock = _Clock(result.timings)
    with Testbed([*(f"n{i}" for i in ids), "client"]) as bed:
        result.prefix = bed.prefix
        clock.mark("bed")
        cluster = FaultCluster(bed, root, ids)
        firewall = Firewall(bed)
        nemesis = Nemesis(cluster, firewall, TOPIC, [TOPIC])
        clients = _Clients(bed, cluster, root, seconds + SETTLE_TIMEOUT_S + PROGRESS_TIMEOUT_S)
        try:
            cluster.start_all()
            cluster.wait_healthy(FORM_TIMEOUT_S)
            clock.mark("form")
            cluster.create_topic(TOPIC, PARTITIONS, replicas, 30)
            cluster.wait_leaders(TOPIC, PARTITIONS, 30)
            clock.mark("topic")
            producer_out = {}
            for name, acks in PRODUCERS:
                producer_out[name] = clients.start("producer", name, "--topic", TOPIC,
                                                   "--acks", acks, "--rate", str(RATE_PER_PRODUCER))  # fmt: skip
            clients.start("consumer", "c1", "--topic", TOPIC, "--group", GROUP)
            clients.start("admin", "adm", "--replicas", str(replicas))
            clock.mark("clients start")
            started = time.monotonic()
            nemesis.run(steps, started, stop=lambda: False)
            remaining = started + seconds - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)  # the run's length: traffic without faults to its end
            clock.mark("faults")
            nemesis.heal_all()
            healed = time.monotonic()
            try:
                cluster.wait_healthy(SETTLE_TIMEOUT_S, ids)
                result.settled = True
            except ClusterError as exc:
                result.error = f"did not settle after the heal: {str(exc)[:2000]}"
            clock.mark("settle")
            deadline = time.monotonic() + PROGRESS_TIMEOUT_S
            stuck = dict(producer_out)
            while stuck and time.monotonic() < deadline:
                stuck = {n: p for n, p in stuck.items() if not _acked_since(p, healed)}
                if stuck:
                    time.sleep(0.5)
            result.stuck = sorted(stuck)
            clock.mark("first acks")
            result.progressed = not stuck
            acks_all_stuck = [n for n in stuck if dict(PRODUCERS)[n] == "all"]
            if acks_all_stuck and result.error is None:
                result.error = (
                    f"acks=all producer(s) {', '.join(acks_all_stuck)} got no acknowledgement "
                    f"within {PROGRESS_TIMEOUT_S} s of the heal"
                )
            clients.stop_file.touch()
            clients.wait(list(clients.procs), CLIENT_EXIT_TIMEOUT_S)
            clock.mark("clients exit")
            clients.start("final", "final", "--topic-list", TOPIC, "--group-list", GROUP,
                          seconds=FINAL_TIMEOUT_S)  # fmt: skip
            if clients.wait(["final"], FINAL_TIMEOUT_S):
                result.error = (result.error or "") + "; the final read-back did not end in time"
            clock.mark("read-back")
            topics_path = root / "topics.jsonl"
            with open(topics_path, "w") as stream:
                for node_id, names in cluster.topic_lists(TOPIC_LISTS_TIMEOUT_S).items():
                    event = {"t": time.monotonic(), "type": "topics", "node": node_id,
                             "names": names}  # fmt: skip
                    stream.write(json.dumps(event) + "\n")
            clients.outputs.append(topics_path)
            clock.mark("topic lists")
        except ClusterError as exc:
            result.error = f"harness: {str(exc)[:3000]}"
        except Exception as exc:  # a harness failure ends this run, not the sweep
            log.exception("run %d: harness failure", seed)
            result.error = f"harness: {type(exc).__name__}: {exc}"
        finally:
            result.faults = nemesis.faults
            result.unavailable = nemesis.unavailable
            cluster.close()
            clock.mark("stop")
    clock.mark("bed removal")
    (root / "faults.json").write_text(json.dumps(result.faults, indent=1))
    result.report = check(_read_events(clients.outputs), result.faults)
    clock.mark("check")
    (root / "report.txt").write_text(result.describe() + "\n")
    return result


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(results: list[RunResult]) -> str:
    """One row per theme (and a total): runs, failures, faults injected, acknowledged
    acks=all writes, each must-be-zero finding, acks=1 losses, failover p50/p99/max."""
    short = {"lost": "lost", "duplicates": "dup", "reordered": "reord", "moved": "moved",
             "unknown_reads": "unknown", "offsets_backwards": "offs<", "topic_ops_lost": "topics"}  # fmt: skip
    header = ["fault", "runs", "failed", "faults", "acked", *short.values(), "acks1 lost",
              "failover p50/p99/max s", "note"]  # fmt: skip
    groups: dict[str, list[RunResult]] = defaultdict(list)
    for r in results:
        groups[r.theme].append(r)
    rows = []
    for theme in [*sorted(groups), "total"]:
        runs = results if theme == "total" else groups[theme]
        failover = [s for r in runs for s in r.report.failover_s]
        notes = sorted({f"{k}: {v}" for r in runs for k, v in r.unavailable.items()})
        errors = sum(1 for r in runs if r.error)
        if errors:
            notes.append(f"{errors} run(s) with harness/liveness errors")
        if stuck := sum(1 for r in runs if r.stuck):
            notes.append(f"{stuck} run(s) with a producer stuck after the heal")
        rows.append([
            theme, str(len(runs)), str(sum(r.failed() for r in runs)),
            str(sum(r.injected() for r in runs)), str(sum(r.report.acked_all for r in runs)),
            *(str(sum(getattr(r.report, name).count for r in runs)) for name in MUST_BE_ZERO),
            f"{sum(r.report.lost_acks1.count for r in runs)}/"
            f"{sum(r.report.acked_acks1 for r in runs)}",
            "/".join(_fmt(percentile(failover, q)) for q in (50, 99, 100)),
            "; ".join(notes),
        ])  # fmt: skip
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def run_many(
    runs: int,
    seed: int,
    nodes: int,
    seconds: float,
    theme: str | None = None,
    keep: bool = False,
    summary_path: Path | None = None,
) -> list[RunResult]:
    results = []
    for i in range(runs):
        root = Path(tempfile.mkdtemp(prefix=f"rilke-faults-{seed + i}-"))
        result = run_once(seed + i, nodes, seconds, root, theme)
        results.append(result)
        print(result.describe(), flush=True)
        if summary_path is not None:
            with open(summary_path, "a") as stream:
                stream.write(json.dumps(summary(result)) + "\n")
        if not result.failed() and not keep:
            shutil.rmtree(root, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=None, help="first run's seed (default random)")
    parser.add_argument("--nodes", type=int, choices=[3, 5], default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="faults phase of each run")
    parser.add_argument("--theme", default=None, choices=ALL_THEMES,
                        help="one fault kind for every run (or mixed); slow_link only so")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep every run's directory")
    parser.add_argument("--summary", type=Path, help="append each run's figures (JSON lines)")
    parser.add_argument("--tables", type=Path, nargs="+", metavar="SUMMARY",
                        help="print the tables of runs in these --summary files; run nothing")  # fmt: skip
    args = parser.parse_args(argv)
    if args.tables:
        entries = [json.loads(line) for path in args.tables
                   for line in path.read_text().splitlines() if line.strip()]  # fmt: skip
        combined = [from_summary(e) for e in entries]
        print(f"{len(combined)} runs from {len(args.tables)} file(s)")
        print(table(combined))
        if slow_links := rtt_table(combined):
            print(slow_links)
        return 0
    if args.runs < 1 or args.seconds <= 0:
        parser.error("--runs must be >= 1 and --seconds > 0")
    reason = unavailable_reason()
    if reason is not None:
        print(f"fault runs skipped: {reason}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cleanup_stale()
    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    print(f"fault runs: {args.runs} from seed {seed}, {args.nodes} nodes, {args.seconds:g} s each",
          flush=True)  # fmt: skip
    results = run_many(
        args.runs, seed, args.nodes, args.seconds, args.theme, args.keep, args.summary
    )
    print(table(results))
    if slow_links := rtt_table(results):
        print(slow_links)
    failed = [r for r in results if r.failed()]
    if failed:
        print(f"FAILED runs (seeds): {', '.join(str(r.seed) for r in failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
