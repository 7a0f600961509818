"""The broker builds partitions through its factory and drives them through the Partition
protocol only (lifecycle included)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from produce_batches import make_batch

from rilke.partition.interface import Leadership, Partition, PartitionSpec
from rilke.server.broker import Broker
from rilke.server.config import load_config
from rilke.server.partition import FlushSlots, LocalPartition, LocalPartitionFactory
from rilke.storage.manager import LogManager


class RecordingFactory:
    """Builds LocalPartitions (as the default does) and remembers what it was asked for and
    what the broker then did with them."""

    def __init__(self, node_id: int) -> None:
        self.inner = LocalPartitionFactory(
            node_id=node_id, clock_ms=lambda: int(time.time() * 1000), flush_slots=FlushSlots()
        )
        self.specs: list[PartitionSpec] = []
        self.calls: list[tuple[str, str, int]] = []

    def __call__(self, spec: PartitionSpec) -> Partition:
        self.specs.append(spec)
        part = self.inner(spec)
        assert isinstance(part, LocalPartition)
        calls = self.calls

        class Watched(LocalPartition):
            async def maintain(self, now_ms: int) -> None:
                calls.append(("maintain", self.topic, self.partition))
                await super().maintain(now_ms)

            def close(self) -> None:
                calls.append(("close", self.topic, self.partition))
                super().close()

            def forget_state(self) -> None:
                calls.append(("forget_state", self.topic, self.partition))
                super().forget_state()

        part.__class__ = Watched
        return part


def _broker(data_dir: Path, factory: RecordingFactory, node_id: int = 3) -> Broker:
    config = load_config({"data_dir": str(data_dir), "node_id": str(node_id)}, env={})
    manager = LogManager(data_dir, config.log, now_ms=int(time.time() * 1000))
    return Broker(config, manager, partition_factory=factory)


def test_partitions_come_from_the_factory_and_live_through_the_protocol(tmp_path: Path) -> None:
    factory = RecordingFactory(node_id=3)
    broker = _broker(tmp_path, factory)
    try:
        broker.create_topic("t", 2)
        assert [(s.topic, s.partition) for s in factory.specs] == [("t", 0), ("t", 1)]
        assert all(s.state_dir == s.log.directory for s in factory.specs)
        part = broker.partition("t", 1)
        assert part.leadership == Leadership(3, 0, (3,), (3,))
        assert part.leader_epoch == 0

        async def produce_and_maintain() -> None:
            await part.append(make_batch([b"x"]), 1)
            await broker.maintain()

        asyncio.run(produce_and_maintain())
        assert ("maintain", "t", 0) in factory.calls and ("maintain", "t", 1) in factory.calls
        broker.delete_topic("t")
        assert factory.calls[-4:] == [
            ("close", "t", 0),
            ("forget_state", "t", 0),
            ("close", "t", 1),
            ("forget_state", "t", 1),
        ]
    finally:
        broker.close()


def test_maintenance_writes_the_producer_state_snapshot(tmp_path: Path) -> None:
    factory = RecordingFactory(node_id=0)
    broker = _broker(tmp_path, factory, node_id=0)
    try:
        broker.create_topic("t", 1, configs={"flush.messages": "1"})
        part = broker.partition("t", 0)
        batch = make_batch([b"a"], producer_id=5, producer_epoch=0, base_sequence=0)

        async def main() -> None:
            await part.append(batch, -1)  # acknowledged once flushed
            await broker.maintain()

        asyncio.run(main())
        snapshot = factory.specs[0].state_dir / "producer-state.json"
        assert snapshot.exists()
    finally:
        broker.close()
    factory = RecordingFactory(node_id=0)
    broker = _broker(tmp_path, factory, node_id=0)
    try:
        assert [(s.topic, s.partition) for s in factory.specs] == [("t", 0)]

        async def retry() -> int:
            return (await broker.partition("t", 0).append(batch, 1)).base_offset

        assert asyncio.run(retry()) == 0  # the retry is known after the restart
    finally:
        broker.close()


def test_leadership_subscription_of_a_local_partition_never_fires(tmp_path: Path) -> None:
    factory = RecordingFactory(node_id=1)
    broker = _broker(tmp_path, factory, node_id=1)
    try:
        broker.create_topic("t", 1)
        seen: list[Leadership] = []
        unsubscribe = broker.partition("t", 0).subscribe_leadership(seen.append)
        broker.alter_configs("t", {"retention.ms": "1000"}, [])
        unsubscribe()
        assert seen == []
    finally:
        broker.close()
