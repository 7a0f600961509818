"""The broker-side group manager over a fake offsets log and a fake clock: requests in
protobuf, durable writes before answers, reload on restart and on a failed write, timers."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from rilke.errors import (
    CoordinatorNotAvailableError,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    InvalidCommitOffsetError,
    LogClosedError,
    NonEmptyGroupError,
    UnknownMemberIdError,
    for_code,
)
from rilke.proto import rilke_pb2 as pb
from rilke.server.coordinator import CoordinatorConfig, TopicPartition
from rilke.server.group_service import GroupManager, GroupService, tps_from_proto


class FakeLog:
    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.records: list[tuple[int, bytes, bytes | None]] = []
        self.fail = False
        self.fail_durability = False

    def append(
        self, records: list[tuple[bytes, bytes | None]], timestamp_ms: int
    ) -> asyncio.Future[None]:
        if self.fail:
            raise LogClosedError("disk on fire")
        for key, value in records:
            self.records.append((len(self.records), key, value))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_durability:
            fut.set_exception(LogClosedError("fsync failed"))
            # What was written is not durable: a reload must not see it.
            del self.records[-len(records) :]
        else:
            asyncio.get_running_loop().call_soon(fut.set_result, None)
        return fut

    def read_all(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        yield from self.records


class FakeBroker:
    def __init__(self) -> None:
        self.topics = {"t": 6}
        self.ends: dict[TopicPartition, int] = {}
        self.logs: dict[int, FakeLog] = {}
        self.count: int | None = None

    def topic_partitions(self) -> dict[str, int]:
        return dict(self.topics)

    def high_watermark(self, tp: TopicPartition) -> int | None:
        n = self.topics.get(tp.topic)
        if n is None or not 0 <= tp.partition < n:
            return None
        return self.ends.get(tp, 100)

    def offsets_partition_count(self) -> int | None:
        return self.count

    def offsets_log(self, partition_count: int, partition: int) -> FakeLog:
        self.count = partition_count
        return self.logs.setdefault(partition, FakeLog(partition))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def err(resp: Any) -> type | None:
    code = resp.error.code if resp.HasField("error") else 0
    return None if code == 0 else for_code(code)


async def started(broker: FakeBroker, clock: Clock, partitions: int = 4) -> GroupManager:
    m = GroupManager(
        broker, config=CoordinatorConfig(), partitions=partitions, clock_ms=clock, node_id=0
    )
    await m.start()
    return m


def join_req(group: str = "g", **kw: object) -> pb.ConsumerGroupHeartbeatRequest:
    return pb.ConsumerGroupHeartbeatRequest(
        group_id=group, member_epoch=0, subscribed_topic_names=["t"], session_timeout_ms=3000, **kw
    )


def test_join_commit_fetch_and_restart() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock)
        try:
            resp = await m.heartbeat(join_req(), "ipv4:127.0.0.1:5")
            assert err(resp) is None
            assert resp.member_epoch == 1 and resp.has_assignment
            assert tps_from_proto(resp.assignment) == {TopicPartition("t", p) for p in range(6)}
            commit = pb.OffsetCommitRequest(
                group_id="g", member_id=resp.member_id, member_epoch=resp.member_epoch
            )
            commit.partitions.add(topic="t", partition=2, offset=42, metadata="m")
            cresp = await m.offset_commit(commit)
            assert err(cresp) is None and err(cresp.partitions[0]) is None
            # Durable before the answer: the record is in the group's partition.
            log = broker.logs[m.partition_for("g")]
            assert any(v is not None for _, _, v in log.records)
            fetch = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert [(p.topic, p.partition, p.offset, p.metadata) for p in fetch.partitions] == [
                ("t", 2, 42, "m")
            ]
            desc = await m.describe_groups(pb.DescribeGroupsRequest(group_ids=["g", "nope"]))
            assert desc.groups[0].state == "Stable"
            assert desc.groups[0].members[0].client_host == "ipv4:127.0.0.1:5"
            assert desc.groups[0].offsets[0].offset == 42
            assert err(desc.groups[1]) is GroupIdNotFoundError
            listed = await m.list_groups()
            assert [(g.group_id, g.members) for g in listed.groups] == [("g", 1)]
        finally:
            await m.stop()
        # A restarted broker rebuilds the group and its offsets from the log.
        m2 = await started(broker, clock)
        try:
            fetch = await m2.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert fetch.partitions[0].offset == 42
            hb = pb.ConsumerGroupHeartbeatRequest(
                group_id="g", member_id=resp.member_id, member_epoch=resp.member_epoch
            )
            hb.owned_partitions.extend(resp.assignment)
            again = await m2.heartbeat(hb, "")
            assert err(again) is None and again.member_epoch == 1
        finally:
            await m2.stop()

    asyncio.run(main())


def test_commit_errors_come_back_per_partition() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock)
        try:
            commit = pb.OffsetCommitRequest(group_id="g", member_id="", member_epoch=-1)
            commit.partitions.add(topic="t", partition=0, offset=5)
            commit.partitions.add(topic="t", partition=1, offset=500)
            resp = await m.offset_commit(commit)
            assert err(resp) is InvalidCommitOffsetError
            assert err(resp.partitions[1]) is InvalidCommitOffsetError
            assert err(resp.partitions[0]) is not None  # not committed either
            fetch = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert list(fetch.partitions) == []
            commit = pb.OffsetCommitRequest(group_id="g", member_id="x", member_epoch=3)
            commit.partitions.add(topic="t", partition=0, offset=5)
            resp = await m.offset_commit(commit)
            assert err(resp) is UnknownMemberIdError
        finally:
            await m.stop()

    asyncio.run(main())


def test_failed_write_reloads_the_coordinator_and_answers_not_available() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock)
        try:
            first = await m.heartbeat(join_req(), "")
            broker.logs[m.partition_for("g")].fail = True
            with pytest.raises(CoordinatorNotAvailableError):
                await m.heartbeat(join_req(), "")  # a second member: writes, fails
            broker.logs[m.partition_for("g")].fail = False
            # The coordinator was rebuilt from the log: only the first member exists.
            desc = await m.describe_groups(pb.DescribeGroupsRequest(group_ids=["g"]))
            assert [mm.member_id for mm in desc.groups[0].members] == [first.member_id]
            service = GroupService(m, ("127.0.0.1", 9292))
            broker.logs[m.partition_for("g")].fail = True
            resp = await service.ConsumerGroupHeartbeat(join_req(), None)
            assert err(resp) is CoordinatorNotAvailableError
        finally:
            await m.stop()

    asyncio.run(main())


def test_timer_expires_sessions_and_delete_needs_an_empty_group() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock)
        try:
            resp = await m.heartbeat(join_req(), "")
            deleted = await m.delete_groups(pb.DeleteGroupsRequest(group_ids=["g", "zz"]))
            assert err(deleted.results[0]) is NonEmptyGroupError
            assert err(deleted.results[1]) is GroupIdNotFoundError
            clock.now += 3000
            await m.tick_all()
            hb = pb.ConsumerGroupHeartbeatRequest(
                group_id="g", member_id=resp.member_id, member_epoch=1
            )
            late = await m.heartbeat(hb, "")
            assert err(late) is UnknownMemberIdError
            deleted = await m.delete_groups(pb.DeleteGroupsRequest(group_ids=["g"]))
            assert err(deleted.results[0]) is None
            listed = await m.list_groups()
            assert list(listed.groups) == []
        finally:
            await m.stop()

    asyncio.run(main())


def test_find_coordinator_and_fencing_over_the_service() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock, partitions=7)
        service = GroupService(m, ("10.0.0.1", 9999), node_id=3)
        try:
            found = await service.FindCoordinator(pb.FindCoordinatorRequest(group_id="g"), None)
            assert (found.coordinator.host, found.coordinator.port) == ("10.0.0.1", 9999)
            assert found.offsets_partition == m.partition_for("g") < 7
            resp = await service.ConsumerGroupHeartbeat(join_req(), None)
            hb = pb.ConsumerGroupHeartbeatRequest(
                group_id="g", member_id=resp.member_id, member_epoch=7
            )
            fenced = await service.ConsumerGroupHeartbeat(hb, None)
            assert err(fenced) is FencedMemberEpochError
        finally:
            await m.stop()

    asyncio.run(main())


def test_concurrent_requests_share_durability_and_a_lost_write_reloads_once() -> None:
    async def main() -> None:
        broker, clock = FakeBroker(), Clock()
        m = await started(broker, clock)
        try:
            first = await m.heartbeat(join_req(), "")

            def commit(p: int, offset: int) -> pb.OffsetCommitRequest:
                req = pb.OffsetCommitRequest(
                    group_id="g", member_id=first.member_id, member_epoch=first.member_epoch
                )
                req.partitions.add(topic="t", partition=p, offset=offset)
                return req

            answers = await asyncio.gather(*(m.offset_commit(commit(p, 10 + p)) for p in range(6)))
            assert all(err(a) is None for a in answers)
            fetch = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert [p.offset for p in fetch.partitions] == [10, 11, 12, 13, 14, 15]
            # Writes that never become durable: every waiter fails, the coordinator is
            # rebuilt once from what is durable, and it still has the earlier commits.
            log = broker.logs[m.partition_for("g")]
            log.fail_durability = True
            results = await asyncio.gather(
                m.offset_commit(commit(0, 50)),
                m.heartbeat(join_req(), ""),
                return_exceptions=True,
            )
            assert all(isinstance(r, CoordinatorNotAvailableError) for r in results)
            log.fail_durability = False
            fetch = await m.offset_fetch(pb.OffsetFetchRequest(group_id="g"))
            assert fetch.partitions[0].offset == 10
            desc = await m.describe_groups(pb.DescribeGroupsRequest(group_ids=["g"]))
            assert len(desc.groups[0].members) == 1
        finally:
            await m.stop()

    asyncio.run(main())


def test_group_settings_come_from_the_broker_config() -> None:
    from rilke.errors import InvalidConfigError
    from rilke.server.config import load_config
    from rilke.server.group_service import coordinator_config

    config = load_config(
        env={"RILKE_OFFSETS_RETENTION_MINUTES": "60", "RILKE_GROUP_HEARTBEAT_INTERVAL_MS": "100"}
    )
    cc = coordinator_config(config)
    assert cc.offsets_retention_ms == 3_600_000
    assert cc.heartbeat_interval_ms == 100
    assert config.offsets_topic_partitions == 16
    with pytest.raises(InvalidConfigError):
        load_config(env={"RILKE_OFFSETS_RETENTION_MINUTES": "0"})
    bad = load_config(
        env={
            "RILKE_GROUP_MIN_SESSION_TIMEOUT_MS": "5000",
            "RILKE_GROUP_MAX_SESSION_TIMEOUT_MS": "10",
        }
    )
    with pytest.raises(InvalidConfigError):
        coordinator_config(bad)


def test_peer_host() -> None:
    from rilke.server.group_service import peer_host

    assert peer_host("ipv4:10.0.0.1:5000") == "10.0.0.1"
    assert peer_host("ipv6:[::1]:5000") == "::1"
    assert peer_host("unix:/tmp/s") == "unix:/tmp/s"
