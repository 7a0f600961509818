"""The group coordinator: a sans-I/O state machine for consumer groups (KIP-848 style).

See :mod:`rilke.server.coordinator.coordinator` for how the broker drives it.
"""

from .assignors import ASSIGNORS, AssignmentMember, get_assignor
from .codec import OFFSETS_TOPIC, partition_for_group
from .coordinator import GroupCoordinator, OffsetCommitResult, Reply
from .types import (
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    Assignment,
    CoordinatorConfig,
    Event,
    EventKind,
    GroupDescription,
    GroupListing,
    GroupState,
    HeartbeatRequest,
    HeartbeatResponse,
    MemberDescription,
    MemberState,
    OffsetAndMetadata,
    OffsetCommitPartition,
    OffsetCommitRequest,
    Output,
    PartitionError,
    Record,
    TopicPartition,
)

__all__ = [
    "ASSIGNORS",
    "JOIN_EPOCH",
    "LEAVE_EPOCH",
    "OFFSETS_TOPIC",
    "STATIC_LEAVE_EPOCH",
    "Assignment",
    "AssignmentMember",
    "CoordinatorConfig",
    "Event",
    "EventKind",
    "GroupCoordinator",
    "GroupDescription",
    "GroupListing",
    "GroupState",
    "HeartbeatRequest",
    "HeartbeatResponse",
    "MemberDescription",
    "MemberState",
    "OffsetAndMetadata",
    "OffsetCommitPartition",
    "OffsetCommitRequest",
    "OffsetCommitResult",
    "Output",
    "PartitionError",
    "Record",
    "Reply",
    "TopicPartition",
    "get_assignor",
    "partition_for_group",
]
