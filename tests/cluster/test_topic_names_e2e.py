"""The longest topic name Kafka allows, through a real broker process (issue 8, defect 1):
created, written by an idempotent producer, stopped cleanly, started again, read, deleted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("rilke.storage.manager")

from rilke_broker_process import BrokerFactory

from rilke import Admin, Consumer, NewTopic, Producer, TopicPartition
from rilke.errors import InvalidTopicError

LONGEST = "b" * 249


def test_a_249_character_topic_survives_a_restart_and_can_be_deleted(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    broker = broker_factory(data)
    with Admin(broker.address) as admin:
        admin.create_topics([NewTopic(LONGEST, 3)])
        with pytest.raises(InvalidTopicError):
            admin.create_topics([NewTopic("b" * 250, 1)])
    with Producer(broker.address, acks="all") as producer:
        for p in range(3):
            producer.send(LONGEST, b"v%d" % p, partition=p).get(10)
    assert broker.stop() == 0
    again = broker_factory(data)  # failed here: "File name too long"
    got: list[bytes] = []
    with Consumer(bootstrap_servers=again.address, auto_offset_reset="earliest") as consumer:
        consumer.assign([TopicPartition(LONGEST, p) for p in range(3)])
        deadline = time.monotonic() + 20
        while len(got) < 3:
            assert time.monotonic() < deadline, f"read {got} within 20 s"
            got += [r.value for records in consumer.poll(200).values() for r in records]
    assert sorted(got) == [b"v0", b"v1", b"v2"]
    with Admin(again.address) as admin:
        admin.delete_topics([LONGEST])
        assert LONGEST not in [t.name for t in admin.list_topics()]
    assert not [p for p in data.iterdir() if p.name.startswith("bbb")]
