"""Creating topics off the event loop: a topic is visible only once durable, its name is
taken meanwhile, a failed or interrupted creation leaves nothing, concurrent creations share
their file work. Against the real storage LogManager in a temporary directory."""

from __future__ import annotations

import asyncio
import errno
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from rilke.errors import (
    ShuttingDownError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from rilke.server.broker import Broker
from rilke.server.config import BrokerConfig
from rilke.server.topics import TopicRegistry
from rilke.storage.manager import LogManager


class GatedManager(LogManager):
    """A LogManager whose partition file work waits for ``gate`` (and may fail)."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, BrokerConfig().log, now_ms=0)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.fail_topics: set[str] = set()

    def make_partition_files(self, topic: str, partitions: Iterable[int]) -> list[Path]:
        self.entered.set()
        assert self.gate.wait(10), "the test never opened the gate"
        if topic in self.fail_topics:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().make_partition_files(topic, partitions)


def new_broker(data_dir: Path) -> tuple[Broker, GatedManager]:
    manager = GatedManager(data_dir)
    return Broker(BrokerConfig(data_dir=data_dir), manager), manager


def on_disk(data_dir: Path) -> set[str]:
    return {topic.name for topic in TopicRegistry(data_dir)}


async def wait_entered(manager: GatedManager) -> None:
    assert await asyncio.to_thread(manager.entered.wait, 10), "creation never started"


def test_a_topic_is_invisible_and_its_name_taken_until_it_is_durable(tmp_path: Path) -> None:
    broker, manager = new_broker(tmp_path)

    async def scenario() -> None:
        manager.gate.clear()
        creating = asyncio.ensure_future(broker.create_topic_async("orders", 3))
        await wait_entered(manager)
        with pytest.raises(UnknownTopicOrPartitionError, match="being created"):
            broker.partition("orders", 0)
        assert "orders" not in broker.topics
        with pytest.raises(TopicAlreadyExistsError, match="being created"):
            await broker.create_topic_async("orders", 1)
        with pytest.raises(UnknownTopicOrPartitionError):
            broker.delete_topic("orders")  # it does not exist yet
        assert "orders" not in on_disk(tmp_path)
        manager.gate.set()
        await creating

    asyncio.run(scenario())
    assert [p.partition for p in broker.partitions_of("orders")] == [0, 1, 2]
    assert "orders" in on_disk(tmp_path)
    for p in range(3):
        assert (tmp_path / f"orders-{p}" / "00000000000000000000.log").exists()
    broker.delete_topic("orders")  # once created, it can be deleted
    assert "orders" not in on_disk(tmp_path)
    broker.close()


def test_a_failed_creation_leaves_nothing_and_frees_the_name(tmp_path: Path) -> None:
    broker, manager = new_broker(tmp_path)
    manager.fail_topics.add("full")

    async def scenario() -> None:
        results = await asyncio.gather(
            broker.create_topic_async("full", 2),
            broker.create_topic_async("fine", 2),
            return_exceptions=True,
        )
        assert isinstance(results[0], OSError) and results[0].errno == errno.ENOSPC
        assert results[1] is None  # a creation sharing the file work is not harmed

    asyncio.run(scenario())
    assert "full" not in broker.topics and "full" not in on_disk(tmp_path)
    assert not list(tmp_path.glob("full-*"))
    manager.fail_topics.clear()
    asyncio.run(broker.create_topic_async("full", 1))
    assert {"full", "fine"} <= on_disk(tmp_path)
    broker.close()


def test_a_creation_interrupted_by_shutdown_does_not_come_back(tmp_path: Path) -> None:
    broker, manager = new_broker(tmp_path)

    async def scenario() -> None:
        manager.gate.clear()
        creating = asyncio.ensure_future(broker.create_topic_async("late", 2))
        await wait_entered(manager)
        broker.close()
        manager.gate.set()
        with pytest.raises(ShuttingDownError):
            await creating

    asyncio.run(scenario())
    assert "late" not in on_disk(tmp_path)
    again, _ = new_broker(tmp_path)  # partition folders of no topic are removed on start
    assert "late" not in again.topics
    assert not list(tmp_path.glob("late-*"))
    again.close()


def test_many_concurrent_creations_all_land(tmp_path: Path) -> None:
    broker, _ = new_broker(tmp_path)
    names = [f"t{i:03d}" for i in range(120)]

    async def scenario() -> None:
        await asyncio.gather(*(broker.create_topic_async(name, 2) for name in names))

    asyncio.run(scenario())
    assert {t.name for t in broker.topics} >= set(names)
    broker.close()
    reopened, _ = new_broker(tmp_path)
    assert set(names) <= {t.name for t in reopened.topics}
    assert all(len(reopened.partitions_of(name)) == 2 for name in names)
    reopened.close()
