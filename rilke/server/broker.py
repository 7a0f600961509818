"""The broker's state: topics, their partitions, producer ids, maintenance.

The gRPC services (rilke.server.services) translate protobuf to calls on :class:`Broker` and
on the :class:`~rilke.server.partition.Partition` objects it hands out. Everything here runs on
the event loop thread; storage calls are synchronous, except that fsyncs and maintenance's
disk work run on worker threads (see rilke.server.partition), and so does the file work of
creating a topic (:meth:`Broker.create_topic_async`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Protocol

from rilke.errors import (
    InvalidConfigError,
    InvalidPartitionsError,
    InvalidRequestError,
    KafkaStorageError,
    LogClosedError,
    RilkeError,
    ShuttingDownError,
    UnknownTopicOrPartitionError,
)
from rilke.server.config import BrokerConfig
from rilke.server.group_commit import GroupCommit, StepQueue
from rilke.server.partition import (
    PRODUCER_STATE_FILE,
    FlushSlots,
    LocalPartitionFactory,
    Partition,
    PartitionFactory,
    PartitionSpec,
)
from rilke.server.producer_state import ProducerIdManager
from rilke.server.stats import BrokerStats, SegmentFiles
from rilke.server.topics import (
    TopicInfo,
    TopicRegistry,
    check_names_fit,
    validate_configs,
    validate_topic_name,
)
from rilke.storage import files
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

MAX_PRODUCER_EPOCH = 32767
# Where producer state snapshots were kept before they moved into the partition folders
# (``producer-state/<topic>-<partition>.json``: too long a name for long topic names).
LEGACY_PRODUCER_STATE_DIR = "producer-state"
_CreationRun = tuple[list[tuple[str, int]], tuple[int, list[TopicInfo]]]
# Partitions a topic creation opens on the event loop in one turn of the loop, between two
# turns given to requests (opening a prepared, empty log is a few small reads: ~0.1-0.3 ms).
CREATE_OPEN_STEP_PARTITIONS = 16


class LogManagerLike(Protocol):
    """The part of rilke.storage.manager.LogManager the broker uses."""

    def get(self, topic: str, partition: int) -> PartitionLog | None: ...
    def prepare_partitions(self, topic: str, partitions: Iterable[int]) -> None: ...
    def make_partition_files(self, topic: str, partitions: Iterable[int]) -> list[Path]: ...
    def sync_prepared(self, made: Iterable[Path]) -> None: ...
    def create(
        self, topic: str, partition: int, config: LogConfig, *, prepared: bool = False
    ) -> PartitionLog: ...
    def delete(self, topic: str, partition: int) -> None: ...
    def partitions(self) -> dict[tuple[str, int], PartitionLog]: ...
    def flush_all(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class ConfigValue:
    name: str
    value: str
    is_default: bool


def now_ms() -> int:
    return int(time.time() * 1000)


class Broker:
    """Topics and partitions of a single-node broker over a LogManager."""

    def __init__(
        self,
        config: BrokerConfig,
        manager: LogManagerLike,
        *,
        clock_ms: Callable[[], int] = now_ms,
        partition_factory: PartitionFactory | None = None,
        wrap_partition_factory: Callable[[PartitionFactory], PartitionFactory] | None = None,
    ) -> None:
        """``partition_factory`` builds each partition over its opened log; by default a
        LocalPartition led by this node (``LocalPartitionFactory``)."""
        self.config = config
        self._manager = manager
        self._clock_ms = clock_ms
        data_dir = Path(config.data_dir)
        self.topics = TopicRegistry(data_dir)
        self._producer_ids = ProducerIdManager(data_dir)
        self._legacy_state_dir = data_dir / LEGACY_PRODUCER_STATE_DIR
        self._name_max = files.name_max(data_dir)
        self._partitions: dict[tuple[str, int], Partition] = {}
        # Registered topics this node cannot serve (name too long for its file system, or
        # their partitions failed to open), with the reason: their requests get
        # KafkaStorageError; everything else is served. Deleting such a topic works.
        self._offline: dict[str, str] = {}
        self._flush_slots = FlushSlots()  # bounds the flush jobs (and their descriptors)
        self.stats = BrokerStats()  # counters of the services and listeners (rilke.server.stats)
        self._partition_factory = partition_factory or LocalPartitionFactory(
            node_id=config.node_id, clock_ms=clock_ms, flush_slots=self._flush_slots
        )
        if wrap_partition_factory is not None:
            # A cluster's node decides per partition, given the default (local) factory.
            self._partition_factory = wrap_partition_factory(self._partition_factory)
        self._closed = False
        # Topic creations share their partition folders' syncs and registry writes.
        self._creations: GroupCommit[tuple[str, int], _CreationRun] = GroupCommit(
            self._take_creations, self._run_creations
        )
        self._open_steps = StepQueue()  # opening created topics' logs, one step per turn
        self._open_partitions()

    def _open_partitions(self) -> None:
        existing = self._manager.partitions()
        for key in list(existing):
            topic = self.topics.get(key[0])
            if topic is None or key[1] >= topic.num_partitions:
                # Left behind by a delete that crashed after the registry changed.
                log.warning("removing partition %s-%d of no registered topic", *key)
                self._manager.delete(*key)
        adopt_legacy = self._legacy_state_dir.is_dir()
        for topic in self.topics:
            try:
                validate_topic_name(topic.name)
                check_names_fit(topic.name, topic.num_partitions, self._name_max)
                self._open_topic(topic, adopt_legacy)
            except (OSError, RilkeError) as e:
                for p in range(topic.num_partitions):
                    part = self._partitions.pop((topic.name, p), None)
                    if part is not None:
                        part.close()
                self._offline[topic.name] = str(e)
                log.error(
                    "topic %r cannot be served by this node and is offline: %s. Every other "
                    "topic is served; delete this one (or move the data directory to a file "
                    "system that can hold it)",
                    topic.name,
                    e,
                )
        if adopt_legacy:
            with contextlib.suppress(OSError):
                self._legacy_state_dir.rmdir()  # only once empty

    def _open_topic(self, topic: TopicInfo, adopt_legacy: bool) -> None:
        config = topic.log_config(self.config.log)
        for p in range(topic.num_partitions):
            plog = self._manager.get(topic.name, p)
            if plog is None:
                plog = self._manager.create(topic.name, p, config)
            if adopt_legacy:
                self._adopt_legacy_snapshot(topic.name, p, plog.directory)
            self._partitions[(topic.name, p)] = self._wrap(topic.name, p, plog, config)

    def _adopt_legacy_snapshot(self, topic: str, p: int, directory: Path) -> None:
        """Move a producer state snapshot from where older versions kept it into the
        partition's folder (unless one is there already)."""
        target = directory / PRODUCER_STATE_FILE
        legacy = self._legacy_state_dir / f"{topic}-{p}.json"
        try:
            if target.exists():
                legacy.unlink()
            else:
                os.replace(legacy, target)
                files.fsync_dir(directory)
        except FileNotFoundError:
            pass
        except OSError as e:
            if e.errno != errno.ENAMETOOLONG:  # a name that long was never written
                log.warning("cannot move producer state %s into %s: %s", legacy, directory, e)

    def _wrap(self, topic: str, p: int, plog: PartitionLog, config: LogConfig) -> Partition:
        plog.flush_observer = self.stats.fsync.observe
        topic_id = self.topics.topic_id_of(topic)
        spec = PartitionSpec(topic, p, plog, config, plog.directory, topic_id=topic_id)
        return self._partition_factory(spec)

    def check_online(self, topic: str) -> None:
        """Raise KafkaStorageError when this node cannot serve a registered topic."""
        reason = self._offline.get(topic)
        if reason is not None:
            raise KafkaStorageError(f"topic {topic!r} is offline on this broker: {reason}")

    # --- partitions --------------------------------------------------------------------------

    def partition(self, topic: str, p: int, *, auto_create: bool = False) -> Partition:
        """The partition, or UnknownTopicOrPartitionError / InvalidTopicError.

        With ``auto_create`` and the broker's auto_create_topics setting, an unknown topic is
        created with the default partition count.
        """
        found = self._partitions.get((topic, p))
        if found is not None:
            return found
        if self._closed:
            raise ShuttingDownError()
        self.check_online(topic)
        if self.topics.is_pending(topic):
            raise UnknownTopicOrPartitionError(f"topic {topic!r} is being created")
        if topic not in self.topics:
            validate_topic_name(topic)
            if auto_create and self.config.auto_create_topics:
                self.create_topic(topic, self.config.default_partitions)
                found = self._partitions.get((topic, p))
                if found is not None:
                    return found
            else:
                raise UnknownTopicOrPartitionError(f"unknown topic {topic!r}")
        raise UnknownTopicOrPartitionError(
            f"topic {topic!r} has no partition {p} "
            f"(it has {self.topics.require(topic).num_partitions})"
        )

    def partitions_by_key(self) -> dict[tuple[str, int], Partition]:
        """Every open partition by (topic, partition) (a copy)."""
        return dict(self._partitions)

    def rebuild_partition(self, topic: str, p: int) -> Partition:
        """Close a partition and build it again over its log through the partition factory
        (on a node of a cluster: what this node holds of it changed). Blocks on disk. Raises
        UnknownTopicOrPartitionError; what the factory raises (the old one stays, closed)."""
        old = self.partition(topic, p)
        plog = self._manager.get(topic, p)
        if plog is None:
            raise UnknownTopicOrPartitionError(f"partition {topic}-{p} has no log")
        config = self.topics.require(topic).log_config(self.config.log)
        old.close()
        new = self._wrap(topic, p, plog, config)
        self._partitions[(topic, p)] = new
        return new

    def partitions_of(self, topic: str) -> list[Partition]:
        info = self.topics.require(topic)
        self.check_online(topic)
        return [self._partitions[(topic, p)] for p in range(info.num_partitions)]

    def maybe_auto_create(self, topic: str) -> bool:
        """Create an unknown topic if auto-creation is on; True if it exists afterwards."""
        if topic in self.topics:
            return True
        if not self.config.auto_create_topics or self.topics.is_pending(topic):
            return False
        validate_topic_name(topic)
        self.create_topic(topic, self.config.default_partitions)
        return True

    # --- admin -------------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
        *,
        validate_only: bool = False,
        topic_id: str | None = None,
    ) -> None:
        """Create a topic with its partitions, all on this thread (blocks on disk: for
        auto-creation and the broker's own topics; requests use :meth:`create_topic_async`).
        Raises InvalidTopicError, TopicAlreadyExistsError, InvalidPartitionsError,
        InvalidReplicationFactorError, InvalidConfigError; on any error nothing is created."""
        info, log_config = self._check_new(
            name, num_partitions, replication_factor, configs, topic_id
        )
        if validate_only:
            return
        self.topics.reserve(info)
        try:
            self._manager.prepare_partitions(name, range(info.num_partitions))
            self.topics.write(*self.topics.encode())
            opened = [self._open_prepared(name, p, log_config) for p in range(info.num_partitions)]
        except BaseException:
            self._abandon(info)
            raise
        self._install(info, opened)

    async def create_topic_async(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int = 1,
        configs: Mapping[str, str] | None = None,
        *,
        validate_only: bool = False,
        topic_id: str | None = None,
    ) -> None:
        """:meth:`create_topic` without stalling the event loop: the partitions' folders and
        files are made durably on a worker thread, then the registry is written there too, in
        one job that creations arriving meanwhile share (:class:`GroupCommit`), then the (empty)
        logs are opened here, CREATE_OPEN_STEP_PARTITIONS of one creation per turn of the loop
        (:class:`StepQueue`), and only then does the topic become visible, all at once.
        Returns once the topic and its partitions are durable and served. A caller cancelled
        meanwhile does not stop the file work it shares with others; the creation is then
        undone.

        Meanwhile the name is taken: a second create of it gets TopicAlreadyExistsError, a
        delete or a lookup UnknownTopicOrPartitionError (the topic does not exist yet). Raises
        what :meth:`create_topic` raises, ShuttingDownError if the broker closes meanwhile and
        OSError when the disk refuses; on any error the topic is not created (its files are
        removed and the registry written without it)."""
        info, log_config = self._check_new(
            name, num_partitions, replication_factor, configs, topic_id
        )
        if validate_only:
            return
        self.topics.reserve(info)
        count = info.num_partitions
        try:
            await self._creations.submit((name, count))
            opened: list[Partition] = []
            for start in range(0, count, CREATE_OPEN_STEP_PARTITIONS):
                stop = min(count, start + CREATE_OPEN_STEP_PARTITIONS)
                opened += await self._open_steps.run(
                    partial(self._open_prepared_range, name, range(start, stop), log_config)
                )
            self._check_not_closed()
        except BaseException:
            self._abandon(info)
            raise
        self._install(info, opened)

    def _take_creations(self, wanted: list[tuple[str, int]]) -> _CreationRun:
        """On the loop: what a run of creations needs (every topic in ``wanted`` is pending
        already, so the registry snapshot holds them)."""
        return wanted, self.topics.snapshot()

    def _run_creations(self, taken: _CreationRun) -> list[BaseException | None]:
        """On a worker thread: make the partition folders of every (topic, count), sync them
        all at once, then write the registry with those topics; each topic's error, or None.
        (A topic whose folders failed is in that registry document too, as pending: undoing
        its creation writes the registry again without it.)"""
        wanted, snapshot = taken
        made: list[Path] = []
        errors: list[BaseException | None] = []
        for name, count in wanted:
            try:
                made += self._manager.make_partition_files(name, range(count))
                errors.append(None)
            except Exception as e:
                errors.append(e)
        self._manager.sync_prepared(made)
        self.topics.write_snapshot(snapshot)
        return errors

    def _check_new(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str] | None,
        topic_id: str | None = None,
    ) -> tuple[TopicInfo, LogConfig]:
        self._check_not_closed()
        if num_partitions in (0, -1):
            num_partitions = self.config.default_partitions
        if replication_factor in (0, -1):
            replication_factor = 1
        topic_configs = dict(configs or {})
        log_config = self.topics.check_new(
            name,
            num_partitions,
            replication_factor,
            topic_configs,
            self.config.log,
            name_max=self._name_max,
        )
        info = TopicInfo(name, num_partitions, topic_configs, replication_factor=1)
        if topic_id:  # a cluster's topic: the controller's id
            info.topic_id = topic_id
        return info, log_config

    def _check_not_closed(self) -> None:
        if self._closed:
            raise ShuttingDownError()

    def _open_prepared_range(
        self, name: str, partitions: range, log_config: LogConfig
    ) -> list[Partition]:
        self._check_not_closed()
        return [self._open_prepared(name, p, log_config) for p in partitions]

    def _open_prepared(self, name: str, p: int, log_config: LogConfig) -> Partition:
        plog = self._manager.create(name, p, log_config, prepared=True)
        return self._wrap(name, p, plog, log_config)

    def _install(self, info: TopicInfo, opened: list[Partition]) -> None:
        """Make a created topic visible with its partitions (in one step on the loop)."""
        self.topics.commit(info.name)
        for part in opened:
            self._partitions[(info.name, part.partition)] = part
        log.info(
            "created topic %s with %d partitions %s", info.name, info.num_partitions, info.configs
        )

    def _abandon(self, info: TopicInfo) -> None:
        """Undo a creation that failed: forget the name, write the registry without it if it
        was written with it, and remove what was made of its partitions (on this thread)."""
        self.topics.release(info.name)
        try:
            self.topics.write(*self.topics.encode())
        except Exception:
            log.exception("cannot write the topic registry without %s", info.name)
        if self._closed:
            return  # the next start removes partitions of no registered topic
        for p in range(info.num_partitions):
            try:
                self._manager.delete(info.name, p)
            except Exception:
                log.exception("cannot remove partition %s-%d", info.name, p)

    def delete_topic(self, name: str) -> None:
        """Delete a topic and its data. Raises UnknownTopicOrPartitionError,
        InvalidTopicError."""
        if name not in self.topics:
            validate_topic_name(name)
        topic = self.topics.remove(
            name
        )  # persisted first: a crash leaves orphans, removed on start
        self._offline.pop(name, None)
        for p in range(topic.num_partitions):
            part = self._partitions.pop((name, p), None)
            if part is not None:
                part.close()
                part.forget_state()
            self._manager.delete(name, p)
        log.info("deleted topic %s", name)

    def create_partitions(self, name: str, count: int, *, validate_only: bool = False) -> None:
        """Grow a topic to ``count`` partitions (Kafka's CreatePartitions: a topic's partitions
        are never removed). The new partitions' files are made durably first and the registry
        written after, so a crash between leaves orphan folders that the next start removes.
        Blocks on disk (a few small files per partition). Raises UnknownTopicOrPartitionError,
        InvalidPartitionsError (``count`` not above the current count, or names too long),
        KafkaStorageError (an offline topic); on error nothing changes."""
        topic = self.topics.require(name)
        self.check_online(name)
        self._check_not_closed()
        if count <= topic.num_partitions:
            raise InvalidPartitionsError(
                f"topic {name!r} has {topic.num_partitions} partitions; the new count must be "
                f"larger (partitions are never removed), got {count}"
            )
        try:
            check_names_fit(name, count, self._name_max)
        except RilkeError as e:
            raise InvalidPartitionsError(str(e)) from None
        if validate_only:
            return
        config = topic.log_config(self.config.log)
        added = range(topic.num_partitions, count)
        self._manager.prepare_partitions(name, added)
        opened = [self._open_prepared(name, p, config) for p in added]
        old = topic.num_partitions
        try:
            self.topics.set_num_partitions(name, count)
        except BaseException:
            topic.num_partitions = old
            for part in opened:
                part.close()
                self._manager.delete(name, part.partition)
            raise
        for part in opened:
            self._partitions[(name, part.partition)] = part
        log.info("topic %s grown from %d to %d partitions", name, old, count)

    def describe_configs(self, name: str, include_defaults: bool) -> list[ConfigValue]:
        topic = self.topics.require(name)
        effective = topic.log_config(self.config.log).to_topic_configs()
        out = [ConfigValue(k, v, False) for k, v in sorted(topic.configs.items())]
        if include_defaults:
            out += [
                ConfigValue(k, v, True)
                for k, v in sorted(effective.items())
                if k not in topic.configs
            ]
        return out

    def alter_configs(
        self,
        name: str,
        set_: Mapping[str, str],
        delete: Sequence[str],
        *,
        validate_only: bool = False,
    ) -> None:
        """Set and reset topic configs (incrementally). Raises UnknownTopicOrPartitionError,
        InvalidConfigError, KafkaStorageError (an offline topic); on error nothing
        changes."""
        topic = self.topics.require(name)
        self.check_online(name)
        overlap = set(set_) & set(delete)
        if overlap:
            raise InvalidRequestError(f"configs both set and deleted: {sorted(overlap)}")
        configs = dict(topic.configs)
        configs.update(set_)
        for key in delete:
            configs.pop(key, None)
        try:
            log_config = validate_configs(configs, self.config.log)
        except InvalidConfigError as e:
            raise InvalidConfigError(f"topic {name!r}: {e}") from None
        if validate_only:
            return
        self.topics.set_configs(name, configs)
        for p in range(topic.num_partitions):
            self._partitions[(name, p)].update_config(log_config)
        log.info("altered configs of topic %s: set %s, deleted %s", name, dict(set_), list(delete))

    def init_producer_id(self, producer_id: int, producer_epoch: int) -> tuple[int, int]:
        """A new producer id (epoch 0), or the given id with its epoch bumped."""
        if producer_id < 0:
            return self._producer_ids.next_id(), 0
        if producer_epoch < 0:
            raise InvalidRequestError("producer_epoch must be given with producer_id")
        if producer_epoch >= MAX_PRODUCER_EPOCH:
            return self._producer_ids.next_id(), 0
        return producer_id, producer_epoch + 1

    def segment_files(self) -> SegmentFiles | None:
        """The segment file cache's descriptors (rilke.storage.handles), for the metrics;
        None when the log manager has no cache."""
        cache = getattr(self._manager, "file_cache", None)
        if cache is None:
            return None
        return SegmentFiles(cache.open_count, cache.max_open, cache.opens, cache.evictions)

    def logs(self) -> dict[tuple[str, int], PartitionLog]:
        """Every partition's log by (topic, partition), for the scrubber (a copy)."""
        return self._manager.partitions()

    # --- lifecycle ---------------------------------------------------------------------------

    async def maintain(self) -> None:
        """The node's maintenance pass: partition by partition (:meth:`Partition.maintain`,
        rilke.partition.maintenance: roll, flush, retention, compaction, checkpoint, producer
        state snapshot, with the disk work on worker threads), yielding to requests between
        partitions. A partition's failure is logged and the others go on; on a full disk, one
        line per pass says how many."""
        now = self._clock_ms()
        disk_full: list[str] = []
        for key, part in list(self._partitions.items()):
            if self._closed:
                return
            if self._partitions.get(key) is not part:
                continue  # deleted meanwhile
            try:
                await part.maintain(now)
            except LogClosedError:
                continue
            except Exception as e:
                if files.is_disk_full(e):
                    disk_full.append(f"{key[0]}-{key[1]}")
                else:
                    log.exception("maintenance of %s-%d failed", *key)
            await asyncio.sleep(0)
        if disk_full:
            log.error(
                "disk full: no space left on the file system of data dir %s: maintenance "
                "(flushes, checkpoints, snapshots) of %d partition(s) failed, e.g. %s; it is "
                "tried again on the next pass",
                self.config.data_dir,
                len(disk_full),
                ", ".join(disk_full[:5]),
            )

    def close(self) -> None:
        """Flush everything, snapshot producer state, close the logs and write the clean
        shutdown marker (LogManager.close)."""
        if self._closed:
            return
        self._closed = True
        try:
            for part in self._partitions.values():
                try:
                    part.close()
                except Exception:
                    log.exception("closing %s-%d failed", part.topic, part.partition)
        finally:
            self._partitions.clear()
            self._manager.close()
