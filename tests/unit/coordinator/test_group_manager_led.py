"""The group manager over offsets partitions whose leader moves (a cluster's replicated
``__consumer_offsets``), with a fake led log: a coordinator serves only on the leader once
its log is caught up, answers NotCoordinator elsewhere, drops its groups the moment it loses
leadership and rebuilds them from the committed log when it leads again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest
from test_group_manager import Clock, FakeBroker, FakeLog, err

from rilke.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    NotCoordinatorError,
)
from rilke.proto import rilke_pb2 as pb
from rilke.server.coordinator import CoordinatorConfig, TopicPartition
from rilke.server.group_service import GroupManager, GroupService, LedOffsetsLog

ME = 1


class LedLog(FakeLog):
    """A FakeLog with a leader, an epoch and a high watermark below its log end while
    entries are not committed. ``shared`` is the one replicated log every node sees."""

    def __init__(self, partition: int, shared: list[tuple[int, bytes, bytes | None]]) -> None:
        super().__init__(partition)
        self.records = shared
        self.leader_id: int | None = None
        self.epoch = 0
        self.committed = 0  # high watermark, as an index into records
        self.watchers: list[Callable[[], None]] = []
        self.pending: list[asyncio.Future[None]] = []

    def leader(self) -> tuple[int | None, int]:
        return self.leader_id, self.epoch

    def caught_up(self) -> bool:
        return self.committed >= len(self.records)

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        self.watchers.append(callback)
        return lambda: self.watchers.remove(callback)

    def notify(self) -> None:
        for callback in list(self.watchers):
            callback()

    def append(
        self, records: list[tuple[bytes, bytes | None]], timestamp_ms: int
    ) -> asyncio.Future[None]:
        if self.leader_id != ME:
            raise CoordinatorNotAvailableError("not the leader")
        for key, value in records:
            self.records.append((len(self.records), key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        return fut

    def commit_all(self) -> None:
        self.committed = len(self.records)
        for fut in self.pending:
            if not fut.done():
                fut.set_result(None)
        self.pending.clear()
        self.notify()

    def read_all(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        yield from self.records[: self.committed]

    def lead(self, leader: int | None, epoch: int) -> None:
        self.leader_id, self.epoch = leader, epoch
        if leader != ME:
            for fut in self.pending:
                if not fut.done():
                    fut.set_exception(CoordinatorNotAvailableError("deposed"))
            self.pending.clear()
        self.notify()


class LedBroker:
    def __init__(self) -> None:
        self.shared: list[tuple[int, bytes, bytes | None]] = []
        self.log = LedLog(0, self.shared)

    def topic_partitions(self) -> dict[str, int]:
        return {"t": 4}

    def high_watermark(self, tp: TopicPartition) -> int | None:
        return 100 if tp.topic == "t" and 0 <= tp.partition < 4 else None

    def offsets_partition_count(self) -> int | None:
        return 1

    def offsets_log(self, partition_count: int, partition: int) -> LedLog:
        return self.log


def commit_req(offset: int) -> pb.OffsetCommitRequest:
    req = pb.OffsetCommitRequest(group_id="g", member_id="", member_epoch=-1)
    req.partitions.add(topic="t", partition=1, offset=offset)
    return req


async def commit_records(offset: int) -> list[tuple[int, bytes, bytes | None]]:
    """The records a coordinator writes for an offset commit of ``offset`` on t-1 (taken
    from a single-node manager)."""
    broker = FakeBroker()
    m = GroupManager(broker, config=CoordinatorConfig(), partitions=1, clock_ms=Clock())
    await m.start()
    try:
        assert err(await m.offset_commit(commit_req(offset))) is None
    finally:
        await m.stop()
    return broker.logs[0].records


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_led_log_satisfies_the_protocol() -> None:
    assert isinstance(LedLog(0, []), LedOffsetsLog)


def test_serves_only_as_caught_up_leader_and_drops_at_once_on_loss() -> None:
    async def main() -> None:
        broker = LedBroker()
        m = GroupManager(
            broker, config=CoordinatorConfig(), partitions=1, clock_ms=Clock(), node_id=ME
        )
        await m.start()
        try:
            broker.log.lead(2, 1)  # another node leads
            await settle()
            with pytest.raises(NotCoordinatorError, match="node 2 leads"):
                await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            # Node 2 committed offset 5; a commit of 99 after it is not committed (yet).
            broker.shared.extend(await commit_records(5))
            broker.log.committed = len(broker.shared)
            broker.shared.extend(await commit_records(99))
            broker.log.lead(ME, 2)  # this node is elected: its log is not caught up yet
            await settle()
            with pytest.raises(CoordinatorLoadInProgressError):
                await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            broker.log.commit_all()  # its term's first entry committed: all of it is
            await settle()
            fetched = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert [(p.partition, p.offset) for p in fetched.partitions] == [(1, 99)]
            first = asyncio.ensure_future(m.offset_commit(commit_req(7)))
            await settle()
            assert not first.done(), "answered before the write was committed"
            broker.log.commit_all()
            assert err(await first) is None
            fetched = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert [(p.partition, p.offset) for p in fetched.partitions] == [(1, 7)]

            # A commit in flight when the leadership moves is never acknowledged.
            second = asyncio.ensure_future(m.offset_commit(commit_req(9)))
            await settle()
            broker.log.lead(3, 3)
            # Synchronously: the very next request is refused, before any loop turn.
            with pytest.raises(NotCoordinatorError, match="node 3 leads"):
                await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            with pytest.raises(NotCoordinatorError):
                await second
            assert list(m.committed_offsets()) == []

            # Offset 9 was never committed: node 3's election cut that tail.
            del broker.shared[broker.log.committed :]
            # Regaining leadership at a new epoch rebuilds from the committed log.
            broker.log.lead(ME, 4)
            await settle()
            fetched = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert [(p.partition, p.offset) for p in fetched.partitions] == [(1, 7)]
            service = GroupService(m, ("127.0.0.1", 1), node_id=ME)
            found = await service.FindCoordinator(pb.FindCoordinatorRequest(group_id="g"), None)
            assert err(found) is None and found.coordinator.node_id == ME
            broker.log.lead(None, 5)
            lost = await service.FindCoordinator(pb.FindCoordinatorRequest(group_id="g"), None)
            assert err(lost) is CoordinatorNotAvailableError
        finally:
            await m.stop()
        assert broker.log.watchers == []

    asyncio.run(main())


def test_loading_yields_to_the_loop_and_stops_when_leadership_moves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rilke.server import group_service

    monkeypatch.setattr(group_service, "LOAD_CHUNK_RECORDS", 2)

    async def main() -> None:
        broker = LedBroker()
        for offset in range(10):  # ten commits, each its own record
            broker.shared.extend(await commit_records(offset))
        for i, (_, key, value) in enumerate(list(broker.shared)):
            broker.shared[i] = (i, key, value)
        broker.log.committed = len(broker.shared)
        m = GroupManager(
            broker, config=CoordinatorConfig(), partitions=1, clock_ms=Clock(), node_id=ME
        )
        await m.start()
        try:
            broker.log.lead(ME, 1)
            await asyncio.sleep(0)  # the reconcile runs: the load task starts
            await asyncio.sleep(0)  # its first stretch: two records, then a pause
            slot = m._slots[0]
            assert slot.loading is not None and slot.coord is None
            broker.log.lead(2, 2)  # lost mid-load: abandoned, nothing installed
            await settle()
            assert slot.loading is None and slot.coord is None
            with pytest.raises(NotCoordinatorError):
                await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            broker.log.lead(ME, 3)
            for _ in range(20):
                await asyncio.sleep(0)
                if slot.coord is not None:
                    break
            fetched = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert [(p.partition, p.offset) for p in fetched.partitions] == [(1, 9)]
            assert slot.epoch == 3
        finally:
            await m.stop()

    asyncio.run(main())
