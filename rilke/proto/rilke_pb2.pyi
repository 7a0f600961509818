from collections.abc import Iterable as _Iterable
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar

from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from google.protobuf.internal import containers as _containers

DESCRIPTOR: _descriptor.FileDescriptor

class Error(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    def __init__(self, code: int | None = ..., message: str | None = ...) -> None: ...

class TopicPartition(_message.Message):
    __slots__ = ("partition", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    def __init__(self, topic: str | None = ..., partition: int | None = ...) -> None: ...

class ProducePartitionData(_message.Message):
    __slots__ = ("partition", "records", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    records: bytes
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        records: bytes | None = ...,
    ) -> None: ...

class ProduceRequest(_message.Message):
    __slots__ = ("acks", "correlation_id", "partitions", "timeout_ms", "transactional_id")
    ACKS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTIONAL_ID_FIELD_NUMBER: _ClassVar[int]
    acks: int
    timeout_ms: int
    partitions: _containers.RepeatedCompositeFieldContainer[ProducePartitionData]
    correlation_id: int
    transactional_id: str
    def __init__(
        self,
        acks: int | None = ...,
        timeout_ms: int | None = ...,
        partitions: _Iterable[ProducePartitionData | _Mapping] | None = ...,
        correlation_id: int | None = ...,
        transactional_id: str | None = ...,
    ) -> None: ...

class ProducePartitionResponse(_message.Message):
    __slots__ = (
        "base_offset",
        "error",
        "log_append_time_ms",
        "log_start_offset",
        "partition",
        "topic",
    )
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    BASE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOG_APPEND_TIME_MS_FIELD_NUMBER: _ClassVar[int]
    LOG_START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    error: Error
    base_offset: int
    log_append_time_ms: int
    log_start_offset: int
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        error: Error | _Mapping | None = ...,
        base_offset: int | None = ...,
        log_append_time_ms: int | None = ...,
        log_start_offset: int | None = ...,
    ) -> None: ...

class ProduceResponse(_message.Message):
    __slots__ = ("correlation_id", "partitions")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CORRELATION_ID_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[ProducePartitionResponse]
    correlation_id: int
    def __init__(
        self,
        partitions: _Iterable[ProducePartitionResponse | _Mapping] | None = ...,
        correlation_id: int | None = ...,
    ) -> None: ...

class FetchPartition(_message.Message):
    __slots__ = ("fetch_offset", "partition", "partition_max_bytes", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    FETCH_OFFSET_FIELD_NUMBER: _ClassVar[int]
    PARTITION_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    fetch_offset: int
    partition_max_bytes: int
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        fetch_offset: int | None = ...,
        partition_max_bytes: int | None = ...,
    ) -> None: ...

class FetchRequest(_message.Message):
    __slots__ = (
        "isolation_level",
        "max_bytes",
        "max_wait_ms",
        "min_bytes",
        "partitions",
        "replica_id",
    )
    MAX_WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    MIN_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    REPLICA_ID_FIELD_NUMBER: _ClassVar[int]
    max_wait_ms: int
    min_bytes: int
    max_bytes: int
    partitions: _containers.RepeatedCompositeFieldContainer[FetchPartition]
    isolation_level: int
    replica_id: int
    def __init__(
        self,
        max_wait_ms: int | None = ...,
        min_bytes: int | None = ...,
        max_bytes: int | None = ...,
        partitions: _Iterable[FetchPartition | _Mapping] | None = ...,
        isolation_level: int | None = ...,
        replica_id: int | None = ...,
    ) -> None: ...

class FetchPartitionResponse(_message.Message):
    __slots__ = (
        "error",
        "high_watermark",
        "last_stable_offset",
        "log_start_offset",
        "partition",
        "records",
        "topic",
    )
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    LAST_STABLE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    LOG_START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    error: Error
    high_watermark: int
    last_stable_offset: int
    log_start_offset: int
    records: bytes
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        error: Error | _Mapping | None = ...,
        high_watermark: int | None = ...,
        last_stable_offset: int | None = ...,
        log_start_offset: int | None = ...,
        records: bytes | None = ...,
    ) -> None: ...

class FetchResponse(_message.Message):
    __slots__ = ("partitions",)
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[FetchPartitionResponse]
    def __init__(
        self, partitions: _Iterable[FetchPartitionResponse | _Mapping] | None = ...
    ) -> None: ...

