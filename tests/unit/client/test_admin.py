"""The admin client against the in-process fake broker."""

from __future__ import annotations

import pytest

from rilke.client.admin import Admin
from rilke.client.structs import NewTopic, TopicPartition
from rilke.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError


def test_topic_lifecycle(fake):
    with Admin(fake.address) as a:
        a.create_topics([NewTopic("t", 3, configs={"retention.ms": "1000"})])
        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic("t", 1)])
        assert [(t.name, t.num_partitions) for t in a.list_topics()] == [("t", 3)]
        (d,) = a.describe_topics(["t"])
        assert [p.partition for p in d.partitions] == [0, 1, 2]
        a.alter_configs({"t": {"retention.ms": "5", "cleanup.policy": "compact"}})
        cfg = {e.name: e.value for e in a.describe_configs(["t"])["t"]}
        assert cfg == {"retention.ms": "5", "cleanup.policy": "compact"}
        assert (
            a.list_offsets({TopicPartition("t", 0): "latest"})[TopicPartition("t", 0)].offset == 0
        )
        a.delete_topics(["t"])
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics(["t"])
        with pytest.raises(UnknownTopicOrPartitionError):
            a.describe_topics(["t"])


def test_create_topics_needs_new_topic(fake):
    with Admin(fake.address) as a, pytest.raises(TypeError):
        a.create_topics(["t"])  # type: ignore[list-item]
