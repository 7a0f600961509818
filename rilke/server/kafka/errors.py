"""Kafka's error codes, and the map from Rilke's typed errors to them.

Rilke's own wire codes (rilke/errors.py) are not Kafka's numbers; this module is the one place
that translates, so both listeners answer the same refusal with the same meaning.
"""

from __future__ import annotations

from rilke import errors as e
from rilke.server.coordinator.classic import InconsistentGroupProtocolError

NONE = 0
UNKNOWN_SERVER_ERROR = -1
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_FETCH_SIZE = 4
LEADER_NOT_AVAILABLE = 5
NOT_LEADER_OR_FOLLOWER = 6
REQUEST_TIMED_OUT = 7
MESSAGE_TOO_LARGE = 10
COORDINATOR_LOAD_IN_PROGRESS = 14
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
INVALID_TOPIC_EXCEPTION = 17
RECORD_LIST_TOO_LARGE = 18
NOT_ENOUGH_REPLICAS = 19
ILLEGAL_GENERATION = 22
INCONSISTENT_GROUP_PROTOCOL = 23
INVALID_GROUP_ID = 24
UNKNOWN_MEMBER_ID = 25
INVALID_SESSION_TIMEOUT = 26
REBALANCE_IN_PROGRESS = 27
INVALID_COMMIT_OFFSET_SIZE = 28
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
INVALID_REQUIRED_ACKS = 21
INVALID_REQUEST = 42
INVALID_CONFIG = 40
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_PRODUCER_EPOCH = 47
KAFKA_STORAGE_ERROR = 56
GROUP_ID_NOT_FOUND = 69
NON_EMPTY_GROUP = 68
FENCED_INSTANCE_ID = 82
UNSUPPORTED_COMPRESSION_TYPE = 76
INVALID_RECORD = 87
GROUP_MAX_SIZE_REACHED = 81
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75

# Most specific first: the first class an error is an instance of gives its Kafka code.
_BY_CLASS: tuple[tuple[type[BaseException], int], ...] = (
    (e.CorruptLogDataError, CORRUPT_MESSAGE),
    (e.CorruptRecordError, CORRUPT_MESSAGE),
    (e.CorruptBatchError, CORRUPT_MESSAGE),
    (e.DecompressedTooLargeError, RECORD_LIST_TOO_LARGE),
    (e.RecordTooLargeError, MESSAGE_TOO_LARGE),
    (e.BatchTooLargeError, MESSAGE_TOO_LARGE),
    (e.MessageSizeTooLargeError, MESSAGE_TOO_LARGE),
    (e.UnsupportedCompressionError, UNSUPPORTED_COMPRESSION_TYPE),
    (e.InvalidRecordError, INVALID_RECORD),
    (e.OffsetOutOfRangeError, OFFSET_OUT_OF_RANGE),
    (e.KafkaStorageError, KAFKA_STORAGE_ERROR),
    (e.LogClosedError, NOT_LEADER_OR_FOLLOWER),
    (e.NotLeaderError, NOT_LEADER_OR_FOLLOWER),
    # Raft refused the proposal before appending (a leader transfer, too many uncommitted
    # bytes): nothing was written; clients retry after refreshing who leads.
    (e.ProposalDroppedError, NOT_LEADER_OR_FOLLOWER),
    (e.FencedLeaderEpochError, FENCED_LEADER_EPOCH),
    (e.UnknownLeaderEpochError, UNKNOWN_LEADER_EPOCH),
    (e.NotEnoughReplicasError, NOT_ENOUGH_REPLICAS),
    (e.UnknownTopicOrPartitionError, UNKNOWN_TOPIC_OR_PARTITION),
    (e.TopicAlreadyExistsError, TOPIC_ALREADY_EXISTS),
    (e.InvalidTopicError, INVALID_TOPIC_EXCEPTION),
    (e.InvalidConfigError, INVALID_CONFIG),
    (e.OutOfOrderSequenceError, OUT_OF_ORDER_SEQUENCE_NUMBER),
    (e.DuplicateSequenceError, DUPLICATE_SEQUENCE_NUMBER),
    (e.InvalidProducerEpochError, INVALID_PRODUCER_EPOCH),
    (e.RequestTimedOutError, REQUEST_TIMED_OUT),
    (e.LeaderNotAvailableError, LEADER_NOT_AVAILABLE),
    (e.InvalidPartitionsError, INVALID_PARTITIONS),
    (e.InvalidReplicationFactorError, INVALID_REPLICATION_FACTOR),
    (e.ShuttingDownError, NOT_LEADER_OR_FOLLOWER),
    (InconsistentGroupProtocolError, INCONSISTENT_GROUP_PROTOCOL),
    (e.CoordinatorNotAvailableError, COORDINATOR_NOT_AVAILABLE),
    (e.NotCoordinatorError, NOT_COORDINATOR),
    (e.CoordinatorLoadInProgressError, COORDINATOR_LOAD_IN_PROGRESS),
    (e.UnknownMemberIdError, UNKNOWN_MEMBER_ID),
    (e.IllegalGenerationError, ILLEGAL_GENERATION),
    (e.RebalanceInProgressError, REBALANCE_IN_PROGRESS),
    (e.GroupIdNotFoundError, GROUP_ID_NOT_FOUND),
    (e.NonEmptyGroupError, NON_EMPTY_GROUP),
    (e.InvalidGroupIdError, INVALID_GROUP_ID),
    (e.InvalidSessionTimeoutError, INVALID_SESSION_TIMEOUT),
    (e.InvalidCommitOffsetError, OFFSET_OUT_OF_RANGE),
    (e.GroupMaxSizeReachedError, GROUP_MAX_SIZE_REACHED),
    (e.FencedInstanceIdError, FENCED_INSTANCE_ID),
    (e.InvalidRequestError, INVALID_REQUEST),
    (TimeoutError, REQUEST_TIMED_OUT),
)


def kafka_code(exc: BaseException) -> int:
    """Kafka's error code for an exception (UNKNOWN_SERVER_ERROR for one it has no name for)."""
    for cls, code in _BY_CLASS:
        if isinstance(exc, cls):
            return code
    return UNKNOWN_SERVER_ERROR


class MalformedMessageError(e.ProtocolError):
    """Bytes from a Kafka client that do not parse as the message they claim to be (the
    client's fault). The connection that sent them is closed, as Kafka does."""

    code = 33  # InvalidRequestError's Rilke code; not registered (that class owns it)
    retriable = False
