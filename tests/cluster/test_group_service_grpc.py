"""The Group service of a real broker process, spoken to in raw gRPC (no client library):
find the coordinator, join, commit, see offsets survive a restart, and bad input refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from rilke.errors import (
    FencedMemberEpochError,
    InvalidCommitOffsetError,
    NonEmptyGroupError,
    UnknownTopicOrPartitionError,
    for_code,
)
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pbg


def err(msg: Any) -> type | None:
    return for_code(msg.error.code) if msg.HasField("error") and msg.error.code else None


def stubs(address: str) -> tuple[grpc.Channel, Any, Any]:
    channel = grpc.insecure_channel(address)
    return channel, pbg.GroupStub(channel), pbg.AdminStub(channel)


def test_join_commit_restart_and_refusals(broker_factory: Any, tmp_path: Path) -> None:
    data = tmp_path / "data"
    b = broker_factory(data)
    channel, group, admin = stubs(b.address)
    with channel:
        created = admin.CreateTopics(
            pb.CreateTopicsRequest(topics=[pb.NewTopic(name="t", num_partitions=3)]), timeout=10
        )
        assert not created.results[0].HasField("error") or created.results[0].error.code == 0
        found = group.FindCoordinator(pb.FindCoordinatorRequest(group_id="g"), timeout=10)
        assert err(found) is None
        assert f"{found.coordinator.host}:{found.coordinator.port}" == b.address
        joined = group.ConsumerGroupHeartbeat(
            pb.ConsumerGroupHeartbeatRequest(
                group_id="g", member_epoch=0, subscribed_topic_names=["t"], session_timeout_ms=30000
            ),
            timeout=10,
        )
        assert err(joined) is None and joined.member_epoch == 1
        assert sorted(p for tps in joined.assignment for p in tps.partitions) == [0, 1, 2]
        # Past the log end (nothing produced): refused, nothing committed.
        commit = pb.OffsetCommitRequest(
            group_id="g", member_id=joined.member_id, member_epoch=joined.member_epoch
        )
        commit.partitions.add(topic="t", partition=0, offset=5)
        refused = group.OffsetCommit(commit, timeout=10)
        assert err(refused) is InvalidCommitOffsetError
        commit = pb.OffsetCommitRequest(
            group_id="g", member_id=joined.member_id, member_epoch=joined.member_epoch
        )
        commit.partitions.add(topic="t", partition=0, offset=0, metadata="hello")
        assert err(group.OffsetCommit(commit, timeout=10)) is None
        commit = pb.OffsetCommitRequest(group_id="g", member_id=joined.member_id, member_epoch=9)
        commit.partitions.add(topic="t", partition=0, offset=0)
        assert err(group.OffsetCommit(commit, timeout=10)) is FencedMemberEpochError
        commit = pb.OffsetCommitRequest(
            group_id="g", member_id=joined.member_id, member_epoch=joined.member_epoch
        )
        commit.partitions.add(topic="nope", partition=0, offset=0)
        assert err(group.OffsetCommit(commit, timeout=10)) is UnknownTopicOrPartitionError
        deleted = group.DeleteGroups(pb.DeleteGroupsRequest(group_ids=["g"]), timeout=10)
        assert err(deleted.results[0]) is NonEmptyGroupError
        # Internal topics are listed as internal, and hidden by default.
        listing = admin.ListTopics(pb.ListTopicsRequest(), timeout=10)
        assert [t.name for t in listing.topics] == ["t"]
    assert b.stop(20) == 0
    b2 = broker_factory(data)
    channel, group, _ = stubs(b2.address)
    with channel:
        fetched = group.OffsetFetch(pb.OffsetFetchRequest(group_id="g"), timeout=10)
        assert [(p.topic, p.partition, p.offset, p.metadata) for p in fetched.partitions] == [
            ("t", 0, 0, "hello")
        ]
        # The member survived too: its next heartbeat at its epoch is answered.
        hb = pb.ConsumerGroupHeartbeatRequest(
            group_id="g", member_id=joined.member_id, member_epoch=joined.member_epoch
        )
        hb.owned_partitions.add(topic="t", partitions=[0, 1, 2])
        again = group.ConsumerGroupHeartbeat(hb, timeout=10)
        assert err(again) is None and again.member_epoch == 1
        described = group.DescribeGroups(pb.DescribeGroupsRequest(group_ids=["g"]), timeout=10)
        assert described.groups[0].state == "Stable"
        assert described.groups[0].members[0].member_id == joined.member_id
