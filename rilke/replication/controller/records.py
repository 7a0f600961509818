"""The metadata log's change records, and their encoding in record batches.

Every change to the cluster's metadata is one of the frozen dataclasses below. A record is
carried in a RecordBatch v2 as one Kafka record: the key is the record's type name
(``b"topic"``), the value its fields as compact JSON with a version (``{"v":1,...}``). A batch
of records is one Raft entry of the metadata group, applied all or nothing
(:meth:`MetadataState.apply_batch`).

Broker heartbeats are not records (as in Kafka's KRaft): the controller leader keeps them in
memory, and only what they change (a broker fenced or unfenced) is written to the log.

Pure: no I/O, no clock (the caller passes the batch timestamp). Decoding checks every field's
type and raises :class:`CorruptMetadataRecordError` naming the record and the field.
"""

from __future__ import annotations

import functools
import json
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any, ClassVar

from rilke.errors import CorruptMetadataRecordError, RecordsError
from rilke.records import BatchBuilder, iter_batches

RECORD_VERSION = 1
"""The version every record is written with; decoding accepts versions 1..RECORD_VERSION."""

NO_LEADER = -1


@dataclass(frozen=True, slots=True)
class ClusterCreated:
    """The first record of a metadata log: the cluster's id."""

    TYPE: ClassVar[str] = "cluster"
    cluster_id: str


@dataclass(frozen=True, slots=True)
class BrokerRegistered:
    """A broker (new, or a new incarnation of a known id) announces its address and rack.
    Its broker epoch is this record's offset in the metadata log; it starts fenced."""

    TYPE: ClassVar[str] = "register-broker"
    broker_id: int
    host: str
    port: int
    rack: str | None = None
    kafka_host: str | None = None
    """Where Kafka clients reach the broker (its advertised Kafka listener); None: it has
    no Kafka listener (records written before the field existed have none either)."""
    kafka_port: int = 0


@dataclass(frozen=True, slots=True)
class BrokerFenced:
    """The broker stopped heartbeating: it leads nothing and is left out of placement."""

    TYPE: ClassVar[str] = "fence-broker"
    broker_id: int
    broker_epoch: int


@dataclass(frozen=True, slots=True)
class BrokerUnfenced:
    """The broker heartbeats (again): it is alive."""

    TYPE: ClassVar[str] = "unfence-broker"
    broker_id: int
    broker_epoch: int


@dataclass(frozen=True, slots=True)
class BrokerDecommissioned:
    """The broker is being removed: it gets no new replicas; its leaderships move away."""

    TYPE: ClassVar[str] = "decommission-broker"
    broker_id: int


@dataclass(frozen=True, slots=True)
class TopicCreated:
    """A topic with its id and the configs set on it (followed by its PartitionsAdded)."""

    TYPE: ClassVar[str] = "topic"
    name: str
    topic_id: str
    configs: dict[str, str]


@dataclass(frozen=True, slots=True)
class TopicConfigsChanged:
    """The configs set on a topic, replaced whole."""

    TYPE: ClassVar[str] = "topic-configs"
    topic_id: str
    configs: dict[str, str]


@dataclass(frozen=True, slots=True)
class PartitionsAdded:
    """Partitions ``first_partition``.. of a topic with their replicas; each starts with its
    first replica as leader, leader epoch 0, and every replica in sync."""

    TYPE: ClassVar[str] = "partitions"
    topic_id: str
    first_partition: int
    replicas: tuple[tuple[int, ...], ...]


