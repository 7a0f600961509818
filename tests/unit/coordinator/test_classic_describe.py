"""Classic (Kafka client) groups in describe and list, and admin offset changes refused while
their members live (`rilke group describe` / `reset-offsets` on a Kafka client's group)."""

from __future__ import annotations

import struct

from rilke.errors import NonEmptyGroupError
from rilke.server.coordinator import GroupCoordinator
from rilke.server.coordinator.classic import JoinRequest
from rilke.server.coordinator.classic_describe import assigned_partitions, subscribed_topics
from rilke.server.coordinator.types import (
    GroupState,
    OffsetCommitPartition,
    OffsetCommitRequest,
    TopicPartition,
)


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">h", len(raw)) + raw


def subscription(*topics: str) -> bytes:
    """ConsumerProtocol Subscription v1: version, topics, user data, owned partitions."""
    body = struct.pack(">hi", 1, len(topics)) + b"".join(_string(t) for t in topics)
    return body + struct.pack(">i", -1) + struct.pack(">i", 0)


def assignment(parts: dict[str, list[int]]) -> bytes:
    """ConsumerProtocol Assignment v0: version, (topic, partitions) array, user data."""
    out = struct.pack(">hi", 0, len(parts))
    for topic, ps in parts.items():
        out += _string(topic) + struct.pack(f">i{len(ps)}i", len(ps), *ps)
    return out + struct.pack(">i", -1)


def _join(member: str = "") -> JoinRequest:
    return JoinRequest(
        group_id="g",
        member_id=member,
        session_timeout_ms=10_000,
        rebalance_timeout_ms=5_000,
        protocol_type="consumer",
        protocols=(("range", subscription("orders", "audit")),),
    )


def _admin_commit(c: GroupCoordinator, offset: int) -> object:
    req = OffsetCommitRequest(
        group_id="g",
        member_id="",
        member_epoch=-1,
        partitions=(OffsetCommitPartition("orders", 0, offset, -1, ""),),
    )
    return c.admin_commit_offsets(req, 100, lambda tp: 50)


def test_the_consumer_protocol_is_read_and_garbage_shows_nothing() -> None:
    assert subscribed_topics(subscription("b", "a")) == ("a", "b")
    assert assigned_partitions(assignment({"t": [0, 2], "u": [1]})) == {
        TopicPartition("t", 0),
        TopicPartition("t", 2),
        TopicPartition("u", 1),
    }
    assert subscribed_topics(b"\x00") == ()
    assert assigned_partitions(b"\x00\x00\x7f\xff\xff\xff") == frozenset()  # huge count


def test_classic_members_are_described_listed_and_block_admin_commits() -> None:
    c = GroupCoordinator()
    c.finish_loading(0)
    member, joined = c.classic.join(_join(), 0)
    assert joined is not None and joined.leader == member
    owned = assignment({"orders": [0, 1]})
    c.classic.sync("g", member, joined.generation_id, {member: owned}, 10)

    desc = c.describe_group("g")
    assert desc.state is GroupState.STABLE and desc.assignor == "range"
    [m] = desc.members
    assert m.member_id == member and m.member_epoch == joined.generation_id
    assert m.subscribed_topics == ("audit", "orders")
    assert m.assignment == {TopicPartition("orders", 0), TopicPartition("orders", 1)}
    [listing] = c.list_groups()
    assert (listing.group_id, listing.members, listing.state) == ("g", 1, GroupState.STABLE)

    refused = _admin_commit(c, 5)
    assert isinstance(refused.error, NonEmptyGroupError)  # type: ignore[attr-defined]
    assert "classic" in str(refused.error)  # type: ignore[attr-defined]
    deleted = c.delete_groups(["g"])
    assert isinstance(deleted.response["g"], NonEmptyGroupError)  # type: ignore[index]

    c.classic.leave("g", member, 20)
    done = _admin_commit(c, 5)
    assert done.error is None  # type: ignore[attr-defined]
    desc = c.describe_group("g")
    assert desc.state is GroupState.EMPTY and not desc.members
    assert desc.offsets[TopicPartition("orders", 0)].offset == 5
