"""LogConfig: the settings of one partition log, with Kafka's topic-config names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from rilke.errors import InvalidConfigError
from rilke.records.header import HEADER_SIZE

MAX_SEGMENT_BYTES = (1 << 31) - 1  # index positions are int32
_NEVER = (1 << 63) - 1  # Kafka writes "never" as Long.MAX_VALUE

CLEANUP_POLICIES = frozenset({"delete", "compact", "compact,delete", "delete,compact"})
TIMESTAMP_TYPES = frozenset({"CreateTime", "LogAppendTime"})


@dataclass(frozen=True)
class LogConfig:
    """Settings of a partition log. Immutable; replace a log's with ``update_config``.

    Construction validates every field and raises :class:`InvalidConfigError` naming it.
    """

    segment_bytes: int = 1 << 30  # segment.bytes: roll when the active segment would exceed it
    segment_ms: int = 7 * 24 * 3600 * 1000  # segment.ms: roll a segment this old
    index_interval_bytes: int = 4096  # index.interval.bytes: bytes between offset index entries
    segment_index_bytes: int = 10 << 20  # segment.index.bytes: roll when an index is this big
    retention_ms: int = 7 * 24 * 3600 * 1000  # retention.ms (-1 = forever)
    retention_bytes: int = -1  # retention.bytes (-1 = unlimited)
    cleanup_policy: str = "delete"  # cleanup.policy: "delete", "compact" or "compact,delete"
    delete_retention_ms: int = 24 * 3600 * 1000  # delete.retention.ms: tombstones kept so long
    max_message_bytes: int = 1048588  # max.message.bytes: the largest batch accepted
    message_timestamp_type: str = "CreateTime"  # message.timestamp.type or "LogAppendTime"
    flush_messages: int | None = None  # flush.messages: fsync after this many (1 = each append)
    flush_ms: int | None = None  # flush.ms: fsync when the oldest unflushed append is this old
    # write.caching (as Redpanda's): a replicated partition's replicas acknowledge writes
    # before they are fsynced (flushed by flush.ms, segment rolls and shutdown instead).
    write_caching: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, why: str) -> None:
            if not ok:
                raise InvalidConfigError(f"{key}: {why}")

        need(
            HEADER_SIZE <= self.segment_bytes <= MAX_SEGMENT_BYTES,
            "segment.bytes",
            f"must be between {HEADER_SIZE} and {MAX_SEGMENT_BYTES}",
        )
        need(self.segment_ms >= 1, "segment.ms", "must be >= 1")
        need(self.index_interval_bytes >= 0, "index.interval.bytes", "must be >= 0")
        need(self.segment_index_bytes >= 64, "segment.index.bytes", "must be >= 64")
        need(self.retention_ms >= -1, "retention.ms", "must be >= -1")
        need(self.retention_bytes >= -1, "retention.bytes", "must be >= -1")
        need(
            self.cleanup_policy in CLEANUP_POLICIES,
            "cleanup.policy",
            f"must be one of {sorted(CLEANUP_POLICIES)}",
        )
        need(self.delete_retention_ms >= 0, "delete.retention.ms", "must be >= 0")
        need(
            self.max_message_bytes >= HEADER_SIZE, "max.message.bytes", f"must be >= {HEADER_SIZE}"
        )
        need(
            self.message_timestamp_type in TIMESTAMP_TYPES,
            "message.timestamp.type",
            f"must be one of {sorted(TIMESTAMP_TYPES)}",
        )
        need(
            self.flush_messages is None or self.flush_messages >= 1,
            "flush.messages",
            "must be >= 1",
        )
        need(self.flush_ms is None or self.flush_ms >= 0, "flush.ms", "must be >= 0")

    @property
    def compact(self) -> bool:
        """True when the policy includes compaction."""
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        """True when the policy includes deletion by retention time and size."""
        return "delete" in self.cleanup_policy

    @property
    def log_append_time(self) -> bool:
        return self.message_timestamp_type == "LogAppendTime"

    @classmethod
    def from_topic_configs(
        cls, configs: Mapping[str, str], base: LogConfig | None = None
    ) -> LogConfig:
        """A config from Kafka's topic-config keys (``segment.bytes`` ...) over ``base``.

        Keys this class does not know are ignored (they belong to other layers). Raises
        :class:`InvalidConfigError` naming the key for a value that is not valid.
        """
        base = base or cls()
        changes: dict[str, Any] = {}
        for key, value in configs.items():
            field = _FIELD_BY_KEY.get(key)
            if field is None:
                continue
            if field in ("cleanup_policy", "message_timestamp_type"):
                changes[field] = value.strip().replace(" ", "")
                continue
            if field == "write_caching":
                flag = value.strip().lower()
                if flag not in ("true", "false"):
                    raise InvalidConfigError(f"{key}: {value!r} is not true or false")
                changes[field] = flag == "true"
                continue
            try:
                number = int(value)
            except (TypeError, ValueError):
                raise InvalidConfigError(f"{key}: {value!r} is not an integer") from None
            if field in ("flush_messages", "flush_ms") and number >= _NEVER:
                changes[field] = None
            else:
                changes[field] = number
        return replace(base, **changes)

    def to_topic_configs(self) -> dict[str, str]:
        """Kafka's topic-config keys and values for this config (None is Long.MAX_VALUE)."""
        out: dict[str, str] = {}
        for key, field in _FIELD_BY_KEY.items():
            value = getattr(self, field)
            if isinstance(value, bool):
                out[key] = "true" if value else "false"
                continue
            out[key] = str(_NEVER if value is None else value)
        return out


_FIELD_BY_KEY: dict[str, str] = {f.name.replace("_", "."): f.name for f in fields(LogConfig)}