@dataclass(frozen=True, slots=True)
class PartitionChanged:
    """A partition's new leader (or NO_LEADER) and in-sync replicas; ``leader_epoch`` is the
    partition's current epoch + 1."""

    TYPE: ClassVar[str] = "partition-change"
    topic_id: str
    partition: int
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReassignmentStarted:
    """A partition is to move to the replicas ``target`` (preferred leader first). The
    partition's leader carries the move out in its Raft group, one membership change at a
    time (new replicas added as learners, promoted once caught up, then the old ones
    removed); ``replicas`` stay as they are until :class:`ReassignmentCompleted`. A target
    with the same brokers in another order only changes the preferred leader."""

    TYPE: ClassVar[str] = "reassign"
    topic_id: str
    partition: int
    target: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReassignmentCompleted:
    """The partition's Raft group has exactly the target's brokers as voters: its replicas
    become the target (in-sync replicas: those of the target; the leader stays if it is one
    of them). ``reporter`` is the partition leader that reported it."""

    TYPE: ClassVar[str] = "reassign-done"
    topic_id: str
    partition: int
    target: tuple[int, ...]
    reporter: int


@dataclass(frozen=True, slots=True)
class TopicDeleted:
    TYPE: ClassVar[str] = "delete-topic"
    topic_id: str


@dataclass(frozen=True, slots=True)
class ProducerIdsAllocated:
    """Producer ids ``first_producer_id``..+``count`` belong to ``broker_id``; blocks are
    handed out in order, so InitProducerId is unique cluster-wide."""

    TYPE: ClassVar[str] = "producer-ids"
    broker_id: int
    first_producer_id: int
    count: int


@dataclass(frozen=True, slots=True)
class VotersChanged:
    """The controller's voters after a change (Raft's own CONFIG entry changes the quorum;
    this record keeps the metadata state's view of it)."""

    TYPE: ClassVar[str] = "voters"
    voters: tuple[int, ...]


MetadataRecord = (
    ClusterCreated
    | BrokerRegistered
    | BrokerFenced
    | BrokerUnfenced
    | BrokerDecommissioned
    | TopicCreated
    | TopicConfigsChanged
    | PartitionsAdded
    | PartitionChanged
    | TopicDeleted
    | ProducerIdsAllocated
    | VotersChanged
    | ReassignmentStarted
    | ReassignmentCompleted
)

RECORD_TYPES: dict[str, type[Any]] = {
    cls.TYPE: cls
    for cls in (
        ClusterCreated,
        BrokerRegistered,
        BrokerFenced,
        BrokerUnfenced,
        BrokerDecommissioned,
        TopicCreated,
        TopicConfigsChanged,
        PartitionsAdded,
        PartitionChanged,
        TopicDeleted,
        ProducerIdsAllocated,
        VotersChanged,
        ReassignmentStarted,
        ReassignmentCompleted,
    )
}

_HINTS: dict[type[Any], dict[str, Any]] = {
    cls: typing.get_type_hints(cls) for cls in RECORD_TYPES.values()
}


def encode_record(record: MetadataRecord) -> tuple[bytes, bytes]:
    """The record as (key, value): its type name and its fields as compact JSON."""
    body: dict[str, object] = {"v": RECORD_VERSION}
    for f in fields(record):
        body[f.name] = getattr(record, f.name)
    value = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return record.TYPE.encode(), value


def decode_record(key: bytes | None, value: bytes | None) -> MetadataRecord:
    """The record of a (key, value) pair; raises CorruptMetadataRecordError saying what is
    wrong (unknown type, bad JSON, a version from the future, a missing or mistyped field)."""
    name = key.decode("utf-8", "replace") if key is not None else None
    cls = RECORD_TYPES.get(name or "")
    if cls is None:
        raise CorruptMetadataRecordError(f"unknown metadata record type {name!r}")
    try:
        body = json.loads(value or b"")
    except ValueError as e:
        raise CorruptMetadataRecordError(f"metadata record {name!r}: not JSON ({e})") from None
    if not isinstance(body, dict):
        raise CorruptMetadataRecordError(f"metadata record {name!r}: not a JSON object")
    version = body.get("v")
    if type(version) is not int or not 1 <= version <= RECORD_VERSION:
        raise CorruptMetadataRecordError(
            f"metadata record {name!r}: version {version!r}, this build reads 1..{RECORD_VERSION}"
        )
    args: dict[str, object] = {}
    for f in fields(cls):
        if f.name not in body:
            if f.default is not MISSING:  # a field with a default may be left out
                args[f.name] = f.default
                continue
            raise CorruptMetadataRecordError(f"metadata record {name!r}: no field {f.name!r}")
        args[f.name] = _typed(body[f.name], _HINTS[cls][f.name], name or "", f.name)
    return typing.cast(MetadataRecord, cls(**args))


