"""The topic registry: which topics exist, their partition counts and configs.

Kept in ``topics.json`` in the data directory, replaced atomically (write a temporary file,
fsync, rename, fsync the directory) on every change, so a crash leaves the old or the new
registry, never a torn one. The registry is the server's business; the partition logs are
storage's. Not thread-safe: the broker calls it from its event loop only.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rilke.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    InvalidTopicError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from rilke.server.files import write_atomically
from rilke.storage.config import LogConfig
from rilke.storage.files import NAME_MAX_BYTES
from rilke.storage.manager import partition_dir_name

REGISTRY_FILE = "topics.json"
_FORMAT_VERSION = 1
MAX_TOPIC_NAME = 249
MAX_PARTITIONS = 10_000
_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")

# Kafka topic configs accepted and echoed back but not enforced by a single node.
_ACCEPTED_UNENFORCED = frozenset(
    {
        "compression.type",
        "min.insync.replicas",
        "unclean.leader.election.enable",
        "min.compaction.lag.ms",
        "max.compaction.lag.ms",
        "min.cleanable.dirty.ratio",
        "message.timestamp.difference.max.ms",
        "preallocate",
        "file.delete.delay.ms",
    }
)


def validate_topic_name(name: str) -> None:
    """Kafka's rule: 1-249 characters of [a-zA-Z0-9._-], not "." or "..".

    Raises InvalidTopicError saying what is wrong.
    """
    if not name:
        raise InvalidTopicError("topic name is empty")
    if name in (".", ".."):
        raise InvalidTopicError(f"topic name {name!r} is not allowed")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopicError(
            f"topic name is {len(name)} characters long; the maximum is {MAX_TOPIC_NAME}"
        )
    if not _LEGAL.match(name):
        raise InvalidTopicError(
            f"topic name {name!r} has characters other than ASCII letters, digits, '.', '_', '-'"
        )


def check_names_fit(name: str, num_partitions: int, name_max: int = NAME_MAX_BYTES) -> None:
    """Check that every file name made from the topic fits the file system's ``name_max``.

    The rule: the folder of the last partition, ``<topic>-<num_partitions - 1>``, is at most
    ``name_max`` bytes (255 on ext4, xfs, btrfs, tmpfs). It is the longest such name: files
    of a partition live inside its folder under fixed names, and a folder being deleted is
    renamed to a name cut to fit. With 255 bytes every name Kafka allows (249 characters)
    fits with up to MAX_PARTITIONS partitions. Assumes a name that passed
    validate_topic_name (ASCII). Raises InvalidTopicError when even partition 0's folder does
    not fit, InvalidPartitionsError when the count is what does not fit.
    """
    if len(partition_dir_name(name, 0).encode()) > name_max:
        longest = name_max - len("-0")
        raise InvalidTopicError(
            f"topic name is {len(name)} characters long; on this broker's file system "
            f"(file names of at most {name_max} bytes) the maximum is {longest}"
        )
    last = partition_dir_name(name, num_partitions - 1)
    if len(last.encode()) > name_max:
        digits = name_max - len(name) - 1
        raise InvalidPartitionsError(
            f"topic {name!r} cannot have {num_partitions} partitions: its partition folders "
            f"('<topic>-<partition>') must fit in {name_max} bytes, so with a name of "
            f"{len(name)} characters it can have at most {10**digits} partitions"
        )


def is_internal(name: str) -> bool:
    """Names starting with two underscores are the broker's own (e.g. __consumer_offsets)."""
    return name.startswith("__")


def known_config_keys() -> frozenset[str]:
    return frozenset(LogConfig().to_topic_configs()) | _ACCEPTED_UNENFORCED


def validate_configs(configs: Mapping[str, str], base: LogConfig) -> LogConfig:
    """The LogConfig for topic configs over ``base``; InvalidConfigError names a bad key."""
    known = known_config_keys()
    for key, value in configs.items():
        if key not in known:
            raise InvalidConfigError(f"unknown topic config {key!r}")
        if not isinstance(value, str):
            raise InvalidConfigError(f"topic config {key!r} must be a string")
    return LogConfig.from_topic_configs(configs, base)


