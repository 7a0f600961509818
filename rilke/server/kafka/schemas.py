"""The message schemas of every API version this listener serves (non-flexible versions only).

Field names and order follow Apache Kafka's JSON message definitions
(clients/src/main/resources/common/message/*.json), snake-cased; the tests decode bytes built
from those definitions with these schemas. ``SERVED`` is what ApiVersions advertises: the
smallest set that kcat, kafka-python, aiokafka and confluent-kafka all work with (see
/work/shared/KAFKA_PROTOCOL.md for why each range is what it is).
"""

from __future__ import annotations

from rilke.server.kafka.types import Array, FieldType, Prim, Schema

I8, I16, I32, I64 = Prim.INT8, Prim.INT16, Prim.INT32, Prim.INT64
BOOL, STR, NSTR = Prim.BOOL, Prim.STRING, Prim.NULLABLE_STRING
BYTES, NBYTES, RECORDS = Prim.BYTES, Prim.NULLABLE_BYTES, Prim.RECORDS


def s(*fields: tuple[str, FieldType]) -> Schema:
    return tuple(fields)


def arr(of: FieldType) -> Array:
    return Array(of)


def narr(of: FieldType) -> Array:
    return Array(of, nullable=True)


PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
OFFSET_COMMIT = 8
OFFSET_FETCH = 9
FIND_COORDINATOR = 10
JOIN_GROUP = 11
HEARTBEAT = 12
LEAVE_GROUP = 13
SYNC_GROUP = 14
API_VERSIONS = 18
CREATE_TOPICS = 19
DELETE_TOPICS = 20
INIT_PRODUCER_ID = 22
DESCRIBE_CONFIGS = 32
CREATE_PARTITIONS = 37
ALTER_CONFIGS = 33
INCREMENTAL_ALTER_CONFIGS = 44

API_NAMES = {
    PRODUCE: "Produce",
    FETCH: "Fetch",
    LIST_OFFSETS: "ListOffsets",
    METADATA: "Metadata",
    OFFSET_COMMIT: "OffsetCommit",
    OFFSET_FETCH: "OffsetFetch",
    FIND_COORDINATOR: "FindCoordinator",
    JOIN_GROUP: "JoinGroup",
    HEARTBEAT: "Heartbeat",
    LEAVE_GROUP: "LeaveGroup",
    SYNC_GROUP: "SyncGroup",
    API_VERSIONS: "ApiVersions",
    CREATE_TOPICS: "CreateTopics",
    DELETE_TOPICS: "DeleteTopics",
    INIT_PRODUCER_ID: "InitProducerId",
    DESCRIBE_CONFIGS: "DescribeConfigs",
    CREATE_PARTITIONS: "CreatePartitions",
    ALTER_CONFIGS: "AlterConfigs",
    INCREMENTAL_ALTER_CONFIGS: "IncrementalAlterConfigs",
}

# (api_key, version) -> (request schema, response schema)
_T: dict[tuple[int, int], tuple[Schema, Schema]] = {}

_API_VERSIONS_KEYS = (
    "api_keys",
    arr(s(("api_key", I16), ("min_version", I16), ("max_version", I16))),
)
_T[(API_VERSIONS, 0)] = (s(), s(("error_code", I16), _API_VERSIONS_KEYS))
for _v in (1, 2):
    _T[(API_VERSIONS, _v)] = (
        s(),
        s(("error_code", I16), _API_VERSIONS_KEYS, ("throttle_time_ms", I32)),
    )

