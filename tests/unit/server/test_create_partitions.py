"""Broker.create_partitions: a topic grows (durably), never shrinks, and a refusal changes
nothing. Against the real storage LogManager in a temporary directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rilke.errors import InvalidPartitionsError, UnknownTopicOrPartitionError
from rilke.server.broker import Broker
from rilke.server.config import BrokerConfig
from rilke.server.topics import TopicRegistry
from rilke.storage.manager import LogManager
from tests.produce_batches import make_batch


def _broker(data_dir: Path) -> Broker:
    manager = LogManager(data_dir, BrokerConfig().log, now_ms=0)
    return Broker(BrokerConfig(data_dir=data_dir), manager)


def test_grow_is_served_and_survives_a_restart(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", 2)
    broker.create_partitions("t", 5)
    assert broker.topics.require("t").num_partitions == 5

    async def write() -> None:
        part = broker.partition("t", 4)
        result = await part.append(make_batch([b"v"]), -1)
        assert result.base_offset == 0

    asyncio.run(write())
    broker.close()
    assert {t.name: t.num_partitions for t in TopicRegistry(tmp_path)} == {"t": 5}
    again = _broker(tmp_path)
    assert again.partition("t", 4).offsets().high_watermark == 1
    again.close()


def test_refusals_change_nothing(tmp_path: Path) -> None:
    broker = _broker(tmp_path)
    broker.create_topic("t", 3)
    for count in (1, 3):
        with pytest.raises(InvalidPartitionsError, match="must be larger"):
            broker.create_partitions("t", count)
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.create_partitions("nope", 4)
    broker.create_partitions("t", 9, validate_only=True)
    assert broker.topics.require("t").num_partitions == 3
    with pytest.raises(UnknownTopicOrPartitionError):
        broker.partition("t", 3)
    broker.close()
