"""Records of the ``__consumer_offsets`` topic: keys, values, and which partition a group uses.

The topic is compacted: the latest record per key wins, and a tombstone (value None) removes
the key. Two kinds of keys, each starting with a big-endian int16 key type:

    offset commit   type 1 | group (str16) | topic (str16) | partition (int32)
    group metadata  type 2 | group (str16)

``str16`` is an int16 byte length followed by UTF-8 bytes. Values start with an int16 value
version:

    offset commit v1   version | offset int64 | leader_epoch int32 | commit_timestamp_ms int64
                       | metadata (str16)
    group metadata v1  version | UTF-8 JSON object (see ``group.Group.snapshot``)

Offsets are the hot path, so they are a fixed binary layout; group metadata is rarer and
richer, so it is JSON. A reader refuses versions it does not know (CorruptRecordError) rather
than guess.

A group maps to partition ``(java_string_hash(group_id) & 0x7fffffff) % partition_count``,
which is what Kafka's GroupCoordinator does, so a group id lands on the same partition number
as it would in Kafka.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

from rilke.errors import CorruptRecordError

from .types import OffsetAndMetadata, TopicPartition

OFFSETS_TOPIC = "__consumer_offsets"
DEFAULT_OFFSETS_PARTITIONS = 50  # offsets.topic.num.partitions

OFFSET_KEY_TYPE = 1
GROUP_KEY_TYPE = 2
OFFSET_VALUE_VERSION = 1
GROUP_VALUE_VERSION = 1

_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")
_OFFSET_VALUE = struct.Struct(">hqiq")


def java_string_hash(s: str) -> int:
    """Java's ``String.hashCode`` (over UTF-16 code units, as a signed 32-bit int)."""
    h = 0
    data = s.encode("utf-16-be")
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def partition_for_group(group_id: str, partition_count: int) -> int:
    """The ``__consumer_offsets`` partition that holds ``group_id`` (Kafka's rule)."""
    assert partition_count > 0
    return (java_string_hash(group_id) & 0x7FFFFFFF) % partition_count


def _str16(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0x7FFF:
        raise ValueError(f"string too long for the offsets topic ({len(raw)} bytes)")
    return _I16.pack(len(raw)) + raw


def _read_str16(buf: bytes, pos: int) -> tuple[str, int]:
    if pos + 2 > len(buf):
        raise CorruptRecordError("offsets topic record: truncated string length")
    (n,) = _I16.unpack_from(buf, pos)
    pos += 2
    if n < 0 or pos + n > len(buf):
        raise CorruptRecordError("offsets topic record: bad string length")
    try:
        return buf[pos : pos + n].decode("utf-8"), pos + n
    except UnicodeDecodeError as exc:
        raise CorruptRecordError(f"offsets topic record: {exc}") from None


def offset_key(group_id: str, tp: TopicPartition) -> bytes:
    return (
        _I16.pack(OFFSET_KEY_TYPE) + _str16(group_id) + _str16(tp.topic) + _I32.pack(tp.partition)
    )


def group_key(group_id: str) -> bytes:
    return _I16.pack(GROUP_KEY_TYPE) + _str16(group_id)


def offset_value(om: OffsetAndMetadata) -> bytes:
    return _OFFSET_VALUE.pack(
        OFFSET_VALUE_VERSION, om.offset, om.leader_epoch, om.commit_timestamp_ms
    ) + _str16(om.metadata)


def group_value(snapshot: dict[str, Any]) -> bytes:
    body = json.dumps(snapshot, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _I16.pack(GROUP_VALUE_VERSION) + body


@dataclass(frozen=True)
class OffsetKey:
    group_id: str
    tp: TopicPartition


@dataclass(frozen=True)
class GroupKey:
    group_id: str


def decode_key(key: bytes) -> OffsetKey | GroupKey:
    """Parse a record key; raises CorruptRecordError for unknown types or bad bytes."""
    if len(key) < 2:
        raise CorruptRecordError("offsets topic record: key too short")
    (kind,) = _I16.unpack_from(key, 0)
    group_id, pos = _read_str16(key, 2)
    if kind == GROUP_KEY_TYPE:
        if pos != len(key):
            raise CorruptRecordError("offsets topic record: trailing bytes in group key")
        return GroupKey(group_id)
    if kind == OFFSET_KEY_TYPE:
        topic, pos = _read_str16(key, pos)
        if pos + 4 != len(key):
            raise CorruptRecordError("offsets topic record: bad offset key length")
        (partition,) = _I32.unpack_from(key, pos)
        return OffsetKey(group_id, TopicPartition(topic, partition))
    raise CorruptRecordError(f"offsets topic record: unknown key type {kind}")


def decode_offset_value(value: bytes) -> OffsetAndMetadata:
    if len(value) < _OFFSET_VALUE.size:
        raise CorruptRecordError("offsets topic record: offset value too short")
    version, offset, leader_epoch, ts = _OFFSET_VALUE.unpack_from(value, 0)
    if version != OFFSET_VALUE_VERSION:
        raise CorruptRecordError(f"offsets topic record: unknown offset value version {version}")
    metadata, pos = _read_str16(value, _OFFSET_VALUE.size)
    if pos != len(value):
        raise CorruptRecordError("offsets topic record: trailing bytes in offset value")
    return OffsetAndMetadata(offset, leader_epoch, metadata, ts)


def decode_group_value(value: bytes) -> dict[str, Any]:
    if len(value) < 2:
        raise CorruptRecordError("offsets topic record: group value too short")
    (version,) = _I16.unpack_from(value, 0)
    if version != GROUP_VALUE_VERSION:
        raise CorruptRecordError(f"offsets topic record: unknown group value version {version}")
    try:
        obj = json.loads(value[2:].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptRecordError(f"offsets topic record: bad group value: {exc}") from None
    if not isinstance(obj, dict):
        raise CorruptRecordError("offsets topic record: group value is not an object")
    return obj
