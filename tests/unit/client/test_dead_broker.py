"""A dead broker fails client calls fast with NoBrokersAvailableError, not at their deadline.

Each client here has a request timeout of 5 minutes; the pytest timeout on each test (well
under it) is what fails if a call waits for its deadline instead of giving up.
"""

from __future__ import annotations

import asyncio

import pytest

from rilke.client.admin import Admin
from rilke.client.cluster import Cluster
from rilke.client.consumer import Consumer
from rilke.client.producer import Producer
from rilke.client.structs import NewTopic, TopicPartition
from rilke.errors import NoBrokersAvailableError

DEAD = "127.0.0.1:1"  # nothing listens on port 1: every connection is refused
LONG_MS = 300_000


@pytest.mark.timeout(60)
def test_admin_with_no_broker_fails_fast():
    with Admin(DEAD, request_timeout_ms=LONG_MS) as admin:
        with pytest.raises(NoBrokersAvailableError, match=r"127\.0\.0\.1:1.*is running"):
            admin.list_topics()
        with pytest.raises(NoBrokersAvailableError):
            admin.create_topics([NewTopic("t", 1)])


@pytest.mark.timeout(60)
def test_consumer_and_producer_with_no_broker_fail_fast():
    with pytest.raises(NoBrokersAvailableError):
        Consumer("t", bootstrap_servers=DEAD, request_timeout_ms=LONG_MS)
    with Producer(DEAD, request_timeout_ms=LONG_MS, max_block_ms=LONG_MS) as producer:
        with pytest.raises(NoBrokersAvailableError):
            producer.send("t", b"x")
        producer.close(0)


@pytest.mark.timeout(60)
def test_cluster_refresh_with_no_broker_says_what_failed():
    async def main() -> None:
        cluster = Cluster([DEAD, "127.0.0.1:2"], request_timeout_ms=LONG_MS)
        try:
            with pytest.raises(NoBrokersAvailableError) as info:
                await cluster.refresh()
            message = str(info.value)
            assert "127.0.0.1:1" in message and "127.0.0.1:2" in message
            assert "300.0s" not in message  # it did not wait for the deadline
        finally:
            await cluster.close()

    asyncio.run(main())


@pytest.mark.timeout(60)
def test_admin_and_consumer_fail_fast_once_their_broker_died(fake):
    admin = Admin(fake.address, request_timeout_ms=LONG_MS)
    fake.broker.create("t", 1)
    consumer = Consumer(bootstrap_servers=fake.address, request_timeout_ms=LONG_MS)
    try:
        assert [t.name for t in admin.list_topics()] == ["t"]
        consumer.assign([TopicPartition("t", 0)])
        assert consumer.end_offsets([TopicPartition("t", 0)]) == {TopicPartition("t", 0): 0}
        fake.stop()
        with pytest.raises(NoBrokersAvailableError, match=fake.address):
            admin.list_topics()
        with pytest.raises(NoBrokersAvailableError):
            consumer.end_offsets([TopicPartition("t", 0)])
        assert consumer.poll(100) == {}  # poll keeps to its own timeout
    finally:
        admin.close()
        consumer.close()
