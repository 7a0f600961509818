"""The topic registry: which topics exist, their partition counts and configs.

Kept in ``topics.json`` in the data directory, replaced atomically (write a temporary file,
fsync, rename, fsync the directory) on every change, so a crash leaves the old or the new
registry, never a torn one. The registry is the server's business; the partition logs are
storage's. Not thread-safe: the broker calls it from its event loop only, except
:meth:`TopicRegistry.write` and :meth:`TopicRegistry.write_snapshot`, which write a document
or a :meth:`TopicRegistry.snapshot` taken on the loop, on any thread (writes are serialised
by a lock, and one older than what is on disk already is skipped).

A topic being created is *pending* (:meth:`TopicRegistry.reserve`): invisible to lookups, but
its name is taken (a second create of it is refused) and it is in every document written,
so that it is on disk before it becomes visible (:meth:`TopicRegistry.commit`).
"""

from __future__ import annotations

import json
import re
import threading
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
from rilke.storage.config import LogConfig
from rilke.storage.files import NAME_MAX_BYTES, atomic_write
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
        self._pending: dict[str, TopicInfo] = {}  # being created: saved, not yet visible
        self._reserved_at: dict[str, int] = {}  # pending name -> the version that added it
        self._collisions: dict[str, str] = {}  # _collision_key -> name, topics and pending
        self._version = 0  # bumped by every change a save must carry
        self._written_version = 0  # the newest version on disk
        self._write_lock = threading.Lock()  # one writer of the file at a time
        self._load()
        self._collisions = {_collision_key(name): name for name in self._topics}

    def __contains__(self, name: object) -> bool:
        return name in self._topics

    def __iter__(self) -> Iterator[TopicInfo]:
        return iter(sorted(self._topics.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._topics)

    def get(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    def topic_id_of(self, name: str) -> str:
        """The id of a topic, registered or being created ("" for neither)."""
        topic = self._topics.get(name) or self._pending.get(name)
        return topic.topic_id if topic is not None else ""

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
        if name in self._pending:
            raise TopicAlreadyExistsError(f"topic {name!r} is being created")
        other = self._collisions.get(_collision_key(name))
        if other is not None:
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
        """Record a validated topic and persist the registry (blocks on disk)."""
        self.reserve(topic)
        try:
            self._save()
        except BaseException:
            self.release(topic.name)
            raise
        self.commit(topic.name)

    def reserve(self, topic: TopicInfo) -> None:
        """Take a validated topic's name for a creation in progress: refused by
        ``check_new``, invisible otherwise, and in every document saved from now on."""
        assert topic.name not in self._topics and topic.name not in self._pending
        self._pending[topic.name] = topic
        self._collisions[_collision_key(topic.name)] = topic.name
        self._version += 1
        self._reserved_at[topic.name] = self._version

    def release(self, name: str) -> None:
        """Give up a pending topic (its creation failed). If a document with it was written,
        the caller saves again."""
        if self._pending.pop(name, None) is not None:
            del self._reserved_at[name]
            self._collisions.pop(_collision_key(name), None)
            self._version += 1

    def commit(self, name: str) -> None:
        """Make a pending topic visible; a document holding it must have been written."""
        assert self._written_version >= self._reserved_at.pop(name), "commit before a save"
        self._topics[name] = self._pending.pop(name)

    def is_pending(self, name: str) -> bool:
        return name in self._pending

    def remove(self, name: str) -> TopicInfo:
        topic = self.require(name)
        del self._topics[name]
        self._collisions.pop(_collision_key(name), None)
        self._version += 1
        self._save()
        return topic

    def set_num_partitions(self, name: str, count: int) -> None:
        """Record a topic's new partition count (CreatePartitions) durably; blocks on disk."""
        self.require(name).num_partitions = count
        self._version += 1
        self._save()

    def set_configs(self, name: str, configs: dict[str, str]) -> None:
        self.require(name).configs = dict(configs)
        self._version += 1
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

    def snapshot(self) -> tuple[int, list[TopicInfo]]:
        """(version, topics) of the registry now, pending topics included, for
        :meth:`render` on any thread. On the event loop; cheap (a list of references: a
        topic's fields never change but ``configs``, which is replaced, never mutated)."""
        return self._version, [*self._topics.values(), *self._pending.values()]

    @staticmethod
    def render(topics: list[TopicInfo]) -> bytes:
        """The document of a :meth:`snapshot`'s topics. Any thread."""
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
                for t in sorted(topics, key=lambda t: t.name)
            ],
        }
        # One topic per line: readable, and a quarter of the cost of an indented dump.
        return (
            json.dumps(document, separators=(",", ":")).replace('},{"name"', '},\n{"name"').encode()
        )

    def encode(self) -> tuple[int, bytes]:
        """(version, document) of the registry now, for :meth:`write`. On the event loop."""
        version, topics = self.snapshot()
        return version, self.render(topics)

    def write_snapshot(self, snapshot: tuple[int, list[TopicInfo]]) -> None:
        """Render and :meth:`write` a :meth:`snapshot`. Any thread; blocks on disk."""
        version, topics = snapshot
        if version > self._written_version:
            self.write(version, self.render(topics))

    def write(self, version: int, data: bytes) -> None:
        """Replace the file with a document from :meth:`encode`, unless a newer one was
        written already. Any thread; blocks on disk (two fsyncs). Raises OSError."""
        with self._write_lock:
            if version <= self._written_version:
                return
            atomic_write(self._path, data, unique_tmp=True)
            self._written_version = version

    def written(self, version: int) -> bool:
        """Whether a document of ``version`` or newer is on disk."""
        return self._written_version >= version

    def _save(self) -> None:
        """Write the registry now, on this thread (blocks on disk; may wait for a write in
        progress on another thread)."""
        self.write(*self.encode())


def _collision_key(name: str) -> str:
    return name.replace(".", "_")