class ListOffsetsPartition(_message.Message):
    __slots__ = ("partition", "timestamp", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    timestamp: int
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        timestamp: int | None = ...,
    ) -> None: ...

class ListOffsetsRequest(_message.Message):
    __slots__ = ("isolation_level", "partitions")
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    ISOLATION_LEVEL_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[ListOffsetsPartition]
    isolation_level: int
    def __init__(
        self,
        partitions: _Iterable[ListOffsetsPartition | _Mapping] | None = ...,
        isolation_level: int | None = ...,
    ) -> None: ...

class ListOffsetsPartitionResponse(_message.Message):
    __slots__ = ("error", "offset", "partition", "timestamp", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    error: Error
    offset: int
    timestamp: int
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        error: Error | _Mapping | None = ...,
        offset: int | None = ...,
        timestamp: int | None = ...,
    ) -> None: ...

class ListOffsetsResponse(_message.Message):
    __slots__ = ("partitions",)
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    partitions: _containers.RepeatedCompositeFieldContainer[ListOffsetsPartitionResponse]
    def __init__(
        self, partitions: _Iterable[ListOffsetsPartitionResponse | _Mapping] | None = ...
    ) -> None: ...

class MetadataRequest(_message.Message):
    __slots__ = ("allow_auto_topic_creation", "topics")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_AUTO_TOPIC_CREATION_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedScalarFieldContainer[str]
    allow_auto_topic_creation: bool
    def __init__(
        self,
        topics: _Iterable[str] | None = ...,
        allow_auto_topic_creation: bool | None = ...,
    ) -> None: ...

class BrokerInfo(_message.Message):
    __slots__ = ("host", "node_id", "port", "rack")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    RACK_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    host: str
    port: int
    rack: str
    def __init__(
        self,
        node_id: int | None = ...,
        host: str | None = ...,
        port: int | None = ...,
        rack: str | None = ...,
    ) -> None: ...

class PartitionMetadata(_message.Message):
    __slots__ = ("error", "isr", "leader_epoch", "leader_id", "partition", "replicas")
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ISR_FIELD_NUMBER: _ClassVar[int]
    partition: int
    error: Error
    leader_id: int
    leader_epoch: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    isr: _containers.RepeatedScalarFieldContainer[int]
    def __init__(
        self,
        partition: int | None = ...,
        error: Error | _Mapping | None = ...,
        leader_id: int | None = ...,
        leader_epoch: int | None = ...,
        replicas: _Iterable[int] | None = ...,
        isr: _Iterable[int] | None = ...,
    ) -> None: ...

class TopicMetadata(_message.Message):
    __slots__ = ("error", "internal", "name", "partitions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    name: str
    error: Error
    internal: bool
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionMetadata]
    def __init__(
        self,
        name: str | None = ...,
        error: Error | _Mapping | None = ...,
        internal: bool | None = ...,
        partitions: _Iterable[PartitionMetadata | _Mapping] | None = ...,
    ) -> None: ...

class MetadataResponse(_message.Message):
    __slots__ = ("brokers", "cluster_id", "controller_id", "topics")
    BROKERS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    CONTROLLER_ID_FIELD_NUMBER: _ClassVar[int]
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    brokers: _containers.RepeatedCompositeFieldContainer[BrokerInfo]
    cluster_id: str
    controller_id: int
    topics: _containers.RepeatedCompositeFieldContainer[TopicMetadata]
    def __init__(
        self,
        brokers: _Iterable[BrokerInfo | _Mapping] | None = ...,
        cluster_id: str | None = ...,
        controller_id: int | None = ...,
        topics: _Iterable[TopicMetadata | _Mapping] | None = ...,
    ) -> None: ...

class InitProducerIdRequest(_message.Message):
    __slots__ = ("producer_epoch", "producer_id", "transaction_timeout_ms", "transactional_id")
    TRANSACTIONAL_ID_FIELD_NUMBER: _ClassVar[int]
    TRANSACTION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    transactional_id: str
    transaction_timeout_ms: int
    producer_id: int
    producer_epoch: int
    def __init__(
        self,
        transactional_id: str | None = ...,
        transaction_timeout_ms: int | None = ...,
        producer_id: int | None = ...,
        producer_epoch: int | None = ...,
    ) -> None: ...