@dataclass
class TopicInfo:
    """One topic: its partition count and the configs set on it (not the defaults)."""

    name: str
    num_partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    topic_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    replication_factor: int = 1

    @property
    def internal(self) -> bool:
        return is_internal(self.name)

    def log_config(self, defaults: LogConfig) -> LogConfig:
        return LogConfig.from_topic_configs(self.configs, defaults)


class TopicRegistry:
    """The topics of this broker, persisted in ``data_dir/topics.json``."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / REGISTRY_FILE
        self._topics: dict[str, TopicInfo] = {}
        self._load()

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def __iter__(self) -> Iterator[TopicInfo]:
        return iter(sorted(self._topics.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._topics)

    def get(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def require(self, name: str) -> TopicInfo:
        """The topic, or UnknownTopicOrPartitionError."""
        topic = self._topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"unknown topic {name!r}")
        return topic

    def check_new(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        defaults: LogConfig,
        *,
        name_max: int = NAME_MAX_BYTES,
    ) -> LogConfig:
        """Validate a topic to create without creating it; returns its LogConfig.

        ``name_max``: the longest file name of the data directory's file system (see
        check_names_fit). Raises InvalidTopicError, TopicAlreadyExistsError, InvalidPartitionsError,
        InvalidReplicationFactorError or InvalidConfigError.
        """
        validate_topic_name(name)
        if name in self._topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        collision = _collision_key(name)
        for other in self._topics:
            if _collision_key(other) == collision:
                raise InvalidTopicError(
                    f"topic {name!r} collides with existing topic {other!r} "
                    "('.' and '_' are treated alike in metric names)"
                )
        if not 1 <= num_partitions <= MAX_PARTITIONS:
            raise InvalidPartitionsError(
                f"number of partitions must be between 1 and {MAX_PARTITIONS}, got {num_partitions}"
            )
        check_names_fit(name, num_partitions, name_max)
        if replication_factor != 1:
            raise InvalidReplicationFactorError(
                f"replication factor {replication_factor} is not possible on a single broker; use 1"
            )
        return validate_configs(configs, defaults)

    def add(self, topic: TopicInfo) -> None:
        """Record a validated topic and persist the registry."""
        assert topic.name not in self._topics
        self._topics[topic.name] = topic
        self._save()

    def remove(self, name: str) -> TopicInfo:
        topic = self.require(name)
        del self._topics[name]
        self._save()
        return topic

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        self.require(name).configs = dict(configs)
        self._save()

    def _load(self) -> None:
        try:
            text = self._path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return
        try:
            document = json.loads(text)
            assert document.get("version") == _FORMAT_VERSION
            for raw in document["topics"]:
                topic = TopicInfo(
                    name=str(raw["name"]),
                    num_partitions=int(raw["num_partitions"]),
                    configs={str(k): str(v) for k, v in raw.get("configs", {}).items()},
                    topic_id=str(raw.get("topic_id") or uuid.uuid4().hex),
                    replication_factor=int(raw.get("replication_factor", 1)),
                )
                self._topics[topic.name] = topic
        except (ValueError, KeyError, TypeError, AssertionError) as e:
            raise InvalidConfigError(f"topic registry {self._path} is damaged: {e!r}") from None

    def _save(self) -> None:
        document = {
            "version": _FORMAT_VERSION,
            "topics": [
                {
                    "name": t.name,
                    "num_partitions": t.num_partitions,
                    "configs": t.configs,
                    "topic_id": t.topic_id,
                    "replication_factor": t.replication_factor,
                }
                for t in self
            ],
        }
        write_atomically(self._path, json.dumps(document, indent=1).encode())


def _collision_key(name: str) -> str:
    return name.replace(".", "_")
