"""`controller_write` (rilke cluster/topic commands that change the cluster) leaves a
controller that does not answer at all for the one the cluster names next, as Kafka's admin
client retries a timed-out call: CI once saw `rilke topic reassign` fail at once with
UNAVAILABLE because the controller it was first told of was paused (SIGSTOP)."""

from __future__ import annotations

import argparse
import socket
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from rilke.cli.cluster_cmd import controller_write
from rilke.errors import RilkeError
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc

_REBALANCE = pb.ControllerWriteRequest(rebalance=pb.RebalanceRequest())


class _Silent:
    """A listening socket that accepts connections and never speaks: a paused process."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


class _Node(pb_grpc.ClusterServicer):
    """Node 2 of the fake cluster: names node 1 (silent) as the controller until
    ``elected`` is set, then itself; its ControllerWrite answers once it is the controller."""

    def __init__(self, silent_port: int) -> None:
        self.silent_port = silent_port
        self.port = 0
        self.elected = threading.Event()
        self.writes = 0

    def DescribeCluster(self, request, context):
        controller = 2 if self.elected.is_set() else 1
        return pb.DescribeClusterResponse(
            cluster_id="c",
            controller_id=controller,
            node_id=2,
            brokers=[
                pb.ClusterBroker(node_id=1, host="127.0.0.1", port=self.silent_port),
                pb.ClusterBroker(node_id=2, host="127.0.0.1", port=self.port),
            ],
        )

    def ControllerWrite(self, request, context):
        if not self.elected.is_set():
            return pb.ControllerWriteResponse(
                error=pb.Error(code=80, message="not the controller"), controller_id=1
            )
        self.writes += 1
        return pb.ControllerWriteResponse(metadata_offset=7, controller_id=2)


@pytest.fixture
def cluster() -> Iterator[tuple[_Node, _Silent]]:
    silent = _Silent()
    node = _Node(silent.port)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ClusterServicer_to_server(node, server)
    node.port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield node, silent
    finally:
        server.stop(None)
        silent.close()


def _args(node: _Node, timeout_s: float) -> argparse.Namespace:
    return argparse.Namespace(bootstrap_servers=f"127.0.0.1:{node.port}", request_timeout=timeout_s)


def test_a_silent_controller_is_left_for_the_one_named_next(cluster) -> None:
    node, _silent = cluster
    # The election happens while the first attempt waits on the silent controller.
    timer = threading.Timer(0.5, node.elected.set)
    timer.start()
    try:
        r = controller_write(_args(node, 12.0), _REBALANCE)
    finally:
        timer.cancel()
    assert r.metadata_offset == 7 and node.writes == 1


def test_no_controller_answering_fails_within_the_deadline(cluster) -> None:
    node, _silent = cluster
    started = time.monotonic()
    with pytest.raises(RilkeError):
        controller_write(_args(node, 3.0), _REBALANCE)
    # The deadline, plus at most one attempt's share (2 s) begun just before it.
    assert time.monotonic() - started < 3.0 + 2.0 + 1.0
    assert node.writes == 0
