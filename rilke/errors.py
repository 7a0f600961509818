"""The one error hierarchy of Rilke.

Every error Rilke raises on purpose derives from :class:`RilkeError`. The subtrees follow the
layers: records (the batch format), storage (the partition log), replication (Raft), protocol
(what crosses the wire between client and broker), and client-side failures.

Errors that cross the wire carry a numeric ``code`` (stable, part of the protocol) and a
``retriable`` flag: a client may retry a retriable error after a backoff; a non-retriable one
means the request itself must change. :func:`for_code` maps a wire code back to its class.

Programmer errors (broken invariants) are assertions and are never caught.
"""

from __future__ import annotations

from typing import ClassVar


class RilkeError(Exception):
    """The root of every error Rilke raises on purpose."""

    code: ClassVar[int] = 1
    retriable: ClassVar[bool] = False
    invalid_metadata: ClassVar[bool] = False
    description: ClassVar[str] = "unknown error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.description)

    @property
    def message(self) -> str:
        return str(self)


_BY_CODE: dict[int, type[RilkeError]] = {}


def _register(cls: type[RilkeError]) -> type[RilkeError]:
    assert cls.code not in _BY_CODE, f"duplicate error code {cls.code}"
    _BY_CODE[cls.code] = cls
    return cls


def for_code(code: int) -> type[RilkeError]:
    """The error class for a wire error code; unknown codes map to :class:`RilkeError`."""
    return _BY_CODE.get(code, RilkeError)


def error_classes() -> dict[int, type[RilkeError]]:
    """Every registered error class by its wire code (a copy)."""
    return dict(_BY_CODE)


# --- records: the batch format -------------------------------------------------------------


class RecordsError(RilkeError):
    """A record batch is malformed."""


@_register
class CorruptRecordError(RecordsError):
    """The bytes do not form a valid batch: bad CRC, wrong magic, or a length that disagrees."""

    code = 2
    description = "corrupt record batch: its CRC, magic or length does not hold"


@_register
class InvalidRecordError(RecordsError):
    """A batch is well formed but its contents break a rule (record count, offsets, size)."""

    code = 3
    description = "invalid record batch"


@_register
class UnsupportedCompressionError(RecordsError):
    code = 4
    description = "the batch uses a compression codec this build does not support"


@_register
class RecordTooLargeError(RecordsError):
    code = 5
    description = "the batch is larger than the maximum allowed size"


@_register
class DecompressedTooLargeError(RecordTooLargeError):
    """A compressed batch inflates past the configured maximum (a decompression bomb)."""

    code = 6
    description = "the batch decompresses to more than the maximum allowed size"


# --- storage: the partition log ------------------------------------------------------------


class StorageError(RilkeError):
    """The partition log refused an operation."""


@_register
class OffsetOutOfRangeError(StorageError):
    code = 10
    description = "the requested offset is outside the log's range"


@_register
class NonContiguousOffsetError(StorageError):
    """An append with preset offsets does not continue the log."""

    code = 11
    description = "the batch's offsets do not continue the log"


@_register
class CorruptBatchError(StorageError):
    """An append carried a batch whose bytes do not hold (CRC, magic, length)."""

    code = 12
    description = "corrupt batch refused by the log"


class CorruptLogDataError(StorageError):
    """Stored bytes of the log do not hold (found by a read, at start or by the scrubber), so
    the offsets ``first_offset``..``next_offset - 1`` cannot be served; reading on from
    ``next_offset`` works. Answered with Kafka's CORRUPT_MESSAGE code (2), which clients map
    to :class:`CorruptRecordError`; the message names the offset to seek() to. Not
    retriable: the bytes stay bad until repaired (from another replica)."""

    code = 2  # the wire code of CorruptRecordError; not registered (that class owns it)
    description = "stored record batches do not hold"

    def __init__(
        self, message: str | None = None, *, first_offset: int = -1, next_offset: int = -1
    ) -> None:
        super().__init__(message)
        self.first_offset = first_offset
        self.next_offset = next_offset


@_register
class BatchTooLargeError(StorageError):
    code = 13
    description = "the batch is larger than the log's maximum batch size"


@_register
class LogClosedError(StorageError):
    code = 14
    description = "the log is closed"


@_register
class DataDirLockedError(StorageError):
    code = 15
    description = "the data directory is in use by another process"


