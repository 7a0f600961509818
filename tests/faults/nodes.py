"""A cluster of real `rilke server` processes, one per namespace of a Testbed, and what the
nemesis does to them: kill -9, SIGSTOP/SIGCONT, restart, a full disk; and who leads what.

    with Testbed(["n1", "n2", "n3", "client"]) as bed:
        cluster = FaultCluster(bed, tmp_path, [1, 2, 3])
        cluster.start_all(); cluster.wait_healthy(60)
        cluster.kill(cluster.controller_leader())
        cluster.close()

Node ``i`` runs in host ``n<i>`` and listens on ``<its address>:9292`` (each namespace has
its own ports, so the port is fixed and known before any node starts, as --initial-voters
needs). Its data dir is a tmpfs of ``disk_bytes`` of its own (so one node's disk can be
filled without touching another's). The host cannot reach the namespaces' addresses, so
questions to the cluster go through a :mod:`tests.faults.probe` process in the client host.
Not thread-safe: one thread (the nemesis's or the test's) drives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tests.faults.netns import Testbed, TestbedError
from tests.small_fs import fill

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_PORT = 9292
DISK_BYTES = 256 * 1024 * 1024
PROBE_SLACK_S = 3.0
"""How much longer than a call's own deadline the probe may take to answer (its process)."""
LOG_TAIL_CHARS = 3000


class ClusterError(RuntimeError):
    """A node did not start, or the cluster did not get healthy in time; the message has the
    logs' tails."""


def child_env() -> dict[str, str]:
    """The environment of every process the harness starts: this repository importable."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Probe:
    """The question-and-answer process (tests/faults/probe.py) in ``host``."""

    def __init__(self, bed: Testbed, host: str) -> None:
        self._proc = bed.popen(
            host,
            [sys.executable, "-m", "tests.faults.probe"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=child_env(),
            cwd=REPO_ROOT,
        )
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=1000)
        self._next_id = 0
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        assert stream is not None
        with contextlib.suppress(ValueError, OSError):
            for line in stream:
                with contextlib.suppress(ValueError):
                    self._answers.put(json.loads(line), timeout=10)
        self._answers.put(None, timeout=10)

    def ask(
        self,
        op: str,
        address: str,
        timeout_s: float = 2.0,
        wait_s: float | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        """The answer to one question, or ``{"error": ...}`` (unreachable, dead probe, late).
        ``timeout_s`` bounds each call the probe makes; ``wait_s`` (default ``timeout_s``) the
        whole answer."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            request = {"id": ident, "op": op, "address": address, "timeout_s": timeout_s, **fields}
            stdin = self._proc.stdin
            if stdin is None or self._proc.poll() is not None:
                return {"error": "the probe process has exited"}
            try:
                stdin.write((json.dumps(request) + "\n").encode())
                stdin.flush()
            except (BrokenPipeError, ValueError):
                return {"error": "the probe process has exited"}
            wait_s = timeout_s if wait_s is None else wait_s
            deadline = time.monotonic() + wait_s + PROBE_SLACK_S
            while (remaining := deadline - time.monotonic()) > 0:
                try:
                    got = self._answers.get(timeout=remaining)
                except queue.Empty:
                    break
                if got is None:
                    return {"error": "the probe process has exited"}
                if got.get("id") == ident:
                    return got
            return {"error": f"no answer from the probe within {wait_s + PROBE_SLACK_S} s"}

    def close(self) -> None:
        if self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)


@dataclass
class Node:
    node_id: int
    host: str
    address: str  # HOST:PORT, inside the bed
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    state: str = "stopped"  # stopped | running | paused | dead
    filler: Path | None = None