def _typed(value: object, hint: Any, record: str, field: str) -> object:
    """``value`` (from JSON) checked against ``hint``, lists turned into tuples."""
    try:
        return _converter(hint)(value)
    except _Mistyped:
        raise CorruptMetadataRecordError(
            f"metadata record {record!r}: field {field!r} is {value!r}, not of type {hint}"
        ) from None


class _Mistyped(Exception):
    pass


@functools.cache
def _converter(hint: Any) -> Callable[[object], object]:
    """A checker-converter for one field type, built once per type: decoding a 10,000-partition
    record calls it per element, so the type's shape is not re-read each time."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is int:

        def check_int(value: object) -> object:
            if type(value) is not int:
                raise _Mistyped
            return value

        return check_int
    if hint is str:

        def check_str(value: object) -> object:
            if not isinstance(value, str):
                raise _Mistyped
            return value

        return check_str
    if origin is typing.Union or origin is types.UnionType:
        inner = _converter(next(a for a in args if a is not type(None)))
        return lambda value: None if value is None else inner(value)
    if origin is dict:

        def check_map(value: object) -> object:
            if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()
            ):
                raise _Mistyped
            return value

        return check_map
    assert origin is tuple, f"no converter for {hint}"
    item = _converter(args[0])
    if args[0] is int:

        def check_ints(value: object) -> object:
            if not isinstance(value, list) or not all(type(v) is int for v in value):
                raise _Mistyped
            return tuple(value)

        return check_ints

    def check_tuple(value: object) -> object:
        if not isinstance(value, list):
            raise _Mistyped
        return tuple(map(item, value))

    return check_tuple


def encode_batch(records: Sequence[MetadataRecord], timestamp_ms: int) -> bytes:
    """One RecordBatch v2 holding ``records`` in order (one Raft entry of the metadata group,
    spanning ``len(records)`` offsets). ``timestamp_ms`` is the proposer's clock."""
    assert records, "a metadata batch holds at least one record"
    builder = BatchBuilder()
    for record in records:
        key, value = encode_record(record)
        builder.append(key, value, None, timestamp_ms)
    return builder.build()


MAX_RECORDS_PER_BATCH = 1_000
"""A decision larger than this is proposed as several entries (fencing a broker of a
10,000-partition cluster makes ~3,300 records, ~350 KiB in one batch: measured 74-95 ms to
decode and apply; 1,000 records keep an entry near 100 KiB, under the Raft bounds)."""


def encode_batches(
    records: Sequence[MetadataRecord],
    timestamp_ms: int,
    max_records: int = MAX_RECORDS_PER_BATCH,
) -> list[bytes]:
    """``records`` as consecutive batches of at most ``max_records`` (one entry each), to be
    proposed in order. All or nothing holds per batch only: if an earlier batch is rejected,
    a later one still applies where its records fit (each PartitionChanged checks the
    partition's epoch, so none applies twice or over a newer change). Split only decisions
    whose records stand alone (fencing, decommissioning); a topic's creation is two records."""
    assert max_records >= 1
    return [
        encode_batch(records[i : i + max_records], timestamp_ms)
        for i in range(0, len(records), max_records)
    ]


def decode_batch(data: bytes) -> list[MetadataRecord]:
    """The records of one entry's bytes (control batches, such as Raft's own, hold none).
    Raises CorruptMetadataRecordError for bytes that are not whole checked batches or for a
    record that does not decode."""
    out: list[MetadataRecord] = []
    try:
        for batch in iter_batches(data):
            if batch.header.is_control:
                continue
            out.extend(decode_record(r.key, r.value) for r in batch.records())
    except RecordsError as e:
        raise CorruptMetadataRecordError(f"metadata batch does not hold: {e}") from None
    return out