@_register
class KafkaStorageError(StorageError):
    """The broker's disk refused the operation: the file system is full, an I/O error, or a
    partition the broker cannot keep on this disk. Kafka's KAFKA_STORAGE_ERROR (Kafka's wire
    code 56; Rilke's codes are its own, and 56 is NonEmptyGroupError here). Retriable: writes
    succeed again once the disk has room; reads of other partitions go on meanwhile."""

    code = 16
    retriable = True
    description = "the broker's storage failed (disk full or I/O error)"


# --- replication ---------------------------------------------------------------------------


class ReplicationError(RilkeError):
    """Raft or the replicated partition refused an operation."""


@_register
class NotLeaderError(ReplicationError):
    code = 20
    retriable = True
    invalid_metadata = True
    description = "this broker is not the leader for the partition"
    # The current leader's node id when the refusing replica knows it (a hint for clients).
    leader_id: int | None = None

    def __init__(self, message: str | None = None, *, leader_id: int | None = None) -> None:
        super().__init__(message)
        self.leader_id = leader_id


@_register
class FencedLeaderEpochError(ReplicationError):
    code = 23
    retriable = True
    invalid_metadata = True
    description = (
        "the request's leader epoch is older than the partition's (KIP-320): refresh metadata"
    )


@_register
class UnknownLeaderEpochError(ReplicationError):
    code = 24
    retriable = True
    invalid_metadata = True
    description = "the request's leader epoch is newer than this replica knows: retry later"


@_register
class ProposalDroppedError(ReplicationError):
    code = 21
    retriable = True
    description = (
        "the proposal was dropped (no leader, leader transfer, or too many uncommitted bytes)"
    )


@_register
class NotEnoughReplicasError(ReplicationError):
    code = 22
    retriable = True
    description = "not enough in-sync replicas to accept the write"


# --- the metadata controller (rilke/replication/controller) ------------------------------


class ControllerError(ReplicationError):
    """The metadata controller refused a request or a record."""


@_register
class NotControllerError(ControllerError):
    code = 80
    retriable = True
    invalid_metadata = True
    description = "this node is not the controller leader"


@_register
class InvalidMetadataRecordError(ControllerError):
    """A metadata record does not apply to the state it reaches (an unknown topic, a stale
    leader epoch, a producer-id block that overlaps one already given): it is rejected on
    every node alike and changes nothing."""

    code = 81
    description = "the metadata record does not apply to the current metadata state"


@_register
class CorruptMetadataRecordError(ControllerError):
    """Bytes of the metadata log or a metadata snapshot do not decode."""

    code = 82
    description = "a metadata record or snapshot does not decode"


@_register
class BrokerNotRegisteredError(ControllerError):
    code = 83
    description = "the broker is not registered with the controller"


@_register
class StaleBrokerEpochError(ControllerError):
    """A heartbeat carries an epoch older than the broker's latest registration: a newer
    incarnation of the broker registered since; this one must register again."""

    code = 84
    description = "the broker epoch is stale (register again)"


@_register
class DuplicateBrokerRegistrationError(ControllerError):
    """A broker id already held by a live broker is registered from another address."""

    code = 85
    description = "another live broker holds this broker id"


@_register
class ReassignmentInProgressError(ControllerError):
    """A partition is already moving to other replicas (one move at a time per partition)."""

    code = 90
    description = "a reassignment of the partition is already running"


@_register
class InvalidReplicaAssignmentError(ControllerError):
    """A requested replica set does not fit the cluster: an unknown or unavailable broker, a
    repeated broker, a count other than the replication factor without --force."""

    code = 91
    description = "invalid replica assignment"


# --- protocol: what crosses the wire -------------------------------------------------------


class ProtocolError(RilkeError):
    """A request was refused by the broker."""


@_register
class UnknownTopicOrPartitionError(ProtocolError):
    code = 30
    retriable = False
    invalid_metadata = True
    description = "unknown topic or partition"


@_register
class TopicAlreadyExistsError(ProtocolError):
    code = 31
    description = "the topic already exists"


@_register
class InvalidTopicError(ProtocolError):
    code = 32
    description = "invalid topic name"


@_register
class InvalidRequestError(ProtocolError):
    code = 33
    description = "the request is malformed"


@_register
class InvalidConfigError(ProtocolError):
    code = 34
    description = "invalid configuration"


@_register
class MessageSizeTooLargeError(ProtocolError):
    code = 35
    description = "the request or batch exceeds the maximum size"


