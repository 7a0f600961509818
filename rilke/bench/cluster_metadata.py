"""`rilke bench cluster-metadata`: the metadata controller of a real cluster.

Spawns ``--nodes`` `rilke server` processes with ``--initial-voters`` on 127.0.0.1 (ports
from the OS, temporary data directories) and measures:

- topic creation: the CreateTopics answer (committed on the controller leader and applied on
  the node asked) and the propagation until every node's Metadata lists the topic;
- idle CPU per node (user + system from /proc, over ``--idle-s``) with no topics and with
  ``--partitions`` partitions (topics of 100);
- controller failover: kill -9 of the controller leader to the next successful topic create
  through another node (``--failovers`` times; the killed node is started again between).

Every process is stopped (killed if need be) at the end, whatever happened.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from rilke.bench.common import percentiles, print_table, write_json

FORM_TIMEOUT_S = 120.0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "cluster-metadata",
        help="a real cluster's controller: topic creation and propagation, idle CPU, failover",
    )
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--creates", type=int, default=20, help="topics created (default 20)")
    p.add_argument("--partitions", type=int, default=1000, help="for the idle CPU (default 1000)")
    p.add_argument("--idle-s", type=float, default=10.0, help="idle CPU window (default 10)")
    p.add_argument("--failovers", type=int, default=3, help="kill -9 rounds (default 3)")
    p.add_argument("--json", default=None, help="also write the figures to this file")
    p.set_defaults(func=run)


def _free_ports(count: int) -> list[int]:
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class _Node:
    def __init__(self, root: Path, node_id: int, port: int, voters: str) -> None:
        self.node_id = node_id
        self.address = f"127.0.0.1:{port}"
        self.args = [
            sys.executable, "-m", "rilke", "--log-level", "warning", "server",
            "--node-id", str(node_id), "--listen", self.address,
            "--data-dir", str(root / f"node-{node_id}"), "--initial-voters", voters,
            "--scrub-bytes-per-second", "0",
        ]  # fmt: skip
        self.log_path = root / f"node-{node_id}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.PIPE, stderr=log, env=env, stdin=subprocess.DEVNULL
            )
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        listening = threading.Event()

        def pump() -> None:
            for line in stdout:
                if b"listening on" in line:
                    listening.set()
            stdout.close()

        threading.Thread(target=pump, daemon=True).start()
        if not listening.wait(60):
            raise RuntimeError(f"node {self.node_id} did not start; see {self.log_path}")

    def cpu_s(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


def _call(address: str, service: str, method: str, request: Any, timeout_s: float = 10) -> Any:
    import grpc

    from rilke.proto import rilke_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stub = getattr(pb_grpc, f"{service}Stub")(channel)
        return getattr(stub, method)(request, timeout=timeout_s)


def _describe(node: _Node) -> Any:
    from rilke.proto import rilke_pb2 as pb

    try:
        return _call(node.address, "Cluster", "DescribeCluster", pb.DescribeClusterRequest(), 2)
    except Exception:
        return None


def _formed(nodes: list[_Node]) -> bool:
    ids = {n.node_id for n in nodes}
    leaders = set()
    for node in nodes:
        info = _describe(node)
        if info is None or info.controller_id < 0:
            return False
        if not ids <= {b.node_id for b in info.brokers if b.state == "alive"}:
            return False
        leaders.add(info.controller_id)
    return len(leaders) == 1


def _wait(condition: Any, timeout_s: float, what: str, poll_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not within {timeout_s} s")
        time.sleep(poll_s)


def _create(node: _Node, name: str, partitions: int = 1, timeout_s: float = 30) -> str:
    """'' when created, else the error message."""
    from rilke.proto import rilke_pb2 as pb

    request = pb.CreateTopicsRequest(topics=[pb.NewTopic(name=name, num_partitions=partitions)])
    try:
        result = _call(node.address, "Admin", "CreateTopics", request, timeout_s).results[0]
    except Exception as e:
        return str(e)
    return result.error.message if result.error.code else ""


def _has_topic(node: _Node, name: str) -> bool:
    from rilke.proto import rilke_pb2 as pb

    response = _call(node.address, "Broker", "Metadata", pb.MetadataRequest(topics=[name]))
    return bool(response.topics) and not response.topics[0].error.code


def _idle_cpu(nodes: list[_Node], seconds: float) -> list[float]:
    before = [n.cpu_s() for n in nodes]
    start = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - start
    return [(n.cpu_s() - b) / wall for n, b in zip(nodes, before, strict=True)]


def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="rilke-bench-cluster-"))
    ports = _free_ports(args.nodes)
    voters = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports))
    nodes = [_Node(root, i + 1, p, voters) for i, p in enumerate(ports)]
    result: dict[str, Any] = {"nodes": args.nodes}
    try:
        t0 = time.monotonic()
        for node in nodes:
            node.start()
        _wait(lambda: _formed(nodes), FORM_TIMEOUT_S, "the cluster forming")
        result["form_s"] = time.monotonic() - t0

        answered, everywhere = [], []
        for i in range(args.creates):
            name, node = f"bench-{i}", nodes[i % len(nodes)]
            start = time.monotonic()
            error = _create(node, name)
            if error:
                raise RuntimeError(f"creating {name}: {error}")
            answered.append((time.monotonic() - start) * 1000)
            _wait(lambda n=name: all(_has_topic(x, n) for x in nodes), 30, name, 0.002)
            everywhere.append((time.monotonic() - start) * 1000)
        result["create_answer_ms"] = percentiles(answered)
        result["create_on_every_node_ms"] = percentiles(everywhere)

        time.sleep(3)
        result["idle_cpu_few_topics"] = _idle_cpu(nodes, args.idle_s)
        topics = max(1, args.partitions // 100)
        for t in range(topics):
            error = _create(nodes[t % len(nodes)], f"wide-{t}", 100, 120)
            if error:
                raise RuntimeError(f"creating wide-{t}: {error}")
        _wait(lambda: all(_has_topic(x, f"wide-{topics - 1}") for x in nodes), 60, "wide topics")
        time.sleep(5)
        result["idle_cpu_partitions"] = topics * 100
        result["idle_cpu_with_partitions"] = _idle_cpu(nodes, args.idle_s)

        failovers = []
        for round_ in range(args.failovers):
            info = _describe(nodes[0]) or _describe(nodes[1])
            leader = next(n for n in nodes if n.node_id == info.controller_id)
            other = next(n for n in nodes if n is not leader)
            start = time.monotonic()
            leader.kill()
            name = f"failover-{round_}"
            while True:
                error = _create(other, name, timeout_s=5)
                if not error or "already exists" in error:
                    break
                if time.monotonic() - start > 60:
                    raise TimeoutError(f"no create within 60 s of the kill: {error}")
            failovers.append((time.monotonic() - start) * 1000)
            leader.start()
            _wait(lambda: _formed(nodes), FORM_TIMEOUT_S, "the killed node back")
        result["failover_ms"] = failovers
    finally:
        for node in nodes:
            node.stop()
        shutil.rmtree(root, ignore_errors=True)

    rows = [
        ("nodes", str(args.nodes)),
        ("cluster formed in", f"{result['form_s']:.2f} s"),
        ("create answered p50 / p99", _p(result["create_answer_ms"])),
        ("create on every node p50 / p99", _p(result["create_on_every_node_ms"])),
        ("idle CPU per node, few topics", _cpu(result["idle_cpu_few_topics"])),
        (
            f"idle CPU per node, {result['idle_cpu_partitions']} partitions",
            _cpu(result["idle_cpu_with_partitions"]),
        ),
        ("failover (kill -9 to next create)", ", ".join(f"{v:.0f} ms" for v in failovers)),
    ]
    print_table("cluster metadata", rows)
    write_json(args.json, result)
    return 0


def _p(p: dict[str, float]) -> str:
    return f"{p['p50_ms']:.1f} / {p['p99_ms']:.1f} ms"


def _cpu(shares: list[float]) -> str:
    return ", ".join(f"{100 * s:.1f}%" for s in shares)
