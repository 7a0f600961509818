"""A topic deleted while consumers poll it (issue 8): a standalone consumer (assign or
subscribe) gets UnknownTopicOrPartitionError from poll, a group member has the topic's
partitions revoked; neither polls empty forever. Real broker process, Python client."""

from __future__ import annotations

import time
from typing import Any

import pytest

pytest.importorskip("rilke.storage.manager")

from rilke import Admin, Consumer, NewTopic, Producer, TopicPartition
from rilke.errors import UnknownTopicOrPartitionError

DEADLINE_S = 20.0


def setup(address: str, topics: dict[str, int]) -> None:
    with Admin(address) as admin:
        admin.create_topics([NewTopic(t, n) for t, n in topics.items()])
    with Producer(address, acks="all") as producer:
        for t, n in topics.items():
            for p in range(n):
                producer.send(t, f"{t}-{p}".encode(), partition=p)
        producer.flush(10)


def delete(address: str, topic: str) -> None:
    with Admin(address) as admin:
        admin.delete_topics([topic])


def poll_until(consumer: Consumer, want: int) -> int:
    got = 0
    deadline = time.monotonic() + DEADLINE_S
    while got < want:
        assert time.monotonic() < deadline, f"only {got} of {want} records within {DEADLINE_S}s"
        got += sum(len(records) for records in consumer.poll(200).values())
    return got


def poll_until_unknown(consumer: Consumer) -> UnknownTopicOrPartitionError:
    deadline = time.monotonic() + DEADLINE_S
    while True:
        assert time.monotonic() < deadline, "still polling a deleted topic without an error"
        try:
            consumer.poll(200)
        except UnknownTopicOrPartitionError as e:
            return e


@pytest.mark.parametrize("how", ["assign", "subscribe", "assign with a group id"])
def test_a_standalone_consumer_is_told_its_topic_was_deleted(broker: Any, how: str) -> None:
    setup(broker.address, {"doomed": 2, "kept": 1})
    group = {"group_id": "commits-only"} if how == "assign with a group id" else {}
    with Consumer(
        bootstrap_servers=broker.address, auto_offset_reset="earliest", **group
    ) as consumer:
        if how != "subscribe":
            consumer.assign([TopicPartition("doomed", 0), TopicPartition("doomed", 1)])
        else:
            consumer.subscribe(["doomed"])
        assert poll_until(consumer, 2) == 2
        delete(broker.address, "doomed")
        error = poll_until_unknown(consumer)
        assert "doomed" in str(error)
        # The consumer is still usable: another topic reads fine.
        consumer.assign([TopicPartition("kept", 0)])
        assert poll_until(consumer, 1) == 1


def test_a_group_member_has_the_deleted_topics_partitions_revoked(broker: Any) -> None:
    setup(broker.address, {"doomed": 2, "kept": 1})
    revoked: list[set[TopicPartition]] = []
    consumer = Consumer(
        bootstrap_servers=broker.address, group_id="g", auto_offset_reset="earliest"
    )
    try:
        consumer.subscribe(["doomed", "kept"], on_revoke=revoked.append)
        assert poll_until(consumer, 3) == 3
        delete(broker.address, "doomed")
        deadline = time.monotonic() + DEADLINE_S
        while any(tp.topic == "doomed" for tp in consumer.assignment()):
            assert time.monotonic() < deadline, "the deleted topic's partitions were not revoked"
            consumer.poll(200)
        assert consumer.assignment() == {TopicPartition("kept", 0)}
        assert {TopicPartition("doomed", 0), TopicPartition("doomed", 1)} <= set().union(*revoked)
    finally:
        consumer.close()
