"""A real cluster of `rilke server` processes for the cluster benchmarks.

    with SpawnedCluster(3) as cluster:          # started, formed (one controller, all alive)
        cluster.create_topic("t", partitions=12, replication_factor=3)   # every partition led
        cluster.bootstrap                       # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.leader_of("t", 0)               # (node id, leader epoch) from a live node
        cluster.kill(2)                         # kill -9
    # every process stopped (SIGTERM, then SIGKILL after a deadline), temp dirs removed

Node ``i`` runs ``rilke server --node-id i --listen 127.0.0.1:PORT --data-dir TMP/node-i
--initial-voters 1@127.0.0.1:P1,...``. Voters must know each other's addresses before any of
them starts, so the ports are taken from the OS (bound together to port 0, read, closed) just
before the processes start. Every wait has a deadline and raises :class:`ClusterError` naming
what did not happen and the node logs to read. Cleanup runs on normal exit, on errors, on
Ctrl-C (KeyboardInterrupt) and on SIGTERM to the benchmark (turned into SystemExit while the
cluster is open, in the main thread); each node also gets PR_SET_PDEATHSIG, so a benchmark
killed with -9 does not leave servers behind on Linux.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from rilke.bench.common import MALLOC_ENV

START_TIMEOUT_S = 90.0
"""Until a node prints its listening line: a few seconds idle; 90 s on a 2-core machine shared
by eight engineers (imports alone took 6 s there at worst, 2026-12-03)."""
FORM_TIMEOUT_S = 120.0
"""Until every node reports the same controller and every broker alive (3.3-4.3 s measured by
`rilke bench cluster-metadata`, 2026-12-03)."""
LEADERS_TIMEOUT_S = 120.0
"""Until every partition of a new topic has a leader on every live node (1,000 RF-3 partitions
elect 1,000 Raft groups)."""
STOP_TIMEOUT_S = 30.0
"""SIGTERM to exit, then SIGKILL."""
CALL_TIMEOUT_S = 5.0
NO_LEADER = -1
FIRST_TERM = 1
"""A partition's leader epoch is its Raft term: 1 or more once a leader was elected and
reported itself to the controller; 0 is the controller's first assignment (that node may not
lead: the group had not elected yet)."""
_PR_SET_PDEATHSIG = 1

REPO_ROOT = Path(__file__).resolve().parents[2]
_INTERRUPTIONS = (KeyboardInterrupt, SystemExit)
"""Ctrl-C and SIGTERM: the user stopped the run, no logs kept for them."""


class ClusterError(RuntimeError):
    """The spawned cluster did not do what the benchmark waits for (within its deadline)."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS has free now (held open together, then closed)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def voters_arg(ports: Sequence[int]) -> str:
    """The ``--initial-voters`` value for nodes 1..len(ports) on 127.0.0.1."""
    return ",".join(f"{i}@127.0.0.1:{port}" for i, port in enumerate(ports, start=1))


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn setting PR_SET_PDEATHSIG=SIGKILL (prctl looked up now, not in the child,
    which must not load libraries between fork and exec); None where there is no prctl."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))

    return preexec


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class SpawnedNode:
    """One `rilke server` node process of a :class:`SpawnedCluster`."""

    def __init__(
        self, root: Path, node_id: int, port: int, voters: str, extra_args: Sequence[str]
    ) -> None:
        self.node_id = node_id
        self.address = f"127.0.0.1:{port}"
        self.data_dir = root / f"node-{node_id}"
        self.log_path = root / f"node-{node_id}.log"
        self.args = [
            sys.executable, "-m", "rilke", "--log-level", "warning", "server",
            "--node-id", str(node_id), "--listen", self.address,
            "--data-dir", str(self.data_dir), "--initial-voters", voters,
            "--scrub-bytes-per-second", "0", *extra_args,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"node {self.node_id} not started"
        return self.proc.pid

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start the process and wait until it prints its listening line; ClusterError if it
        exits first or the deadline passes (the process is then killed)."""
        env = {**os.environ, **MALLOC_ENV}
        env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.args,
                stdout=subprocess.PIPE,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent(),  # noqa: PLW1509 (no lock taken in the child)
            )
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        listening = threading.Event()

        def pump() -> None:  # reads to the end, so the node never blocks on a full pipe
            for line in stdout:
                if b"rilke broker listening on" in line:
                    listening.set()
            stdout.close()

        threading.Thread(target=pump, daemon=True, name=f"node-{self.node_id}-out").start()
        deadline = time.monotonic() + timeout_s
        while not listening.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise ClusterError(
                    f"node {self.node_id} did not start within {timeout_s:.0f} s "
                    f"(exit code {self.proc.returncode}); see {self.log_path}"
                )

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def kill(self) -> None:
        """kill -9, and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()


class MetadataProbe:
    """Unary calls to nodes over channels kept open (a failover poll asks every 10 ms), and
    the questions about a topic's leaders the benchmarks wait on. Thread-safe."""

    def __init__(self) -> None:
        self._channels: dict[str, Any] = {}
        self._lock = threading.Lock()

    def call(self, address: str, service: str, method: str, request: Any, timeout_s: float) -> Any:
        """One unary call to ``address``; raises grpc.RpcError as the stub does."""
        import grpc

        from rilke.proto import rilke_pb2_grpc as pb_grpc

        with self._lock:
            channel = self._channels.get(address)
            if channel is None:
                channel = self._channels[address] = grpc.insecure_channel(address)
        stub = getattr(pb_grpc, f"{service}Stub")(channel)
        return getattr(stub, method)(request, timeout=timeout_s)

    def partitions(self, address: str, topic: str) -> dict[int, tuple[int, int]] | None:
        """Partition -> (leader id, leader epoch) as ``address`` answers Metadata; None if it
        does not answer or does not know the topic."""
        import grpc

        from rilke.proto import rilke_pb2 as pb

        request = pb.MetadataRequest(topics=[topic])
        try:
            response = self.call(address, "Broker", "Metadata", request, CALL_TIMEOUT_S)
        except grpc.RpcError:
            return None
        for t in response.topics:
            if t.name == topic and not t.error.code:
                return {p.partition: (p.leader_id, p.leader_epoch) for p in t.partitions}
        return None

    def all_led(
        self,
        addresses: Sequence[str],
        topic: str,
        partitions: int,
        alive: Collection[int] | None = None,
        min_epoch: int = FIRST_TERM,
    ) -> bool:
        """Every address's Metadata lists ``partitions`` partitions of ``topic``, each with a
        leader (one of ``alive`` when given) of epoch ``min_epoch`` or more, the same on every
        node."""
        seen: dict[int, tuple[int, int]] | None = None
        for address in addresses:
            parts = self.partitions(address, topic)
            if parts is None or len(parts) != partitions:
                return False
            for leader, epoch in parts.values():
                if leader == NO_LEADER or (alive is not None and leader not in alive):
                    return False
                if epoch < min_epoch:
                    return False
            if seen is not None and parts != seen:
                return False
            seen = parts
        return True

    def wait_led(
        self,
        addresses: Sequence[str],
        topic: str,
        partitions: int,
        timeout_s: float = LEADERS_TIMEOUT_S,
    ) -> None:
        """Poll :meth:`all_led` every 50 ms; ClusterError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not self.all_led(addresses, topic, partitions):
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"the {partitions} partition(s) of {topic!r} have no leader on every one "
                    f"of {', '.join(addresses)} within {timeout_s:.0f} s"
                )
            time.sleep(0.05)

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


class SpawnedCluster:
    """``nodes`` voters on 127.0.0.1 in a temporary directory (see the module docstring).

    Not thread-safe: one benchmark thread drives it (``probe`` may be shared)."""

    def __init__(self, nodes: int, *, extra_args: Sequence[str] = ()) -> None:
        if nodes < 1:
            raise ValueError(f"a cluster needs at least 1 node, got {nodes}")
        self.root = Path(tempfile.mkdtemp(prefix="rilke-bench-cluster-"))
        ports = free_ports(nodes)
        voters = voters_arg(ports)
        self.nodes = {
            i: SpawnedNode(self.root, i, port, voters, extra_args)
            for i, port in enumerate(ports, start=1)
        }
        self.probe = MetadataProbe()
        self._old_sigterm: Any = None

    # --- life -----------------------------------------------------------------------------

    def __enter__(self) -> SpawnedCluster:
        if threading.current_thread() is threading.main_thread():
            self._old_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self.start()
        except BaseException as exc:
            self.close(keep_logs=not isinstance(exc, _INTERRUPTIONS))
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        failed = exc_type is not None and not issubclass(exc_type, _INTERRUPTIONS)
        self.close(keep_logs=failed)

    def start(self, timeout_s: float = FORM_TIMEOUT_S) -> None:
        """Start every node, then wait until the cluster formed (see :meth:`formed`)."""
        for node in self.nodes.values():
            node.start()
        self.wait(self.formed, timeout_s, "the cluster forming (one controller, all alive)")

    def close(self, *, keep_logs: bool = False) -> None:
        """Stop every node (SIGTERM, then SIGKILL), close channels, remove the directory
        (with ``keep_logs``, only the data directories: the node logs stay for the error
        message that names them). Idempotent."""
        self.probe.close()
        for node in self.nodes.values():  # all at once: a node may wait on its peers to stop
            if node.alive:
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes.values():
            with contextlib.suppress(Exception):
                node.stop()
            node.kill()
        if keep_logs:
            for node in self.nodes.values():
                shutil.rmtree(node.data_dir, ignore_errors=True)
            print(f"rilke bench: the cluster's node logs are kept in {self.root}", file=sys.stderr)
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        if self._old_sigterm is not None:
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    def kill(self, node_id: int) -> float:
        """kill -9 node ``node_id``; returns ``time.monotonic()`` right after the signal was
        sent (then reaps it)."""
        node = self.nodes[node_id]
        assert node.proc is not None, f"node {node_id} not started"
        node.proc.kill()
        killed_at = time.monotonic()
        node.proc.wait(STOP_TIMEOUT_S)
        return killed_at

    def restart(self, node_id: int) -> None:
        """Start a killed or stopped node again on its data."""
        self.nodes[node_id].start()

    # --- asking nodes ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        return ",".join(n.address for n in self.nodes.values())

    def live(self) -> list[SpawnedNode]:
        return [n for n in self.nodes.values() if n.alive]

    def describe(self, node: SpawnedNode) -> Any:
        """``node``'s DescribeCluster answer, or None if it does not answer."""
        import grpc

        from rilke.proto import rilke_pb2 as pb

        request = pb.DescribeClusterRequest()
        try:
            return self.probe.call(node.address, "Cluster", "DescribeCluster", request, 2.0)
        except grpc.RpcError:
            return None

    def formed(self) -> bool:
        """Every live node answers, names the same controller, and lists every live node as
        an alive broker."""
        live = self.live()
        ids = {n.node_id for n in live}
        controllers = set()
        for node in live:
            info = self.describe(node)
            if info is None or info.controller_id < 0:
                return False
            if not ids <= {b.node_id for b in info.brokers if b.state == "alive"}:
                return False
            controllers.add(info.controller_id)
        return len(controllers) == 1

    def leader_of(self, topic: str, partition: int) -> tuple[int, int]:
        """(leader id, epoch) of one partition as the first live node that knows answers
        ((NO_LEADER, -1) if none does)."""
        for node in self.live():
            parts = self.probe.partitions(node.address, topic)
            if parts and partition in parts:
                return parts[partition]
        return NO_LEADER, -1

    def all_led(self, topic: str, partitions: int) -> bool:
        """:meth:`MetadataProbe.all_led` over the live nodes, leaders among them."""
        live = self.live()
        addresses = [n.address for n in live]
        return self.probe.all_led(addresses, topic, partitions, {n.node_id for n in live})

    def create_topic(
        self,
        name: str,
        partitions: int,
        replication_factor: int,
        configs: dict[str, str] | None = None,
        timeout_s: float = LEADERS_TIMEOUT_S,
    ) -> None:
        """Create ``name`` through a live node and wait until :meth:`all_led`; ClusterError
        with the broker's message if the create is refused."""
        from rilke.proto import rilke_pb2 as pb

        new = pb.NewTopic(
            name=name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            configs=configs or {},
        )
        request = pb.CreateTopicsRequest(topics=[new])
        address = self.live()[0].address
        result = self.probe.call(address, "Admin", "CreateTopics", request, timeout_s).results[0]
        if result.error.code:
            raise ClusterError(f"creating topic {name!r}: {result.error.message}")
        self.wait(
            lambda: self.all_led(name, partitions),
            timeout_s,
            f"every partition of {name!r} led on every node",
        )

    def wait(
        self, condition: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.05
    ) -> None:
        """Poll ``condition`` every ``poll_s`` until it holds; ClusterError after ``timeout_s``,
        or at once when a node that was running has exited (nothing waited for comes then)."""
        deadline = time.monotonic() + timeout_s
        started = self.live_ids()
        while not condition():
            dead = started - self.live_ids()
            if dead:
                raise ClusterError(f"{what}: node(s) {sorted(dead)} exited; {self._logs()}")
            if time.monotonic() > deadline:
                raise ClusterError(f"{what}: not within {timeout_s:.0f} s; {self._logs()}")
            time.sleep(poll_s)

    def live_ids(self) -> set[int]:
        return {n.node_id for n in self.live()}

    def _logs(self) -> str:
        return "see " + ", ".join(str(n.log_path) for n in self.nodes.values())


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