_T[(METADATA, 4)] = (
    s(("topics", narr(s(("name", STR)))), ("allow_auto_topic_creation", BOOL)),
    s(
        ("throttle_time_ms", I32),
        ("brokers", arr(s(("node_id", I32), ("host", STR), ("port", I32), ("rack", NSTR)))),
        ("cluster_id", NSTR),
        ("controller_id", I32),
        (
            "topics",
            arr(
                s(
                    ("error_code", I16),
                    ("name", STR),
                    ("is_internal", BOOL),
                    (
                        "partitions",
                        arr(
                            s(
                                ("error_code", I16),
                                ("partition_index", I32),
                                ("leader_id", I32),
                                ("replica_nodes", arr(I32)),
                                ("isr_nodes", arr(I32)),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

_T[(PRODUCE, 3)] = (
    s(
        ("transactional_id", NSTR),
        ("acks", I16),
        ("timeout_ms", I32),
        (
            "topic_data",
            arr(s(("name", STR), ("partition_data", arr(s(("index", I32), ("records", RECORDS)))))),
        ),
    ),
    s(
        (
            "responses",
            arr(
                s(
                    ("name", STR),
                    (
                        "partition_responses",
                        arr(
                            s(
                                ("index", I32),
                                ("error_code", I16),
                                ("base_offset", I64),
                                ("log_append_time_ms", I64),
                            )
                        ),
                    ),
                )
            ),
        ),
        ("throttle_time_ms", I32),  # last in Produce, first everywhere else
    ),
)

_T[(FETCH, 4)] = (
    s(
        ("replica_id", I32),
        ("max_wait_ms", I32),
        ("min_bytes", I32),
        ("max_bytes", I32),
        ("isolation_level", I8),
        (
            "topics",
            arr(
                s(
                    ("topic", STR),
                    (
                        "partitions",
                        arr(
                            s(
                                ("partition", I32),
                                ("fetch_offset", I64),
                                ("partition_max_bytes", I32),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
    s(
        ("throttle_time_ms", I32),
        (
            "responses",
            arr(
                s(
                    ("topic", STR),
                    (
                        "partitions",
                        arr(
                            s(
                                ("partition_index", I32),
                                ("error_code", I16),
                                ("high_watermark", I64),
                                ("last_stable_offset", I64),
                                (
                                    "aborted_transactions",
                                    narr(s(("producer_id", I64), ("first_offset", I64))),
                                ),
                                ("records", RECORDS),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

_T[(LIST_OFFSETS, 2)] = (
    s(
        ("replica_id", I32),
        ("isolation_level", I8),
        (
            "topics",
            arr(
                s(
                    ("name", STR),
                    ("partitions", arr(s(("partition_index", I32), ("timestamp", I64)))),
                )
            ),
        ),
    ),
    s(
        ("throttle_time_ms", I32),
        (
            "topics",
            arr(
                s(
                    ("name", STR),
                    (
                        "partitions",
                        arr(
                            s(
                                ("partition_index", I32),
                                ("error_code", I16),
                                ("timestamp", I64),
                                ("offset", I64),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

_T[(INIT_PRODUCER_ID, 0)] = (
    s(("transactional_id", NSTR), ("transaction_timeout_ms", I32)),
    s(
        ("throttle_time_ms", I32),
        ("error_code", I16),
        ("producer_id", I64),
        ("producer_epoch", I16),
    ),
)

_T[(FIND_COORDINATOR, 0)] = (
    s(("key", STR)),
    s(("error_code", I16), ("node_id", I32), ("host", STR), ("port", I32)),
)
_T[(FIND_COORDINATOR, 1)] = (
    s(("key", STR), ("key_type", I8)),
    s(
        ("throttle_time_ms", I32),
        ("error_code", I16),
        ("error_message", NSTR),
        ("node_id", I32),
        ("host", STR),
        ("port", I32),
    ),
)

_T[(JOIN_GROUP, 2)] = (
    s(
        ("group_id", STR),
        ("session_timeout_ms", I32),
        ("rebalance_timeout_ms", I32),
        ("member_id", STR),
        ("protocol_type", STR),
        ("protocols", arr(s(("name", STR), ("metadata", BYTES)))),
    ),
    s(
        ("throttle_time_ms", I32),
        ("error_code", I16),
        ("generation_id", I32),
        ("protocol_name", STR),
        ("leader", STR),
        ("member_id", STR),
        ("members", arr(s(("member_id", STR), ("metadata", BYTES)))),
    ),
)

_T[(SYNC_GROUP, 1)] = (
    s(
        ("group_id", STR),
        ("generation_id", I32),
        ("member_id", STR),
        ("assignments", arr(s(("member_id", STR), ("assignment", BYTES)))),
    ),
    s(("throttle_time_ms", I32), ("error_code", I16), ("assignment", BYTES)),
)

_T[(HEARTBEAT, 1)] = (
    s(("group_id", STR), ("generation_id", I32), ("member_id", STR)),
    s(("throttle_time_ms", I32), ("error_code", I16)),
)

_T[(LEAVE_GROUP, 1)] = (
    s(("group_id", STR), ("member_id", STR)),
    s(("throttle_time_ms", I32), ("error_code", I16)),
)

_COMMIT_TOPICS = (
    "topics",
    arr(
        s(
            ("name", STR),
            (
                "partitions",
                arr(
                    s(
                        ("partition_index", I32),
                        ("committed_offset", I64),
                        ("committed_metadata", NSTR),
                    )
                ),
            ),
        )
    ),
)
_COMMIT_RESPONSE_TOPICS = (
    "topics",
    arr(s(("name", STR), ("partitions", arr(s(("partition_index", I32), ("error_code", I16)))))),
)
_COMMIT_REQUEST = s(
    ("group_id", STR),
    ("generation_id_or_member_epoch", I32),
    ("member_id", STR),
    ("retention_time_ms", I64),
    _COMMIT_TOPICS,
)
_T[(OFFSET_COMMIT, 2)] = (_COMMIT_REQUEST, s(_COMMIT_RESPONSE_TOPICS))
_T[(OFFSET_COMMIT, 3)] = (_COMMIT_REQUEST, s(("throttle_time_ms", I32), _COMMIT_RESPONSE_TOPICS))


def _offset_fetch_topics(nullable: bool) -> tuple[str, FieldType]:
    inner = s(("name", STR), ("partition_indexes", arr(I32)))
    return ("topics", narr(inner) if nullable else arr(inner))


_FETCH_RESPONSE_TOPICS = (
    "topics",
    arr(
        s(
            ("name", STR),
            (
                "partitions",
                arr(
                    s(
                        ("partition_index", I32),
                        ("committed_offset", I64),
                        ("metadata", NSTR),
                        ("error_code", I16),
                    )
                ),
            ),
        )
    ),
)
_T[(OFFSET_FETCH, 1)] = (
    s(("group_id", STR), _offset_fetch_topics(False)),
    s(_FETCH_RESPONSE_TOPICS),
)
_T[(OFFSET_FETCH, 2)] = (
    s(("group_id", STR), _offset_fetch_topics(True)),
    s(_FETCH_RESPONSE_TOPICS, ("error_code", I16)),
)
_T[(OFFSET_FETCH, 3)] = (
    s(("group_id", STR), _offset_fetch_topics(True)),
    s(("throttle_time_ms", I32), _FETCH_RESPONSE_TOPICS, ("error_code", I16)),
)

_T[(CREATE_TOPICS, 2)] = (
    s(
        (
            "topics",
            arr(
                s(
                    ("name", STR),
                    ("num_partitions", I32),
                    ("replication_factor", I16),
                    ("assignments", arr(s(("partition_index", I32), ("broker_ids", arr(I32))))),
                    ("configs", arr(s(("name", STR), ("value", NSTR)))),
                )
            ),
        ),
        ("timeout_ms", I32),
        ("validate_only", BOOL),
    ),
    s(
        ("throttle_time_ms", I32),
        ("topics", arr(s(("name", STR), ("error_code", I16), ("error_message", NSTR)))),
    ),
)

_T[(DELETE_TOPICS, 1)] = (
    s(("topic_names", arr(STR)), ("timeout_ms", I32)),
    s(("throttle_time_ms", I32), ("responses", arr(s(("name", STR), ("error_code", I16))))),
)

_T[(DESCRIBE_CONFIGS, 1)] = (
    s(
        (
            "resources",
            arr(
                s(
                    ("resource_type", I8),
                    ("resource_name", STR),
                    ("configuration_keys", narr(STR)),
                )
            ),
        ),
        ("include_synonyms", BOOL),
    ),
    s(
        ("throttle_time_ms", I32),
        (
            "results",
            arr(
                s(
                    ("error_code", I16),
                    ("error_message", NSTR),
                    ("resource_type", I8),
                    ("resource_name", STR),
                    (
                        "configs",
                        arr(
                            s(
                                ("name", STR),
                                ("value", NSTR),
                                ("read_only", BOOL),
                                ("config_source", I8),
                                ("is_sensitive", BOOL),
                                (
                                    "synonyms",
                                    arr(s(("name", STR), ("value", NSTR), ("source", I8))),
                                ),
                            )
                        ),
                    ),
                )
            ),
        ),
    ),
)

_CREATE_PARTITIONS = (
    s(
        (
            "topics",
            arr(
                s(
                    ("name", STR),
                    ("count", I32),
                    ("assignments", narr(s(("broker_ids", arr(I32))))),
                )
            ),
        ),
        ("timeout_ms", I32),
        ("validate_only", BOOL),
    ),
    s(
        ("throttle_time_ms", I32),
        ("results", arr(s(("name", STR), ("error_code", I16), ("error_message", NSTR)))),
    ),
)
_T[(CREATE_PARTITIONS, 0)] = _CREATE_PARTITIONS
_T[(CREATE_PARTITIONS, 1)] = _CREATE_PARTITIONS


def _alter_configs(operation: bool) -> tuple[Schema, Schema]:
    """AlterConfigs v0-1 (``operation`` False) and IncrementalAlterConfigs v0 (True)."""
    op: tuple[tuple[str, FieldType], ...] = (("config_operation", I8),) if operation else ()
    config = s(("name", STR), *op, ("value", NSTR))
    return (
        s(
            (
                "resources",
                arr(s(("resource_type", I8), ("resource_name", STR), ("configs", arr(config)))),
            ),
            ("validate_only", BOOL),
        ),
        s(
            ("throttle_time_ms", I32),
            (
                "responses",
                arr(
                    s(
                        ("error_code", I16),
                        ("error_message", NSTR),
                        ("resource_type", I8),
                        ("resource_name", STR),
                    )
                ),
            ),
        ),
    )


_T[(ALTER_CONFIGS, 0)] = _T[(ALTER_CONFIGS, 1)] = _alter_configs(operation=False)
_T[(INCREMENTAL_ALTER_CONFIGS, 0)] = _alter_configs(operation=True)

SCHEMAS: dict[tuple[int, int], tuple[Schema, Schema]] = dict(_T)


def _ranges() -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for key, version in SCHEMAS:
        low, high = out.get(key, (version, version))
        out[key] = (min(low, version), max(high, version))
    return out


# api_key -> (min version, max version), as ApiVersions advertises them. Every version in a
# range has a schema above (checked at import).
SERVED: dict[int, tuple[int, int]] = _ranges()
assert all((key, v) in SCHEMAS for key, (low, high) in SERVED.items() for v in range(low, high + 1))


def request_schema(api_key: int, version: int) -> Schema | None:
    pair = SCHEMAS.get((api_key, version))
    return None if pair is None else pair[0]


def response_schema(api_key: int, version: int) -> Schema:
    return SCHEMAS[(api_key, version)][1]