class FaultCluster:
    """Voters ``node_ids`` in hosts ``n<id>`` of ``bed``; questions through ``client_host``."""

    def __init__(
        self,
        bed: Testbed,
        root: Path,
        node_ids: list[int],
        *,
        client_host: str = "client",
        disk_bytes: int = DISK_BYTES,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        if len(set(node_ids)) != len(node_ids) or not node_ids:
            raise ValueError(f"node ids must be distinct and non-empty: {node_ids!r}")
        self.bed = bed
        self.root = Path(root)
        self.extra_args = extra_args
        self.nodes: dict[int, Node] = {}
        for node_id in node_ids:
            host = f"n{node_id}"
            address = f"{bed.address(host)}:{SERVER_PORT}"
            data_dir = bed.mount_small_fs(self.root / f"node-{node_id}", disk_bytes)
            log_path = self.root / f"node-{node_id}.log"
            self.nodes[node_id] = Node(node_id, host, address, data_dir / "data", log_path)
        self.voters = ",".join(f"{n.node_id}@{n.address}" for n in self.nodes.values())
        self.bootstrap = ",".join(n.address for n in self.nodes.values())
        self.probe = Probe(bed, client_host)

    # -- processes ---------------------------------------------------------------------------

    def argv(self, node_id: int) -> list[str]:
        node = self.nodes[node_id]
        return [
            sys.executable, "-m", "rilke", "server",
            "--node-id", str(node_id),
            "--listen", node.address,
            "--advertised-listen", node.address,
            "--initial-voters", self.voters,
            "--data-dir", str(node.data_dir),
            "--scrub-bytes-per-second", "0",
            *self.extra_args,
        ]  # fmt: skip

    def start(self, node_id: int) -> None:
        """Start the node's process (it must not be running or paused)."""
        node = self.nodes[node_id]
        if node.state in ("running", "paused"):
            raise ClusterError(f"node {node_id} is {node.state}: kill it before starting it")
        with open(node.log_path, "ab") as log_file:
            log_file.write(f"--- start at {time.monotonic():.3f}\n".encode())
            log_file.flush()
            node.proc = self.bed.popen(
                node.host, self.argv(node_id), stdout=log_file, env=child_env(), cwd=REPO_ROOT
            )
        node.state = "running"

    def start_all(self) -> None:
        for node_id in self.nodes:
            self.start(node_id)

    def kill(self, node_id: int) -> None:
        """kill -9 (a paused node too); waits for the process to be gone."""
        node = self.nodes[node_id]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait(10)
        node.state = "dead"

    def stop(self, node_id: int, timeout_s: float = 20.0) -> None:
        """SIGTERM (a clean shutdown), then SIGKILL if it is still there at ``timeout_s``."""
        node = self.nodes[node_id]
        if node.proc is not None and node.proc.poll() is None:
            self.resume(node_id)
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait(10)
        node.state = "dead"

    def pause(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state == "running" and node.proc is not None:
            node.proc.send_signal(signal.SIGSTOP)
            node.state = "paused"

    def resume(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.state == "paused" and node.proc is not None:
            node.proc.send_signal(signal.SIGCONT)
            node.state = "running"

    def restart(self, node_id: int) -> None:
        self.kill(node_id)
        self.start(node_id)

    def exited(self) -> dict[int, int]:
        """Nodes meant to be running whose processes ended by themselves: id -> return code."""
        return {
            n.node_id: code
            for n in self.nodes.values()
            if n.state in ("running", "paused")
            and n.proc is not None
            and (code := n.proc.poll()) is not None
        }

    def running(self) -> list[int]:
        return [n.node_id for n in self.nodes.values() if n.state == "running"]

    # -- the disk ----------------------------------------------------------------------------

    def fill_disk(self, node_id: int) -> None:
        """Fill the node's data file system (its tmpfs) to the last byte."""
        node = self.nodes[node_id]
        if node.filler is None:
            node.filler = fill(node.data_dir.parent, "faults-filler")

    def free_disk(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.filler is not None:
            node.filler.unlink(missing_ok=True)
            node.filler = None

    # -- asking ------------------------------------------------------------------------------

    def describe(self, node_id: int, timeout_s: float = 2.0) -> dict[str, Any]:
        return self.probe.ask("describe", self.nodes[node_id].address, timeout_s)

    def rtt(self, node_id: int, seconds: float, interval_s: float) -> list[float | None]:
        """TCP handshake times (ms) from the client host to the node's port, one every
        ``interval_s`` for ``seconds`` (None: failed, or over 3 s); [] if the probe failed."""
        got = self.probe.ask(
            "rtt", self.nodes[node_id].address, 3.0, seconds + 3.0, seconds=seconds,
            interval_s=interval_s,
        )  # fmt: skip
        return list(got.get("rtt_ms", []))

    def metadata(
        self, node_id: int, topics: list[str] | None = None, timeout_s: float = 2.0
    ) -> dict[str, Any]:
        return self.probe.ask(
            "metadata", self.nodes[node_id].address, timeout_s, topics=topics or []
        )

    def create_topic(self, name: str, partitions: int, replicas: int, timeout_s: float) -> None:
        """Create a topic through any running node (retried until ``timeout_s``); raises
        ClusterError with the last answer at the deadline."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            for node_id in self.running():
                last = self.probe.ask("create_topic", self.nodes[node_id].address, 5.0,
                                      name=name, partitions=partitions, replicas=replicas)  # fmt: skip
                if "error" not in last or "already exists" in last["error"]:
                    return
            time.sleep(0.5)
        raise ClusterError(f"could not create topic {name!r} within {timeout_s} s: {last}")

    def wait_leaders(self, topic: str, partitions: int, timeout_s: float) -> dict[int, int]:
        """Partition -> leader once every partition of ``topic`` has one; ClusterError at the
        deadline."""
        deadline = time.monotonic() + timeout_s
        while len(leaders := self.partition_leaders(topic)) < partitions:
            if time.monotonic() >= deadline:
                raise ClusterError(f"{topic}: leaders {leaders} after {timeout_s} s")
            time.sleep(0.2)
        return leaders

    def topic_lists(self, timeout_s: float) -> dict[int, list[str] | None]:
        """Node -> its ListTopics answer (None: no answer), once every running node answers
        the same or at ``timeout_s`` (metadata reaches nodes eventually; a node that never
        catches up keeps its own answer, for the checker to judge)."""
        deadline = time.monotonic() + timeout_s
        while True:
            lists = {
                n: self.probe.ask("list_topics", self.nodes[n].address, 2.0).get("names")
                for n in self.running()
            }
            answers = {tuple(v) if v is not None else None for v in lists.values()}
            if (len(answers) == 1 and None not in answers) or time.monotonic() >= deadline:
                return lists
            time.sleep(0.5)

    def healthy(self, members: list[int] | None = None) -> bool:
        """Every node of ``members`` (default: the running ones) answers, sees all of them
        alive, and names the same controller leader, one of them."""
        members = self.running() if members is None else members
        controllers = set()
        for node_id in members:
            info = self.describe(node_id)
            if "error" in info or not set(members) <= set(info["alive"]):
                return False
            if info["controller_id"] not in members:
                return False
            controllers.add(info["controller_id"])
        return len(controllers) == 1

    def wait_healthy(self, timeout_s: float, members: list[int] | None = None) -> None:
        """Return once :meth:`healthy`; raise ClusterError (with the logs) at the deadline or
        when a node's process ends by itself."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy(members):
            if exited := self.exited():
                raise ClusterError(f"nodes exited {exited}:\n{self.log_tails()}")
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"the cluster was not healthy within {timeout_s} s:\n{self.log_tails()}"
                )
            time.sleep(0.2)

    def controller_leader(self) -> int | None:
        """The controller leader most running nodes name, or None when none answers."""
        votes: Counter[int] = Counter()
        for node_id in self.running():
            info = self.describe(node_id, timeout_s=1.0)
            if "error" not in info and info["controller_id"] >= 0:
                votes[info["controller_id"]] += 1
        return votes.most_common(1)[0][0] if votes else None

    def partition_leaders(self, topic: str) -> dict[int, int]:
        """Partition -> leader id, by the freshest (highest leader epoch) answer among the
        running nodes; partitions without a known leader are left out."""
        best: dict[int, tuple[int, int]] = {}
        for node_id in self.running():
            got = self.metadata(node_id, [topic], timeout_s=1.0)
            for partition, leader, epoch, _replicas in got.get("topics", {}).get(topic, []):
                if leader >= 0 and (partition not in best or epoch > best[partition][0]):
                    best[partition] = (epoch, leader)
        return {p: leader for p, (_epoch, leader) in sorted(best.items())}

    def log_tails(self) -> str:
        parts = []
        for node in self.nodes.values():
            try:
                text = node.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
            except OSError:
                text = "(no log)"
            parts.append(f"=== node {node.node_id} ({node.state}) {node.log_path}\n{text}")
        return "\n".join(parts)

    def close(self) -> None:
        """Continue paused nodes, kill every node, free the disks, stop the probe. Idempotent."""
        for node in self.nodes.values():
            if node.proc is not None and node.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGCONT)
                    node.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.proc.wait(10)
            node.state = "dead" if node.state != "stopped" else "stopped"
            with contextlib.suppress(OSError):
                self.free_disk(node.node_id)
        with contextlib.suppress(OSError, TestbedError, subprocess.TimeoutExpired):
            self.probe.close()
