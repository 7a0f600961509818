"""Topic names become file names: every one must fit the file system's limit (issue 8).

Real storage (LogManager) under the Broker: these are about the names on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from produce_batches import make_batch

from rilke.errors import (
    InvalidPartitionsError,
    InvalidTopicError,
    KafkaStorageError,
    UnknownTopicOrPartitionError,
)
from rilke.server import broker as broker_module
from rilke.server.broker import Broker
from rilke.server.config import load_config
from rilke.server.partition import PRODUCER_STATE_FILE
from rilke.server.topics import MAX_PARTITIONS, REGISTRY_FILE, check_names_fit
from rilke.storage.files import NAME_MAX_BYTES
from rilke.storage.manager import DELETED_SUFFIX, LogManager, deleted_dir_name

LONGEST = "b" * 249  # Kafka's own limit


@contextmanager
def real_broker(data_dir: Path) -> Iterator[Broker]:
    config = load_config({"data_dir": str(data_dir)}, env={})
    manager = LogManager(data_dir, config.log, now_ms=int(time.time() * 1000))
    try:
        broker = Broker(config, manager)
    except BaseException:
        manager.close()
        raise
    try:
        yield broker
    finally:
        broker.close()


def smaller_file_system(monkeypatch: pytest.MonkeyPatch, name_max: int) -> None:
    """As if the data directory lived on a file system with shorter file names."""
    monkeypatch.setattr(broker_module.files, "name_max", lambda directory: name_max)


# --- the rule ------------------------------------------------------------------------------


def test_every_kafka_name_fits_with_every_partition_count() -> None:
    check_names_fit(LONGEST, MAX_PARTITIONS)
    assert len(f"{LONGEST}-{MAX_PARTITIONS - 1}".encode()) <= NAME_MAX_BYTES


def test_a_name_that_cannot_fit_is_refused_with_the_limit() -> None:
    with pytest.raises(InvalidTopicError, match="the maximum is 98"):
        check_names_fit("a" * 99, 1, name_max=100)


def test_a_partition_count_that_cannot_fit_is_refused_with_the_maximum() -> None:
    check_names_fit("a" * 98, 10, name_max=100)  # aaa...-9: 100 bytes
    with pytest.raises(InvalidPartitionsError, match="at most 10 partitions"):
        check_names_fit("a" * 98, 11, name_max=100)


def test_the_name_of_a_folder_being_deleted_fits() -> None:
    name = deleted_dir_name(f"{LONGEST}-9999", "0123abcd")
    assert len(name) == NAME_MAX_BYTES
    assert name.endswith(f".0123abcd{DELETED_SUFFIX}")
    assert deleted_dir_name("t-0", "0123abcd") == f"t-0.0123abcd{DELETED_SUFFIX}"


# --- the broker ----------------------------------------------------------------------------


def test_a_249_character_topic_survives_a_clean_restart(tmp_path: Path) -> None:
    """Issue 8, defect 1: the snapshot `producer-state/<topic>-<p>.json` did not fit and the
    broker never started again."""
    with real_broker(tmp_path) as broker:
        broker.create_topic(LONGEST, 3)

        async def produce() -> None:
            for p in range(3):  # an idempotent producer: its state is snapshotted on stop
                batch = make_batch([b"v"], producer_id=7, producer_epoch=0, base_sequence=0)
                await broker.partition(LONGEST, p).append(batch, 1)

        asyncio.run(produce())
    with real_broker(tmp_path) as broker:
        assert [p.partition for p in broker.partitions_of(LONGEST)] == [0, 1, 2]
    for p in range(3):
        assert (tmp_path / f"{LONGEST}-{p}" / PRODUCER_STATE_FILE).exists()


def test_a_249_character_topic_can_be_deleted(tmp_path: Path) -> None:
    with real_broker(tmp_path) as broker:
        broker.create_topic(LONGEST, 2)
        broker.delete_topic(LONGEST)
        assert LONGEST not in broker.topics
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []


def test_creation_is_refused_when_the_file_system_cannot_hold_the_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    smaller_file_system(monkeypatch, 100)
    with real_broker(tmp_path) as broker:
        with pytest.raises(InvalidTopicError, match="at most 100 bytes"):
            broker.create_topic("a" * 99, 1)
        with pytest.raises(InvalidPartitionsError, match="at most 10 partitions"):
            broker.create_topic("a" * 98, 11)
        assert len(broker.topics) == 0
        broker.create_topic("a" * 98, 10)
    assert not (tmp_path / ("a" * 99 + "-0")).exists()


def test_a_node_starts_with_a_registered_topic_it_cannot_hold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A data directory moved to a file system with shorter names: the other topics are
    served, the one that does not fit is named in an ERROR and answers KafkaStorageError,
    and it can be deleted."""
    long_name = "L" * 120
    with real_broker(tmp_path) as broker:
        broker.create_topic("ok", 1)
        broker.create_topic(long_name, 2)
    smaller_file_system(monkeypatch, 100)
    with caplog.at_level(logging.ERROR), real_broker(tmp_path) as broker:
        assert broker.partition("ok", 0).offsets().log_end_offset == 0
        with pytest.raises(KafkaStorageError, match=f"{long_name}.*offline"):
            broker.partition(long_name, 0)
        with pytest.raises(KafkaStorageError):
            broker.partitions_of(long_name)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert any(long_name in r.getMessage() for r in errors)
        broker.delete_topic(long_name)
        with pytest.raises(UnknownTopicOrPartitionError):
            broker.partition(long_name, 0)


def test_a_node_starts_with_a_registered_name_no_file_system_holds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with real_broker(tmp_path) as broker:
        broker.create_topic("ok", 1)
    registry = tmp_path / REGISTRY_FILE
    document = json.loads(registry.read_text())
    too_long = "z" * 300
    document["topics"].append({"name": too_long, "num_partitions": 1, "configs": {}})
    registry.write_text(json.dumps(document))
    with caplog.at_level(logging.ERROR), real_broker(tmp_path) as broker:
        assert broker.partition("ok", 0).offsets().log_end_offset == 0
        with pytest.raises(KafkaStorageError):
            broker.partition(too_long, 0)
        assert any(too_long in r.getMessage() for r in caplog.records)


def test_a_snapshot_where_older_versions_kept_it_is_adopted(tmp_path: Path) -> None:
    with real_broker(tmp_path) as broker:
        broker.create_topic("t", 1)
    (tmp_path / "t-0" / PRODUCER_STATE_FILE).unlink(missing_ok=True)
    legacy = tmp_path / "producer-state"
    legacy.mkdir()
    snapshot = {"offset": 0, "producers": [[7, 0, 0, 4, 0]]}
    (legacy / "t-0.json").write_text(json.dumps(snapshot))
    with real_broker(tmp_path) as broker:
        part = broker.partition("t", 0)
        assert len(part._producers) == 1  # type: ignore[attr-defined]
    assert json.loads((tmp_path / "t-0" / PRODUCER_STATE_FILE).read_text())["producers"] == [
        [7, 0, 0, 4, 0]
    ]
    assert not legacy.exists()