class InitProducerIdResponse(_message.Message):
    __slots__ = ("error", "producer_epoch", "producer_id")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_ID_FIELD_NUMBER: _ClassVar[int]
    PRODUCER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    error: Error
    producer_id: int
    producer_epoch: int
    def __init__(
        self,
        error: Error | _Mapping | None = ...,
        producer_id: int | None = ...,
        producer_epoch: int | None = ...,
    ) -> None: ...

class NewTopic(_message.Message):
    __slots__ = ("configs", "name", "num_partitions", "replication_factor")
    class ConfigsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...

    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_partitions: int
    replication_factor: int
    configs: _containers.ScalarMap[str, str]
    def __init__(
        self,
        name: str | None = ...,
        num_partitions: int | None = ...,
        replication_factor: int | None = ...,
        configs: _Mapping[str, str] | None = ...,
    ) -> None: ...

class CreateTopicsRequest(_message.Message):
    __slots__ = ("timeout_ms", "topics", "validate_only")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[NewTopic]
    timeout_ms: int
    validate_only: bool
    def __init__(
        self,
        topics: _Iterable[NewTopic | _Mapping] | None = ...,
        timeout_ms: int | None = ...,
        validate_only: bool | None = ...,
    ) -> None: ...

class TopicResult(_message.Message):
    __slots__ = ("error", "name")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    name: str
    error: Error
    def __init__(
        self, name: str | None = ..., error: Error | _Mapping | None = ...
    ) -> None: ...

class CreateTopicsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TopicResult]
    def __init__(
        self, results: _Iterable[TopicResult | _Mapping] | None = ...
    ) -> None: ...

class DeleteTopicsRequest(_message.Message):
    __slots__ = ("names", "timeout_ms")
    NAMES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    timeout_ms: int
    def __init__(
        self, names: _Iterable[str] | None = ..., timeout_ms: int | None = ...
    ) -> None: ...

class DeleteTopicsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TopicResult]
    def __init__(
        self, results: _Iterable[TopicResult | _Mapping] | None = ...
    ) -> None: ...

class ListTopicsRequest(_message.Message):
    __slots__ = ("include_internal",)
    INCLUDE_INTERNAL_FIELD_NUMBER: _ClassVar[int]
    include_internal: bool
    def __init__(self, include_internal: bool | None = ...) -> None: ...

class TopicListing(_message.Message):
    __slots__ = ("internal", "name", "num_partitions")
    NAME_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    num_partitions: int
    internal: bool
    def __init__(
        self,
        name: str | None = ...,
        num_partitions: int | None = ...,
        internal: bool | None = ...,
    ) -> None: ...

class ListTopicsResponse(_message.Message):
    __slots__ = ("topics",)
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[TopicListing]
    def __init__(
        self, topics: _Iterable[TopicListing | _Mapping] | None = ...
    ) -> None: ...

class DescribeTopicsRequest(_message.Message):
    __slots__ = ("names",)
    NAMES_FIELD_NUMBER: _ClassVar[int]
    names: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, names: _Iterable[str] | None = ...) -> None: ...

class PartitionDescription(_message.Message):
    __slots__ = (
        "high_watermark",
        "isr",
        "leader_epoch",
        "leader_id",
        "log_end_offset",
        "log_start_offset",
        "partition",
        "replicas",
        "size_bytes",
    )
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    REPLICAS_FIELD_NUMBER: _ClassVar[int]
    ISR_FIELD_NUMBER: _ClassVar[int]
    LOG_START_OFFSET_FIELD_NUMBER: _ClassVar[int]
    HIGH_WATERMARK_FIELD_NUMBER: _ClassVar[int]
    LOG_END_OFFSET_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    partition: int
    leader_id: int
    leader_epoch: int
    replicas: _containers.RepeatedScalarFieldContainer[int]
    isr: _containers.RepeatedScalarFieldContainer[int]
    log_start_offset: int
    high_watermark: int
    log_end_offset: int
    size_bytes: int
    def __init__(
        self,
        partition: int | None = ...,
        leader_id: int | None = ...,
        leader_epoch: int | None = ...,
        replicas: _Iterable[int] | None = ...,
        isr: _Iterable[int] | None = ...,
        log_start_offset: int | None = ...,
        high_watermark: int | None = ...,
        log_end_offset: int | None = ...,
        size_bytes: int | None = ...,
    ) -> None: ...