@_register
class OutOfOrderSequenceError(ProtocolError):
    code = 36
    description = "out-of-order sequence number from an idempotent producer"


@_register
class DuplicateSequenceError(ProtocolError):
    code = 37
    description = "duplicate sequence number (already written)"


@_register
class InvalidProducerEpochError(ProtocolError):
    code = 38
    description = "the producer has been fenced by a newer epoch"


@_register
class RequestTimedOutError(ProtocolError):
    code = 39
    retriable = True
    description = "the request timed out"


@_register
class BrokerNotAvailableError(ProtocolError):
    code = 40
    retriable = True
    description = "the broker is not available"


@_register
class LeaderNotAvailableError(ProtocolError):
    code = 41
    retriable = True
    invalid_metadata = True
    description = "the partition has no leader right now"


@_register
class InvalidPartitionsError(ProtocolError):
    code = 42
    description = "invalid number of partitions"


@_register
class InvalidReplicationFactorError(ProtocolError):
    code = 43
    description = "invalid replication factor"


@_register
class ShuttingDownError(ProtocolError):
    code = 44
    retriable = True
    description = "the broker is shutting down"


# --- consumer groups -----------------------------------------------------------------------


class GroupError(ProtocolError):
    """The group coordinator refused a request."""


@_register
class CoordinatorNotAvailableError(GroupError):
    code = 50
    retriable = True
    description = "the group coordinator is not available"


@_register
class NotCoordinatorError(GroupError):
    code = 51
    retriable = True
    invalid_metadata = True
    description = "this broker is not the coordinator of the group"


@_register
class UnknownMemberIdError(GroupError):
    code = 52
    description = "the member is not known to the group (rejoin)"


@_register
class IllegalGenerationError(GroupError):
    code = 53
    description = "the request carries a stale generation (rejoin)"


@_register
class RebalanceInProgressError(GroupError):
    code = 54
    retriable = True
    description = "the group is rebalancing"


@_register
class GroupIdNotFoundError(GroupError):
    code = 55
    description = "unknown group"


@_register
class NonEmptyGroupError(GroupError):
    code = 56
    description = "the group has live members"


@_register
class InvalidGroupIdError(GroupError):
    code = 57
    description = "invalid group id"


@_register
class FencedInstanceIdError(GroupError):
    code = 58
    description = "another member has taken this static instance id"


@_register
class InvalidSessionTimeoutError(GroupError):
    code = 59
    description = "the session timeout is outside the broker's allowed range"


@_register
class InvalidCommitOffsetError(GroupError):
    code = 60
    description = "the committed offset is outside the partition's log"


@_register
class FencedMemberEpochError(GroupError):
    """The member's epoch is not the one the coordinator holds: it must drop its partitions
    and rejoin with epoch 0."""

    code = 61
    description = "the member epoch is fenced (rejoin with epoch 0)"


@_register
class StaleMemberEpochError(GroupError):
    """An offset commit carried an epoch older than the member's current one (a heartbeat
    answer crossed it); retry with the epoch of the latest heartbeat answer."""

    code = 62
    retriable = True
    description = "the commit carries a stale member epoch"


@_register
class UnreleasedInstanceIdError(GroupError):
    code = 63
    description = "the static instance id is still held by a live member"


@_register
class CoordinatorLoadInProgressError(GroupError):
    code = 64
    retriable = True
    description = "the coordinator is still loading the group's state"


@_register
class UnsupportedAssignorError(GroupError):
    code = 65
    description = "the requested assignor is not one of sticky, range, roundrobin"


@_register
class GroupMaxSizeReachedError(GroupError):
    code = 66
    description = "the group has reached its maximum number of members"


# --- client-side ---------------------------------------------------------------------------


class ClientError(RilkeError):
    """A failure seen only by the client library."""


@_register
class KafkaTimeoutError(ClientError):
    code = 70
    retriable = True
    description = "the operation did not finish before its deadline"


@_register
class NoBrokersAvailableError(ClientError):
    code = 71
    retriable = True
    description = "no broker in bootstrap_servers could be reached"


@_register
class ProducerClosedError(ClientError):
    code = 72
    description = "the producer is closed"


@_register
class ConsumerClosedError(ClientError):
    code = 73
    description = "the consumer is closed"


@_register
class NoOffsetForPartitionError(ClientError):
    code = 74
    description = "no committed offset and auto_offset_reset='none'"


@_register
class IllegalStateError(ClientError):
    code = 75
    description = "the call is not valid in the client's current state"
