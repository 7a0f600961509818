"""The gRPC Produce, Fetch and ListOffsets handlers over ReplicatedPartitions (three in-process
nodes on 127.0.0.1), unchanged: the leader answers, followers answer NOT_LEADER_OR_FOLLOWER to
writes, a long-poll Fetch wakes when the high watermark moves, a stale leader epoch is fenced."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rilke import errors
from rilke.partition.interface import Partition
from rilke.proto import rilke_pb2 as pb
from rilke.server.services import BrokerService

from .cluster import wait_until
from .partition_cluster import TOPIC, Node, PartitionCluster, data_values, records_batch


@dataclass
class _Config:
    max_request_bytes: int = 64 << 20


class _Counters:
    """Takes any counting call the handlers make (the broker's stats): counted nowhere."""

    def __getattr__(self, name: str) -> _Counters:
        return self

    def __call__(self, *args: object, **kwargs: object) -> _Counters:
        return self


class _OneTopicBroker:
    """What the handlers ask of a broker, for the one replicated partition of a node."""

    def __init__(self, node: Node) -> None:
        self.config = _Config()
        self.stats = _Counters()
        self._node = node

    def partition(self, topic: str, partition: int, auto_create: bool = False) -> Partition:
        if (topic, partition) != (TOPIC, 0):
            raise errors.UnknownTopicOrPartitionError(f"{topic}-{partition}")
        return self._node.partition


def service(node: Node) -> BrokerService:
    broker: Any = _OneTopicBroker(node)
    return BrokerService(broker, ("127.0.0.1", 0))


def produce_request(records: bytes) -> pb.ProduceRequest:
    return pb.ProduceRequest(
        acks=-1,
        timeout_ms=10_000,
        partitions=[pb.ProducePartitionData(topic=TOPIC, partition=0, records=records)],
    )


def fetch_request(offset: int, **kw: int) -> pb.FetchRequest:
    wanted = pb.FetchPartition(topic=TOPIC, partition=0, fetch_offset=offset)
    epoch = kw.pop("current_leader_epoch", None)
    if epoch is not None:
        wanted.current_leader_epoch = epoch
    return pb.FetchRequest(partitions=[wanted], **kw)


def test_handlers_over_replicated_partitions(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            at_leader = service(leader)
            # A long poll on a follower, waiting for data: woken by the commit it learns.
            follower = cluster.followers()[0]
            # It holds the leader's no-op (offset 0), so offset 1 is the next to come.
            await wait_until(lambda: follower.log.log_end_offset >= 1, what="the no-op")
            poll = asyncio.ensure_future(
                service(follower).Fetch(fetch_request(1, max_wait_ms=10_000, min_bytes=1), None)
            )
            await asyncio.sleep(0.05)
            produced = await at_leader.Produce(produce_request(records_batch([b"a"])), None)
            answer = produced.partitions[0]
            assert answer.error.code == 0 and answer.base_offset == 1
            polled = (await asyncio.wait_for(poll, 10)).partitions[0]
            assert polled.error.code == 0 and polled.high_watermark >= 2
            assert data_values(follower) == [b"a"]

            for other in cluster.followers():
                refused = (
                    await service(other).Produce(produce_request(records_batch([b"x"])), None)
                ).partitions[0]
                assert refused.error.code == errors.NotLeaderError.code
                assert refused.base_offset == -1

            latest = await at_leader.ListOffsets(
                pb.ListOffsetsRequest(
                    partitions=[pb.ListOffsetsPartition(topic=TOPIC, partition=0, timestamp=-1)]
                ),
                None,
            )
            assert latest.partitions[0].offset == leader.partition.high_watermark

            epoch = leader.partition.leader_epoch
            current = (
                await at_leader.Fetch(fetch_request(1, current_leader_epoch=epoch), None)
            ).partitions[0]
            assert current.error.code == 0 and current.records
            stale = (
                await at_leader.Fetch(fetch_request(1, current_leader_epoch=epoch - 1), None)
            ).partitions[0]
            assert stale.error.code == errors.FencedLeaderEpochError.code
            assert stale.records == b""
        finally:
            await cluster.close()

    asyncio.run(scenario())
