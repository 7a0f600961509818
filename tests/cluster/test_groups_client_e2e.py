"""The consumer's group features against a real broker process: pattern subscriptions and
rebalance callbacks, auto-commit and close, static membership, the processing-liveness
timeout (max_poll_interval_ms), and asynchronous commits."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

pytest.importorskip("rilke.client.consumer", reason="needs the client library")

from waiting import wait_for

from rilke.client.admin import Admin
from rilke.client.consumer import Consumer
from rilke.client.producer import Producer
from rilke.client.structs import NewTopic, TopicPartition


def setup(bootstrap: str, topics: dict[str, int], per_partition: int = 0) -> None:
    with Admin(bootstrap) as admin:
        admin.create_topics([NewTopic(t, n) for t, n in topics.items()])
    if per_partition:
        with Producer(bootstrap, acks=-1) as producer:
            for t, n in topics.items():
                for p in range(n):
                    for i in range(per_partition):
                        producer.send(t, f"{t}-{p}-{i}".encode(), partition=p)
            producer.flush()


def drain(c: Consumer, want: int, timeout_s: float = 30) -> int:
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < want and time.monotonic() < deadline:
        got += sum(len(v) for v in c.poll(200).values())
    return got


@pytest.mark.slow
def test_pattern_callbacks_auto_commit_and_close(broker: Any) -> None:
    bootstrap = broker.address
    setup(bootstrap, {"orders-eu": 2, "orders-us": 1, "other": 1}, per_partition=3)
    assigned: list[set[TopicPartition]] = []
    revoked: list[set[TopicPartition]] = []
    c = Consumer(
        bootstrap_servers=bootstrap,
        group_id="pat",
        auto_offset_reset="earliest",
        auto_commit_interval_ms=100,
    )
    try:
        c.subscribe(pattern=r"orders-.*", on_assign=assigned.append, on_revoke=revoked.append)
        assert drain(c, 9) == 9
        assert set().union(*assigned) == {
            TopicPartition("orders-eu", 0),
            TopicPartition("orders-eu", 1),
            TopicPartition("orders-us", 0),
        }
        assert c.assignment() == set().union(*assigned)
    finally:
        c.close()  # commits the positions and leaves at once
    assert revoked and set().union(*revoked) == set().union(*assigned)
    with Admin(bootstrap) as admin:
        info = admin.describe_group("pat")
    assert info.state == "Empty"
    assert {(p.topic, p.partition): p.committed for p in info.partitions} == {
        ("orders-eu", 0): 3,
        ("orders-eu", 1): 3,
        ("orders-us", 0): 3,
    }


@pytest.mark.slow
def test_static_member_comes_back_without_a_rebalance(broker: Any) -> None:
    bootstrap = broker.address
    setup(bootstrap, {"s": 4})
    settings = {"group_id": "static", "session_timeout_ms": 20_000}
    a = Consumer(bootstrap_servers=bootstrap, group_instance_id="host-a", **settings)
    b = Consumer(bootstrap_servers=bootstrap, group_instance_id="host-b", **settings)
    try:
        a.subscribe(["s"])
        b.subscribe(["s"])
        wait_for(
            lambda: (
                bool(a.poll(50) or True)
                and bool(b.poll(50) or True)
                and len(a.assignment()) == 2
                and len(b.assignment()) == 2
            ),
            30,
            "two static members with two partitions each",
        )
        had = b.assignment()
        with Admin(bootstrap) as admin:
            epoch = admin.describe_group("static").group_epoch
        b.close()  # a static member leaves with epoch -2: its partitions wait for it
        b = Consumer(bootstrap_servers=bootstrap, group_instance_id="host-b", **settings)
        b.subscribe(["s"])
        wait_for(lambda: bool(b.poll(50) or True) and b.assignment() == had, 30, "b back")
        a.poll(50)
        assert len(a.assignment()) == 2
        with Admin(bootstrap) as admin:
            info = admin.describe_group("static")
        assert info.group_epoch == epoch
        assert info.state == "Stable"
    finally:
        a.close()
        b.close()


@pytest.mark.slow
def test_member_that_stops_polling_is_replaced_without_blocking_others(broker: Any) -> None:
    bootstrap = broker.address
    setup(bootstrap, {"slow": 2})
    settings = {"group_id": "liveness", "max_poll_interval_ms": 1500, "session_timeout_ms": 30_000}
    stuck = Consumer(bootstrap_servers=bootstrap, **settings)
    fine = Consumer(bootstrap_servers=bootstrap, **settings)
    try:
        stuck.subscribe(["slow"])
        fine.subscribe(["slow"])
        wait_for(
            lambda: (
                bool(stuck.poll(50) or True)
                and bool(fine.poll(50) or True)
                and len(stuck.assignment()) == 1
                and len(fine.assignment()) == 1
            ),
            30,
            "one partition each",
        )
        # `stuck` stops calling poll() (its heartbeats go on): after max_poll_interval_ms the
        # coordinator removes it, and `fine` takes both partitions without waiting for it.
        wait_for(
            lambda: bool(fine.poll(100) or True) and len(fine.assignment()) == 2,
            30,
            "the healthy member to take over",
        )
        # Wait until `stuck`'s heartbeats have learned that it was removed (so it is parked
        # until the application polls again) before it polls: the case in which the first
        # poll() must wake its heartbeats to rejoin.
        wait_for(lambda: stuck._aio.group.epoch == 0, 30, "the slow member to learn it left")
        # When `stuck` polls again it has lost its partition and rejoins.
        stuck.poll(100)
        wait_for(
            lambda: (
                bool(stuck.poll(50) or True)
                and bool(fine.poll(50) or True)
                and len(stuck.assignment()) == 1
            ),
            30,
            "the slow member to rejoin",
        )
    finally:
        stuck.close()
        fine.close()


@pytest.mark.slow
def test_commit_async_and_committed(broker: Any) -> None:
    bootstrap = broker.address
    setup(bootstrap, {"ca": 1}, per_partition=5)
    c = Consumer(
        bootstrap_servers=bootstrap,
        group_id="async",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        c.subscribe(["ca"])
        assert drain(c, 5) == 5
        done = threading.Event()
        seen: list[Any] = []

        def callback(offsets: Any, error: BaseException | None) -> None:
            seen.append((offsets, error))
            done.set()

        tp = TopicPartition("ca", 0)
        future = c.commit_async({tp: 4}, callback=callback)
        future.result(10)
        assert done.wait(10)
        assert seen == [({tp: 4}, None)]
        assert c.committed([tp])[tp].offset == 4
        c.commit()  # the position: 5
        assert c.committed([tp])[tp].offset == 5
    finally:
        c.close()


@pytest.mark.slow
def test_on_revoke_may_commit_from_inside_poll(broker: Any) -> None:
    bootstrap = broker.address
    setup(bootstrap, {"rv": 2}, per_partition=4)
    settings = {"group_id": "revoker", "enable_auto_commit": False, "auto_offset_reset": "earliest"}
    first = Consumer(bootstrap_servers=bootstrap, **settings)
    committed_in_callback: list[set[TopicPartition]] = []

    def on_revoke(tps: set[TopicPartition]) -> None:
        # A blocking call on the consumer from its own rebalance callback must not deadlock.
        first.commit({tp: first.position(tp) for tp in tps})
        committed_in_callback.append(tps)

    second: Consumer | None = None
    try:
        first.subscribe(["rv"], on_revoke=on_revoke)
        assert drain(first, 8) == 8
        second = Consumer(bootstrap_servers=bootstrap, **settings)
        second.subscribe(["rv"])
        wait_for(
            lambda: (
                bool(first.poll(50) or True)
                and bool(second.poll(50) or True)
                and len(first.assignment()) == 1
                and len(second.assignment()) == 1
            ),
            30,
            "the partitions to split",
        )
        [moved] = committed_in_callback
        [tp] = moved
        # The new owner starts where the callback committed: nothing left to read there.
        assert second.position(tp) == 4
        assert second.committed([tp])[tp].offset == 4
    finally:
        first.close()
        if second is not None:
            second.close()


@pytest.mark.slow
def test_asyncio_consumer_in_a_group(broker: Any) -> None:
    import asyncio

    import rilke.aio

    bootstrap = broker.address
    setup(bootstrap, {"aio": 2}, per_partition=3)

    async def main() -> None:
        assigned: list[set[TopicPartition]] = []

        async def on_assign(tps: set[TopicPartition]) -> None:
            assigned.append(tps)

        async with rilke.aio.Consumer(
            bootstrap_servers=bootstrap,
            group_id="aio",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        ) as c:
            await c.subscribe(["aio"], on_assign=on_assign)
            got = 0
            deadline = time.monotonic() + 30
            while got < 6 and time.monotonic() < deadline:
                got += sum(len(v) for v in (await c.getmany(200)).values())
            assert got == 6
            assert set().union(*assigned) == {TopicPartition("aio", 0), TopicPartition("aio", 1)}
            await c.commit()
            committed = await c.committed()
            assert {tp.partition: om.offset for tp, om in committed.items()} == {0: 3, 1: 3}

    asyncio.run(main())


@pytest.mark.slow
def test_assigned_partitions_commit_as_a_standalone_consumer(broker: Any) -> None:
    bootstrap = broker.address
    setup(bootstrap, {"man": 1}, per_partition=5)
    tp = TopicPartition("man", 0)
    c = Consumer(
        bootstrap_servers=bootstrap,
        group_id="manual",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    try:
        c.assign([tp])
        assert drain(c, 5) == 5
        c.commit()
        assert c.committed()[tp].offset == 5
    finally:
        c.close()
    # A new consumer of the group starts from the committed offset.
    c = Consumer(bootstrap_servers=bootstrap, group_id="manual", auto_offset_reset="earliest")
    try:
        c.assign([tp])
        assert c.position(tp) == 5
        # While a subscribed member is in the group, a standalone commit is refused.
        member = Consumer(bootstrap_servers=bootstrap, group_id="manual")
        try:
            member.subscribe(["man"])
            wait_for(
                lambda: bool(member.poll(50) or True) and bool(member.assignment()), 30, "a member"
            )
            from rilke.errors import NonEmptyGroupError

            with pytest.raises(NonEmptyGroupError):
                c.commit({tp: 1})
        finally:
            member.close()
    finally:
        c.close()