class TopicDescription(_message.Message):
    __slots__ = ("configs", "error", "internal", "name", "partitions", "replication_factor")
    class ConfigsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...

    NAME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    INTERNAL_FIELD_NUMBER: _ClassVar[int]
    REPLICATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CONFIGS_FIELD_NUMBER: _ClassVar[int]
    name: str
    error: Error
    internal: bool
    replication_factor: int
    partitions: _containers.RepeatedCompositeFieldContainer[PartitionDescription]
    configs: _containers.ScalarMap[str, str]
    def __init__(
        self,
        name: str | None = ...,
        error: Error | _Mapping | None = ...,
        internal: bool | None = ...,
        replication_factor: int | None = ...,
        partitions: _Iterable[PartitionDescription | _Mapping] | None = ...,
        configs: _Mapping[str, str] | None = ...,
    ) -> None: ...

class DescribeTopicsResponse(_message.Message):
    __slots__ = ("topics",)
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[TopicDescription]
    def __init__(
        self, topics: _Iterable[TopicDescription | _Mapping] | None = ...
    ) -> None: ...

class DescribeConfigsRequest(_message.Message):
    __slots__ = ("include_defaults", "topics")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_DEFAULTS_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedScalarFieldContainer[str]
    include_defaults: bool
    def __init__(
        self, topics: _Iterable[str] | None = ..., include_defaults: bool | None = ...
    ) -> None: ...

class ConfigEntry(_message.Message):
    __slots__ = ("is_default", "name", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    is_default: bool
    def __init__(
        self,
        name: str | None = ...,
        value: str | None = ...,
        is_default: bool | None = ...,
    ) -> None: ...

class TopicConfigs(_message.Message):
    __slots__ = ("entries", "error", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    topic: str
    error: Error
    entries: _containers.RepeatedCompositeFieldContainer[ConfigEntry]
    def __init__(
        self,
        topic: str | None = ...,
        error: Error | _Mapping | None = ...,
        entries: _Iterable[ConfigEntry | _Mapping] | None = ...,
    ) -> None: ...

class DescribeConfigsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TopicConfigs]
    def __init__(
        self, results: _Iterable[TopicConfigs | _Mapping] | None = ...
    ) -> None: ...

class AlterTopicConfigs(_message.Message):
    __slots__ = ("delete", "set", "topic")
    class SetEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: str | None = ..., value: str | None = ...) -> None: ...

    TOPIC_FIELD_NUMBER: _ClassVar[int]
    SET_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    topic: str
    set: _containers.ScalarMap[str, str]
    delete: _containers.RepeatedScalarFieldContainer[str]
    def __init__(
        self,
        topic: str | None = ...,
        set: _Mapping[str, str] | None = ...,
        delete: _Iterable[str] | None = ...,
    ) -> None: ...

class AlterConfigsRequest(_message.Message):
    __slots__ = ("topics", "validate_only")
    TOPICS_FIELD_NUMBER: _ClassVar[int]
    VALIDATE_ONLY_FIELD_NUMBER: _ClassVar[int]
    topics: _containers.RepeatedCompositeFieldContainer[AlterTopicConfigs]
    validate_only: bool
    def __init__(
        self,
        topics: _Iterable[AlterTopicConfigs | _Mapping] | None = ...,
        validate_only: bool | None = ...,
    ) -> None: ...

class AlterConfigsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[TopicResult]
    def __init__(
        self, results: _Iterable[TopicResult | _Mapping] | None = ...
    ) -> None: ...

class FindCoordinatorRequest(_message.Message):
    __slots__ = ("group_id",)
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    def __init__(self, group_id: str | None = ...) -> None: ...

class FindCoordinatorResponse(_message.Message):
    __slots__ = ("coordinator", "error")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_FIELD_NUMBER: _ClassVar[int]
    error: Error
    coordinator: BrokerInfo
    def __init__(
        self,
        error: Error | _Mapping | None = ...,
        coordinator: BrokerInfo | _Mapping | None = ...,
    ) -> None: ...

