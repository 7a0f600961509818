"""PartitionMover over real replicated partitions (in-process nodes on 127.0.0.1, the real
transport): a reassignment that removes the leader itself, while an idempotent producer
writes acks=all, ends with the target's voters holding every acknowledged record once, in
order; and leader balancing gives the preferred leader its leadership back.

The metadata is a shared view the test holds: a completed move is applied to it as the
controller would (replicas become the target)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import grpc

from rilke.errors import RilkeError
from rilke.partition.interface import ACKS_ALL
from rilke.replication.controller import (
    BrokerInfo,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.replication.controller.move_steps import LeaderBalancer
from rilke.replication.runtime import RaftRuntime
from rilke.server.cluster.mover import PartitionMover

from .cluster import wait_until
from .partition_cluster import GROUP, TOPIC, Node, PartitionCluster, data_values, records_batch

TOPIC_ID = GROUP.split("/")[0]
PID = 11


class Metadata:
    """The view every node's mover reads; ``report`` completes the move in it. Its leader
    is the group's Raft leader, as the leaders' reports keep a real controller's."""

    def __init__(
        self, cluster: PartitionCluster, brokers: list[int], replicas: tuple[int, ...]
    ) -> None:
        self.cluster = cluster
        self.brokers = {
            b: BrokerInfo(b, "127.0.0.1", 1, None, BrokerState.ALIVE, 1) for b in brokers
        }
        self.part = PartitionInfo(replicas, replicas[0], 1, replicas)
        self.reports: list[tuple[int, ...]] = []

    def view(self) -> MetadataView:
        leader = self.cluster.leader()
        if leader is not None:
            self.part = replace(self.part, leader=leader.node_id)
        topic = TopicMeta(TOPIC, TOPIC_ID, {}, (self.part,))
        return MetadataView("c", 1, dict(self.brokers), {TOPIC: topic})

    async def report(self, topic: str, partition: int, target: tuple[int, ...]) -> None:
        assert (topic, partition) == (TOPIC, 0)
        self.reports.append(target)
        if self.part.target == target:
            self.part = PartitionInfo(target, target[0], self.part.leader_epoch, target)


async def add_node(cluster: PartitionCluster, node_id: int) -> Node:
    """A new node: a replica of nothing yet, its group joining with the current replicas."""
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    cluster.addrs[node_id] = f"127.0.0.1:{port}"
    for node in cluster.nodes.values():
        node.host.add_peer(node_id, cluster.addrs[node_id])
    return await cluster._start_node(node_id, server)


def movers(cluster: PartitionCluster, meta: Metadata, delay_s: float) -> list[PartitionMover]:
    out = []
    for node in cluster.nodes.values():
        runtime: RaftRuntime = node.host.runtime
        mover = PartitionMover(
            node.node_id,
            runtime,
            meta.view,
            meta.report,
            interval_s=0.05,
            balancer=LeaderBalancer(delay_s, cooldown_s=1.0),
        )
        mover.start()
        out.append(mover)
    return out


async def produce(cluster: PartitionCluster, values: range, acked: list[int]) -> None:
    """Idempotent acks=all batches, one at a time, each retried at the leader until
    acknowledged (a retry of a batch that did commit is answered with its offset)."""
    for i in values:
        batch = records_batch([b"v%d" % i], producer_id=PID, epoch=0, sequence=i)
        while True:
            leader = cluster.leader()
            if leader is not None:
                try:
                    await asyncio.wait_for(leader.partition.append(batch, ACKS_ALL), 5.0)
                except TimeoutError:
                    pass
                except RilkeError as e:  # not the leader, a transfer under way: retriable
                    assert e.retriable, e
                else:
                    acked.append(i)
                    break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.005)


def test_a_move_off_the_leader_while_producing_loses_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        running: list[PartitionMover] = []
        try:
            first = await cluster.wait_leader()
            await add_node(cluster, 4)
            stay = [n for n in (1, 2, 3) if n != first.node_id]
            target = (stay[0], stay[1], 4)
            meta = Metadata(cluster, [1, 2, 3, 4], (1, 2, 3))
            meta.part = replace(meta.part, leader=first.node_id, target=target)
            running = movers(cluster, meta, delay_s=60.0)
            acked: list[int] = []
            done_at: list[int] = []

            async def writer() -> None:
                i = 0
                while not done_at or i < done_at[0] + 20:  # and on, with the new replicas
                    await produce(cluster, range(i, i + 1), acked)
                    i += 1

            writing = asyncio.ensure_future(writer())
            await wait_until(lambda: not meta.part.target, 60.0, "the move to complete")
            done_at.append(len(acked))
            assert done_at[0] > 0, "no write was acknowledged during the move"
            assert meta.part.replicas == target and meta.reports[0] == target
            # The Raft group has the target's voters, on the new leader.
            leader = await cluster.wait_leader()
            assert leader.node_id in target
            status = leader.host.runtime.status(GROUP)
            assert set(status.voters) == set(target) and not status.learners
            await asyncio.wait_for(writing, 60.0)
            total = len(acked)
            assert acked == list(range(total))
            want = [b"v%d" % i for i in range(total)]
            await wait_until(
                lambda: all(data_values(cluster.nodes[n]) == want for n in target),
                30.0,
                "every target replica to hold each acknowledged record once, in order",
            )
        finally:
            for mover in running:
                await mover.stop()
            await cluster.close()

    asyncio.run(scenario())


def test_the_preferred_leader_gets_its_leadership_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = PartitionCluster(tmp_path)
        await cluster.start()
        running: list[PartitionMover] = []
        try:
            leader = await cluster.wait_leader()
            preferred = next(n for n in (1, 2, 3) if n != leader.node_id)
            others = [n for n in (1, 2, 3) if n != preferred]
            meta = Metadata(cluster, [1, 2, 3], (preferred, *others))
            running = movers(cluster, meta, delay_s=0.3)
            await wait_until(
                lambda: (lead := cluster.leader()) is not None and lead.node_id == preferred,
                20.0,
                f"node {preferred} (the preferred leader) to lead",
            )
            # While the preferred broker is fenced in the metadata, nothing moves back to it.
            meta.brokers[preferred] = replace(meta.brokers[preferred], state=BrokerState.FENCED)
            cluster.nodes[preferred].host.runtime.transfer_leadership(GROUP, others[0])
            await wait_until(
                lambda: (lead := cluster.leader()) is not None and lead.node_id == others[0],
                20.0,
                f"node {others[0]} to lead",
            )
            await asyncio.sleep(1.0)  # several balancer delays: it must stay put
            lead = cluster.leader()
            assert lead is not None and lead.node_id == others[0]
        finally:
            for mover in running:
                await mover.stop()
            await cluster.close()

    asyncio.run(scenario())
