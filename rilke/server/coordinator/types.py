"""The coordinator's own types: requests in, responses and side effects out.

These are small frozen values. The gRPC layer converts protobuf messages to and from them at
the edge; nothing here knows about protobuf, sockets, threads or clocks. Time always arrives as
an argument (``now_ms``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple


class TopicPartition(NamedTuple):
    """One partition of one topic. Sorts by topic, then partition."""

    topic: str
    partition: int


Assignment = frozenset[TopicPartition]
EMPTY_ASSIGNMENT: Assignment = frozenset()

# Member epochs with a meaning of their own (Kafka's KIP-848 values).
JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class CoordinatorConfig:
    """Broker-side group settings (Kafka's names in the comments).

    ``heartbeat_interval_ms`` is short by default so that a member learns of a rebalance
    quickly: a graceful leave must be rebalanced well under a second.
    """

    heartbeat_interval_ms: int = 300  # group.consumer.heartbeat.interval.ms
    # A member waiting for partitions that others are still giving up heartbeats this often,
    # so it takes them soon after they are released.
    unreleased_heartbeat_interval_ms: int = 50
    default_session_timeout_ms: int = 45_000  # group.consumer.session.timeout.ms
    min_session_timeout_ms: int = 500  # group.consumer.min.session.timeout.ms
    max_session_timeout_ms: int = 30 * 60 * 1000  # group.consumer.max.session.timeout.ms
    default_rebalance_timeout_ms: int = 300_000  # the client's max.poll.interval.ms
    default_max_poll_interval_ms: int = 300_000  # max.poll.interval.ms
    offsets_retention_ms: int = 7 * DAY_MS  # offsets.retention.minutes
    max_group_size: int = 1000  # group.consumer.max.size
    default_assignor: str = "sticky"  # group.consumer.assignors (the first)

    def __post_init__(self) -> None:
        assert 0 < self.min_session_timeout_ms <= self.max_session_timeout_ms
        assert self.heartbeat_interval_ms > 0
        assert self.offsets_retention_ms > 0


class GroupState(enum.Enum):
    """A group's state as ``describe`` shows it (Kafka's consumer group states)."""

    EMPTY = "Empty"  # no members (offsets may remain)
    ASSIGNING = "Assigning"  # the target assignment is behind the group epoch (never long)
    RECONCILING = "Reconciling"  # some member has not reached the target assignment
    STABLE = "Stable"  # every member owns exactly its target assignment
    DEAD = "Dead"  # deleted, or all of its offsets expired
    # A classic (Kafka client) group's rounds (rilke.server.coordinator.classic).
    PREPARING_REBALANCE = "PreparingRebalance"  # waiting for its members to rejoin
    COMPLETING_REBALANCE = "CompletingRebalance"  # waiting for the leader's assignment


class MemberState(enum.Enum):
    """Where a member is in reconciling towards its target assignment (KIP-848)."""

    STABLE = "stable"  # owns its target; epoch == the group's target assignment epoch
    UNREVOKED_PARTITIONS = "unrevoked"  # must give up pending_revocation before moving on
    UNRELEASED_PARTITIONS = "unreleased"  # waits for partitions other members still hold


@dataclass(frozen=True)
class HeartbeatRequest:
    """A ConsumerGroupHeartbeat: join (member_epoch 0), heartbeat, or leave (-1, or -2 for
    a static member). ``None`` fields mean "unchanged since my last heartbeat"; a join must
    give ``subscribed_topics`` or ``subscribed_regex``.

    ``owned_partitions`` is what the member consumes now: its acknowledgement of revocations.
    ``poll_age_ms`` is how long ago the application last called poll(); the coordinator
    removes a member whose poll age exceeds its ``max_poll_interval_ms``.
    """

    group_id: str
    member_id: str = ""
    member_epoch: int = JOIN_EPOCH
    instance_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    rebalance_timeout_ms: int | None = None
    session_timeout_ms: int | None = None
    max_poll_interval_ms: int | None = None
    subscribed_topics: tuple[str, ...] | None = None
    subscribed_regex: str | None = None
    assignor: str | None = None
    owned_partitions: Assignment | None = None
    poll_age_ms: int = 0


@dataclass(frozen=True)
class HeartbeatResponse:
    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    # The partitions the member may consume now (its target minus what must first be revoked
    # from it or released by others). Always present: the client diffs it with what it owns.
    assignment: Assignment


@dataclass(frozen=True)
class OffsetCommitPartition:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


@dataclass(frozen=True)
class OffsetCommitRequest:
    """Commit offsets. A member commits with its id and epoch; an admin commit (empty member
    id, epoch -1) is allowed only while the group has no members, and creates the group."""

    group_id: str
    member_id: str = ""
    member_epoch: int = -1
    partitions: tuple[OffsetCommitPartition, ...] = ()


@dataclass(frozen=True)
class PartitionError:
    topic: str
    partition: int
    error: Exception


@dataclass(frozen=True)
class OffsetAndMetadata:
    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = -1


@dataclass(frozen=True)
class Record:
    """A record for the ``__consumer_offsets`` partition; ``value`` None is a tombstone."""

    key: bytes
    value: bytes | None


class EventKind(enum.Enum):
    MEMBER_JOINED = "member-joined"
    MEMBER_LEFT = "member-left"
    MEMBER_REMOVED = "member-removed"  # session, poll or rebalance timeout
    GROUP_EPOCH_BUMPED = "group-epoch"
    OFFSETS_EXPIRED = "offsets-expired"
    GROUP_DELETED = "group-deleted"


@dataclass(frozen=True)
class Event:
    """Something the wrapper should log. The core does no logging itself."""

    kind: EventKind
    group_id: str
    message: str


@dataclass
class Output:
    """What a call hands back besides its answer: records to append to the offsets
    partition (durably, acks=all, BEFORE the answer is sent), and events to log.

    If appending the records fails, the coordinator's memory is ahead of its log: the
    wrapper must drop this coordinator and rebuild it by replaying the partition.
    """

    records: list[Record] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)

    def extend(self, other: Output) -> None:
        self.records.extend(other.records)
        self.events.extend(other.events)


@dataclass(frozen=True)
class MemberDescription:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    member_epoch: int
    state: MemberState
    left_static: bool  # left with epoch -2 and may come back within its session timeout
    subscribed_topics: tuple[str, ...]
    subscribed_regex: str | None
    assignment: Assignment  # what it may consume now (assigned)
    pending_revocation: Assignment
    target_assignment: Assignment
    owned_partitions: Assignment  # as it last reported


@dataclass(frozen=True)
class GroupDescription:
    group_id: str
    state: GroupState
    group_epoch: int
    assignment_epoch: int
    assignor: str
    members: tuple[MemberDescription, ...]
    offsets: dict[TopicPartition, OffsetAndMetadata]


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    state: GroupState
    members: int
