"""gRPC CreatePartitions on a single node, through the admin client: a topic grows to the new
total, a lower or equal count, an unknown topic and an internal topic are refused (changing
nothing), validate_only changes nothing; describe with linearizable=True answers (a single
node's view is the only one)."""

from __future__ import annotations

from pathlib import Path

import pytest
from inproc import running_broker

from rilke.client.admin import Admin
from rilke.client.structs import NewTopic
from rilke.errors import InvalidPartitionsError, InvalidTopicError, UnknownTopicOrPartitionError


def test_create_partitions_grows_and_refuses_without_change(tmp_path: Path) -> None:
    with running_broker(tmp_path) as b, Admin(f"127.0.0.1:{b.port}") as admin:
        admin.create_topics([NewTopic("t", 2, 1)])
        admin.create_partitions({"t": 5})
        (t,) = admin.describe_topics(["t"])
        assert [p.partition for p in t.partitions] == [0, 1, 2, 3, 4]

        with pytest.raises(InvalidPartitionsError, match="must be larger"):
            admin.create_partitions({"t": 3})
        with pytest.raises(InvalidPartitionsError, match="must be larger"):
            admin.create_partitions({"t": 5})
        with pytest.raises(UnknownTopicOrPartitionError):
            admin.create_partitions({"nope": 4})
        with pytest.raises(InvalidTopicError, match="internal"):
            admin.create_partitions({"__consumer_offsets": 99})
        admin.create_partitions({"t": 9}, validate_only=True)
        results = admin.create_partitions_results({"t": 6, "nope": 2})
        assert results["t"] is None
        assert isinstance(results["nope"], UnknownTopicOrPartitionError)

        (t,) = admin.describe_topics(["t"], linearizable=True)
        assert len(t.partitions) == 6