class TopicPartitions(_message.Message):
    __slots__ = ("partitions", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partitions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(
        self, topic: str | None = ..., partitions: _Iterable[int] | None = ...
    ) -> None: ...

class ConsumerGroupHeartbeatRequest(_message.Message):
    __slots__ = (
        "assignor",
        "group_id",
        "instance_id",
        "max_poll_interval_ms",
        "member_epoch",
        "member_id",
        "owned_partitions",
        "polling",
        "rebalance_timeout_ms",
        "session_timeout_ms",
        "subscribed_topic_names",
        "subscribed_topic_regex",
    )
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    REBALANCE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SESSION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_TOPIC_NAMES_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIBED_TOPIC_REGEX_FIELD_NUMBER: _ClassVar[int]
    ASSIGNOR_FIELD_NUMBER: _ClassVar[int]
    OWNED_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    POLLING_FIELD_NUMBER: _ClassVar[int]
    MAX_POLL_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscribed_topic_names: _containers.RepeatedScalarFieldContainer[str]
    subscribed_topic_regex: str
    assignor: str
    owned_partitions: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    polling: bool
    max_poll_interval_ms: int
    def __init__(
        self,
        group_id: str | None = ...,
        member_id: str | None = ...,
        member_epoch: int | None = ...,
        instance_id: str | None = ...,
        rebalance_timeout_ms: int | None = ...,
        session_timeout_ms: int | None = ...,
        subscribed_topic_names: _Iterable[str] | None = ...,
        subscribed_topic_regex: str | None = ...,
        assignor: str | None = ...,
        owned_partitions: _Iterable[TopicPartitions | _Mapping] | None = ...,
        polling: bool | None = ...,
        max_poll_interval_ms: int | None = ...,
    ) -> None: ...

class ConsumerGroupHeartbeatResponse(_message.Message):
    __slots__ = (
        "assignment",
        "error",
        "has_assignment",
        "heartbeat_interval_ms",
        "member_epoch",
        "member_id",
    )
    ERROR_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    HAS_ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    error: Error
    member_id: str
    member_epoch: int
    heartbeat_interval_ms: int
    has_assignment: bool
    assignment: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    def __init__(
        self,
        error: Error | _Mapping | None = ...,
        member_id: str | None = ...,
        member_epoch: int | None = ...,
        heartbeat_interval_ms: int | None = ...,
        has_assignment: bool | None = ...,
        assignment: _Iterable[TopicPartitions | _Mapping] | None = ...,
    ) -> None: ...

class OffsetCommitPartition(_message.Message):
    __slots__ = ("leader_epoch", "metadata", "offset", "partition", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LEADER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    offset: int
    leader_epoch: int
    metadata: str
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        offset: int | None = ...,
        leader_epoch: int | None = ...,
        metadata: str | None = ...,
    ) -> None: ...

class OffsetCommitRequest(_message.Message):
    __slots__ = ("group_id", "member_epoch", "member_id", "partitions")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    member_id: str
    member_epoch: int
    partitions: _containers.RepeatedCompositeFieldContainer[OffsetCommitPartition]
    def __init__(
        self,
        group_id: str | None = ...,
        member_id: str | None = ...,
        member_epoch: int | None = ...,
        partitions: _Iterable[OffsetCommitPartition | _Mapping] | None = ...,
    ) -> None: ...

class OffsetCommitPartitionResponse(_message.Message):
    __slots__ = ("error", "partition", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    error: Error
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        error: Error | _Mapping | None = ...,
    ) -> None: ...

class OffsetCommitResponse(_message.Message):
    __slots__ = ("error", "partitions")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    partitions: _containers.RepeatedCompositeFieldContainer[OffsetCommitPartitionResponse]
    def __init__(
        self,
        error: Error | _Mapping | None = ...,
        partitions: _Iterable[OffsetCommitPartitionResponse | _Mapping] | None = ...,
    ) -> None: ...

class OffsetFetchRequest(_message.Message):
    __slots__ = ("group_id", "partitions")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    partitions: _containers.RepeatedCompositeFieldContainer[TopicPartition]
    def __init__(
        self,
        group_id: str | None = ...,
        partitions: _Iterable[TopicPartition | _Mapping] | None = ...,
    ) -> None: ...

class OffsetFetchPartition(_message.Message):
    __slots__ = ("commit_timestamp_ms", "error", "metadata", "offset", "partition", "topic")
    TOPIC_FIELD_NUMBER: _ClassVar[int]
    PARTITION_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    COMMIT_TIMESTAMP_MS_FIELD_NUMBER: _ClassVar[int]
    topic: str
    partition: int
    error: Error
    offset: int
    metadata: str
    commit_timestamp_ms: int
    def __init__(
        self,
        topic: str | None = ...,
        partition: int | None = ...,
        error: Error | _Mapping | None = ...,
        offset: int | None = ...,
        metadata: str | None = ...,
        commit_timestamp_ms: int | None = ...,
    ) -> None: ...

class OffsetFetchResponse(_message.Message):
    __slots__ = ("error", "partitions")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    partitions: _containers.RepeatedCompositeFieldContainer[OffsetFetchPartition]
    def __init__(
        self,
        error: Error | _Mapping | None = ...,
        partitions: _Iterable[OffsetFetchPartition | _Mapping] | None = ...,
    ) -> None: ...

class ListGroupsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GroupListing(_message.Message):
    __slots__ = ("group_id", "members", "state")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    state: str
    members: int
    def __init__(
        self,
        group_id: str | None = ...,
        state: str | None = ...,
        members: int | None = ...,
    ) -> None: ...

class ListGroupsResponse(_message.Message):
    __slots__ = ("error", "groups")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    error: Error
    groups: _containers.RepeatedCompositeFieldContainer[GroupListing]
    def __init__(
        self,
        error: Error | _Mapping | None = ...,
        groups: _Iterable[GroupListing | _Mapping] | None = ...,
    ) -> None: ...

class DescribeGroupsRequest(_message.Message):
    __slots__ = ("group_ids",)
    GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    group_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group_ids: _Iterable[str] | None = ...) -> None: ...

