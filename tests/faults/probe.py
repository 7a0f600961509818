"""A question-and-answer process inside the bed: the host cannot reach the namespaces'
addresses (the bridge has none on the host), so the harness asks the cluster through this.

    python -m tests.faults.probe        # inside the client namespace; one JSON object per line

Each request line is ``{"op": "describe"|"metadata"|"list_topics"|"create_topic", "address": "HOST:PORT",
"timeout_s": F}`` (metadata may name ``"topics"``; create_topic needs ``"name"``,
``"partitions"``, ``"replicas"``; rtt: ``"seconds"``, ``"interval_s"``: the time of a TCP
handshake with the address every ``interval_s`` for ``seconds``, in ``"rtt_ms"``, None for one
that failed or took longer than ``timeout_s``); each answer line is the same ``"id"`` with either
``"error"`` (a string) or the answer's fields. Every call has its deadline; an unreachable node
is an ``"error"`` answer, never a hang. It exits at the end of its input.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

import grpc

from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc

DEFAULT_TIMEOUT_S = 2.0


class _Channels:
    def __init__(self) -> None:
        self._channels: dict[str, grpc.Channel] = {}

    def get(self, address: str) -> grpc.Channel:
        if address not in self._channels:
            self._channels[address] = grpc.insecure_channel(address)
        return self._channels[address]


def describe(channel: grpc.Channel, timeout_s: float) -> dict[str, Any]:
    info = pb_grpc.ClusterStub(channel).DescribeCluster(
        pb.DescribeClusterRequest(), timeout=timeout_s
    )
    return {
        "node_id": info.node_id,
        "controller_id": info.controller_id,
        "voters": list(info.voters),
        "alive": sorted(b.node_id for b in info.brokers if b.state == "alive"),
    }


def metadata(channel: grpc.Channel, timeout_s: float, topics: list[str]) -> dict[str, Any]:
    request = pb.MetadataRequest(topics=topics) if topics else pb.MetadataRequest()
    got = pb_grpc.BrokerStub(channel).Metadata(request, timeout=timeout_s)
    return {
        "controller_id": got.controller_id,
        "topics": {
            t.name: [
                [p.partition, p.leader_id, p.leader_epoch, list(p.replicas)] for p in t.partitions
            ]
            for t in got.topics
            if not t.error.code
        },
    }


def create_topic(
    channel: grpc.Channel, timeout_s: float, name: str, partitions: int, replicas: int
) -> dict[str, Any]:
    topic = pb.NewTopic(name=name, num_partitions=partitions, replication_factor=replicas)
    got = pb_grpc.AdminStub(channel).CreateTopics(
        pb.CreateTopicsRequest(topics=[topic]), timeout=timeout_s
    )
    result = got.results[0]
    if result.error.code:
        return {"error": f"{result.error.code}: {result.error.message}"}
    return {"created": name}


def list_topics(channel: grpc.Channel, timeout_s: float) -> dict[str, Any]:
    got = pb_grpc.AdminStub(channel).ListTopics(pb.ListTopicsRequest(), timeout=timeout_s)
    return {"names": sorted(t.name for t in got.topics)}


def rtt(address: str, timeout_s: float, seconds: float, interval_s: float) -> dict[str, Any]:
    """TCP connect times to ``address``: a handshake is one round trip (SYN out, SYN-ACK back,
    answered by the kernel), so it measures the path, queues included, not the server's work;
    no ping needed (this machine has none)."""
    host, _, port = address.rpartition(":")
    samples: list[float | None] = []
    until = time.monotonic() + seconds
    while not samples or time.monotonic() + interval_s < until:
        if samples:
            time.sleep(interval_s)  # the sampling rate, not a synchronisation
        started = time.monotonic()
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                samples.append(round((time.monotonic() - started) * 1000, 3))
        except OSError:
            samples.append(None)
    return {"rtt_ms": samples}


def answer(channels: _Channels, request: dict[str, Any]) -> dict[str, Any]:
    timeout_s = float(request.get("timeout_s", DEFAULT_TIMEOUT_S))
    channel = channels.get(str(request["address"]))
    try:
        if request["op"] == "describe":
            return describe(channel, timeout_s)
        if request["op"] == "metadata":
            return metadata(channel, timeout_s, list(request.get("topics", [])))
        if request["op"] == "list_topics":
            return list_topics(channel, timeout_s)
        if request["op"] == "rtt":
            return rtt(request["address"], timeout_s, float(request["seconds"]),
                       float(request["interval_s"]))  # fmt: skip
        if request["op"] == "create_topic":
            return create_topic(
                channel, timeout_s, request["name"], request["partitions"], request["replicas"]
            )
    except grpc.RpcError as exc:
        return {"error": f"{exc.code().name}: {exc.details()}"}
    return {"error": f"unknown op {request['op']!r}"}


def main() -> int:
    channels = _Channels()
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        reply = {"id": request.get("id"), **answer(channels, request)}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
