"""Real clusters of `rilke server` processes on 127.0.0.1 for end-to-end tests.

    nodes = ClusterNodes(tmp_path, 3)       # ports chosen, nothing started
    nodes.start_all()                       # node i: --node-id i --initial-voters 1@...,2@...,3@...
    nodes.describe(2)                       # Cluster.DescribeCluster answered by node 2
    nodes.stop_all()                        # SIGTERM, then SIGKILL after a deadline

Voters must know each other's addresses before any starts, so ports are taken from the OS
(bind to port 0, read the port, close) just before the processes start. The ``cluster``
fixture (conftest.py) stops and kills every process it started, whatever the test did.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from rilke_broker_process import REPO_ROOT, BrokerProcess

from rilke.bench.cluster_spawn import free_ports
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc


class ClusterNodes:
    def __init__(self, root: Path, voters: int, first_id: int = 1) -> None:
        self.root = Path(root)
        ids = range(first_id, first_id + voters)
        self.ports = dict(zip(ids, free_ports(voters), strict=True))
        self.voters = ",".join(f"{n}@127.0.0.1:{p}" for n, p in self.ports.items())
        self.nodes: dict[int, BrokerProcess] = {}
        self.started: list[BrokerProcess] = []

    def address(self, node: int) -> str:
        return f"127.0.0.1:{self.ports[node]}"

    def data_dir(self, node: int) -> Path:
        return self.root / f"node-{node}"

    def process(self, node: int, *extra: str, voters: str | None = None) -> BrokerProcess:
        """A voter's process (not started)."""
        args = ["--node-id", str(node), "--listen", self.address(node)]
        args += ["--initial-voters", voters or self.voters, "--scrub-bytes-per-second", "0"]
        proc = BrokerProcess(self.data_dir(node), *args, *extra)
        self.started.append(proc)
        return proc

    def start(self, node: int) -> BrokerProcess:
        self.nodes[node] = self.process(node).start()
        return self.nodes[node]

    def start_all(self) -> None:
        for node in self.ports:
            self.start(node)

    def join(self, node: int, through: int = 1) -> BrokerProcess:
        """A new node (not a voter) added with --join through node ``through``."""
        if node not in self.ports:
            self.ports[node] = free_ports(1)[0]
        args = ["--node-id", str(node), "--listen", self.address(node)]
        args += ["--join", self.address(through), "--scrub-bytes-per-second", "0"]
        proc = BrokerProcess(self.data_dir(node), *args)
        self.started.append(proc)
        self.nodes[node] = proc.start(timeout_s=90)
        return proc

    def kill(self, node: int) -> None:
        self.nodes.pop(node).kill()

    def stop(self, node: int) -> None:
        self.nodes.pop(node).stop(30)

    def stop_all(self) -> None:
        for node in list(self.nodes):
            self.stop(node)

    def close(self) -> None:
        for proc in self.started:
            try:
                proc.stop(10)
            finally:
                proc.kill()

    # --- asking a node --------------------------------------------------------------------

    def _call(self, node: int, service: str, method: str, request: Any) -> Any:
        with grpc.insecure_channel(self.address(node)) as channel:
            stub = getattr(pb_grpc, f"{service}Stub")(channel)
            return getattr(stub, method)(request, timeout=10)

    def describe(self, node: int) -> pb.DescribeClusterResponse:
        return self._call(node, "Cluster", "DescribeCluster", pb.DescribeClusterRequest())

    def metadata(self, node: int) -> pb.MetadataResponse:
        return self._call(node, "Broker", "Metadata", pb.MetadataRequest())

    def topics(self, node: int) -> dict[str, list[tuple[int, int, tuple[int, ...]]]]:
        """Topic -> [(partition, leader, replicas)] as ``node`` answers Metadata."""
        return {
            t.name: [(p.partition, p.leader_id, tuple(p.replicas)) for p in t.partitions]
            for t in self.metadata(node).topics
            if not t.error.code
        }

    def create_topic(
        self, node: int, name: str, partitions: int = 1, replication_factor: int = 1
    ) -> pb.TopicResult:
        request = pb.CreateTopicsRequest(
            topics=[
                pb.NewTopic(
                    name=name, num_partitions=partitions, replication_factor=replication_factor
                )
            ]
        )
        return self._call(node, "Admin", "CreateTopics", request).results[0]

    def alive_brokers(self, node: int) -> set[int]:
        try:
            return {b.node_id for b in self.describe(node).brokers if b.state == "alive"}
        except grpc.RpcError:
            return set()


@contextmanager
def cluster_of(root: Path, voters: int) -> Iterator[ClusterNodes]:
    """A ClusterNodes of ``voters`` whose every process is stopped (and killed) at the end."""
    nodes = ClusterNodes(root, voters)
    try:
        yield nodes
    finally:
        nodes.close()


def rilke_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m rilke ARGS`` from the repository root, output captured, never raising on exit."""
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


def formed(nodes: ClusterNodes, members: Sequence[int] | None = None) -> bool:
    """Every node of ``members`` (default: all) sees them all alive, under one controller leader."""
    members = list(nodes.ports) if members is None else list(members)
    seen = set()
    for node in members:
        try:
            info = nodes.describe(node)
        except Exception:
            return False
        alive = {b.node_id for b in info.brokers if b.state == "alive"}
        if not set(members) <= alive or info.controller_id < 0:
            return False
        seen.add((info.cluster_id, info.controller_id))
    return len(seen) == 1
