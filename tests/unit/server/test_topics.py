from pathlib import Path

import pytest

from rilke.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from rilke.server.topics import TopicInfo, TopicRegistry, validate_topic_name
from rilke.storage.config import LogConfig


@pytest.mark.parametrize("name", ["a", "orders.v1", "A-b_c.9", "x" * 249])
def test_legal_names(name: str) -> None:
    validate_topic_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 250, "a b", "a/b", "ü", "a:b"])
def test_illegal_names(name: str) -> None:
    with pytest.raises(InvalidTopicError):
        validate_topic_name(name)


def test_registry_persists_and_reloads(tmp_path: Path) -> None:
    registry = TopicRegistry(tmp_path)
    registry.check_new("t", 3, 1, {"retention.ms": "1000"}, LogConfig())
    registry.add(TopicInfo("t", 3, {"retention.ms": "1000"}))
    registry.add(TopicInfo("__internal", 1))
    again = TopicRegistry(tmp_path)
    assert [t.name for t in again] == ["__internal", "t"]
    topic = again.require("t")
    assert topic.num_partitions == 3
    assert topic.log_config(LogConfig()).retention_ms == 1000
    assert again.require("__internal").internal
    again.set_configs("t", {})
    assert TopicRegistry(tmp_path).require("t").configs == {}
    again.remove("t")
    assert "t" not in TopicRegistry(tmp_path)
    assert not list(tmp_path.glob("*.tmp"))


def test_check_new_refusals(tmp_path: Path) -> None:
    registry = TopicRegistry(tmp_path)
    registry.add(TopicInfo("a.b", 1))
    defaults = LogConfig()
    with pytest.raises(TopicAlreadyExistsError):
        registry.check_new("a.b", 1, 1, {}, defaults)
    with pytest.raises(InvalidTopicError, match="collides"):
        registry.check_new("a_b", 1, 1, {}, defaults)
    with pytest.raises(InvalidPartitionsError):
        registry.check_new("c", 0, 1, {}, defaults)
    with pytest.raises(InvalidReplicationFactorError):
        registry.check_new("c", 1, 3, {}, defaults)
    with pytest.raises(InvalidConfigError, match="unknown topic config"):
        registry.check_new("c", 1, 1, {"retention.mss": "1"}, defaults)
    with pytest.raises(InvalidConfigError):
        registry.check_new("c", 1, 1, {"retention.ms": "soon"}, defaults)
    with pytest.raises(UnknownTopicOrPartitionError):
        registry.require("c")
    assert [t.name for t in TopicRegistry(tmp_path)] == ["a.b"]


def test_damaged_registry_is_reported(tmp_path: Path) -> None:
    (tmp_path / "topics.json").write_text("{not json")
    with pytest.raises(InvalidConfigError, match="damaged"):
        TopicRegistry(tmp_path)