class GroupMember(_message.Message):
    __slots__ = (
        "assignment",
        "client_host",
        "client_id",
        "instance_id",
        "member_epoch",
        "member_id",
        "owned_partitions",
    )
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    CLIENT_HOST_FIELD_NUMBER: _ClassVar[int]
    MEMBER_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNMENT_FIELD_NUMBER: _ClassVar[int]
    OWNED_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    instance_id: str
    client_id: str
    client_host: str
    member_epoch: int
    assignment: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    owned_partitions: _containers.RepeatedCompositeFieldContainer[TopicPartitions]
    def __init__(
        self,
        member_id: str | None = ...,
        instance_id: str | None = ...,
        client_id: str | None = ...,
        client_host: str | None = ...,
        member_epoch: int | None = ...,
        assignment: _Iterable[TopicPartitions | _Mapping] | None = ...,
        owned_partitions: _Iterable[TopicPartitions | _Mapping] | None = ...,
    ) -> None: ...

class GroupDescription(_message.Message):
    __slots__ = ("assignor", "error", "group_epoch", "group_id", "members", "offsets", "state")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GROUP_EPOCH_FIELD_NUMBER: _ClassVar[int]
    ASSIGNOR_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    OFFSETS_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    error: Error
    state: str
    group_epoch: int
    assignor: str
    members: _containers.RepeatedCompositeFieldContainer[GroupMember]
    offsets: _containers.RepeatedCompositeFieldContainer[OffsetFetchPartition]
    def __init__(
        self,
        group_id: str | None = ...,
        error: Error | _Mapping | None = ...,
        state: str | None = ...,
        group_epoch: int | None = ...,
        assignor: str | None = ...,
        members: _Iterable[GroupMember | _Mapping] | None = ...,
        offsets: _Iterable[OffsetFetchPartition | _Mapping] | None = ...,
    ) -> None: ...

class DescribeGroupsResponse(_message.Message):
    __slots__ = ("groups",)
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[GroupDescription]
    def __init__(
        self, groups: _Iterable[GroupDescription | _Mapping] | None = ...
    ) -> None: ...

class DeleteGroupsRequest(_message.Message):
    __slots__ = ("group_ids",)
    GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    group_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group_ids: _Iterable[str] | None = ...) -> None: ...

class GroupResult(_message.Message):
    __slots__ = ("error", "group_id")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    error: Error
    def __init__(
        self, group_id: str | None = ..., error: Error | _Mapping | None = ...
    ) -> None: ...

class DeleteGroupsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[GroupResult]
    def __init__(
        self, results: _Iterable[GroupResult | _Mapping] | None = ...
    ) -> None: ...
