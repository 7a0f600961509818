"""A classic (Kafka client) group as ``describe`` shows it: its members with their
subscriptions and assignments, in the same :class:`GroupDescription` as Rilke's own groups, so
`rilke group describe` shows who consumes what and the lag of Kafka clients' groups too.

Kafka's consumer clients (protocol type ``consumer``) carry their subscription and assignment
in the ConsumerProtocol's binary form, opaque to the coordinator's rounds; this module reads
them (versions 0-3 share the fields read here: a version, then the topics). Other protocol
types (Kafka Connect, a client's own), or bytes that do not parse, show no partitions rather
than failing the describe. Sans-I/O, like the rest of the coordinator.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from .classic import ClassicGroup, ClassicState
from .types import (
    EMPTY_ASSIGNMENT,
    Assignment,
    GroupDescription,
    GroupState,
    MemberDescription,
    MemberState,
    OffsetAndMetadata,
    TopicPartition,
)

CONSUMER_PROTOCOL_TYPE = "consumer"
_STATES = {
    ClassicState.EMPTY: GroupState.EMPTY,
    ClassicState.PREPARING_REBALANCE: GroupState.PREPARING_REBALANCE,
    ClassicState.COMPLETING_REBALANCE: GroupState.COMPLETING_REBALANCE,
    ClassicState.STABLE: GroupState.STABLE,
}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, s: struct.Struct) -> int:
        if self.pos + s.size > len(self.data):
            raise ValueError("truncated")
        (value,) = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return int(value)

    def int16(self) -> int:
        return self._take(_I16)

    def int32(self) -> int:
        return self._take(_I32)

    def string(self) -> str:
        n = self.int16()
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("bad string")
        text = self.data[self.pos : self.pos + n].decode("utf-8")
        self.pos += n
        return text

    def count(self) -> int:
        n = self.int32()
        if n < 0 or n > len(self.data):  # an array cannot hold more items than bytes
            raise ValueError("bad array length")
        return n


def subscribed_topics(metadata: bytes) -> tuple[str, ...]:
    """The topics of a ConsumerProtocol Subscription; () when it does not parse."""
    try:
        r = _Reader(metadata)
        r.int16()  # version
        return tuple(sorted(r.string() for _ in range(r.count())))
    except (ValueError, UnicodeDecodeError):
        return ()


def assigned_partitions(assignment: bytes) -> Assignment:
    """The partitions of a ConsumerProtocol Assignment; empty when it does not parse."""
    try:
        r = _Reader(assignment)
        r.int16()  # version
        out: set[TopicPartition] = set()
        for _ in range(r.count()):
            topic = r.string()
            out.update(TopicPartition(topic, r.int32()) for _ in range(r.count()))
        return frozenset(out)
    except (ValueError, UnicodeDecodeError):
        return EMPTY_ASSIGNMENT


def describe_classic(
    group: ClassicGroup, offsets: Mapping[TopicPartition, OffsetAndMetadata]
) -> GroupDescription:
    """``group`` with the committed ``offsets`` kept for it (its admin-commit Group's). A
    member's epoch is the group's generation; its state is ``stable`` once the group is."""
    consumer = group.protocol_type == CONSUMER_PROTOCOL_TYPE
    members = []
    for m in sorted(group.members.values(), key=lambda m: m.member_id):
        assignment = assigned_partitions(m.assignment) if consumer else EMPTY_ASSIGNMENT
        topics: tuple[str, ...] = ()
        if consumer and group.protocol_name:
            topics = subscribed_topics(
                next((md for name, md in m.protocols if name == group.protocol_name), b"")
            )
        members.append(
            MemberDescription(
                member_id=m.member_id,
                instance_id=None,
                client_id=m.client_id,
                client_host=m.client_host,
                member_epoch=group.generation_id,
                state=MemberState.STABLE,
                left_static=False,
                subscribed_topics=topics,
                subscribed_regex=None,
                assignment=assignment,
                pending_revocation=EMPTY_ASSIGNMENT,
                target_assignment=assignment,
                owned_partitions=assignment,
            )
        )
    return GroupDescription(
        group_id=group.group_id,
        state=_STATES[group.state],
        group_epoch=group.generation_id,
        assignment_epoch=group.generation_id,
        assignor=group.protocol_name,
        members=tuple(members),
        offsets=dict(sorted(offsets.items())),
    )
