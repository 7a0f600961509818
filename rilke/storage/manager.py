"""LogManager: one data directory holding the logs of many partitions.

The data directory holds one folder per partition, ``<topic>-<partition>``, and two files of the
manager's own: ``.lock`` (held with an exclusive ``flock`` while a manager has the directory
open, so two processes never share it) and ``.clean-shutdown`` (written by ``close`` after
every log was flushed and closed; removed when the directory is opened again). With the
marker present, opening trusts the segments and scans none; without it, each log recovers from
its recovery-point checkpoint.

Contract: synchronous and not thread-safe, like the logs it holds; the caller serialises calls
on the manager and on each log. Everything here may block on disk.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from rilke.errors import DataDirLockedError, InvalidTopicError, LogClosedError
from rilke.storage import files
from rilke.storage.config import LogConfig
from rilke.storage.handles import FileCache, default_max_open_files
from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
CLEAN_SHUTDOWN_FILE = ".clean-shutdown"
DELETED_SUFFIX = "-delete"
_TOPIC_RE = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def validate_topic(topic: str) -> None:
    """Raise InvalidTopicError unless ``topic`` follows Kafka's rule ([a-zA-Z0-9._-]{1,249})."""
    if not _TOPIC_RE.fullmatch(topic) or topic in (".", ".."):
        raise InvalidTopicError(
            f"invalid topic name {topic!r}: use 1 to 249 of [a-zA-Z0-9._-], not '.' or '..'"
        )


def partition_dir_name(topic: str, partition: int) -> str:
    """The folder of a partition: the longest name made from a topic name (the server checks
    that it fits the file system before it creates a topic)."""
    return f"{topic}-{partition}"


def deleted_dir_name(dir_name: str, unique: str, name_max: int = files.NAME_MAX_BYTES) -> str:
    """The name a partition folder is renamed to while it is deleted: ``<dir>.<unique>-delete``,
    the folder's name cut short as needed so that the whole fits ``name_max`` bytes (folder
    names are ASCII). Only the suffix is ever read back."""
    suffix = f".{unique}{DELETED_SUFFIX}"
    return dir_name[: max(name_max - len(suffix), 0)] + suffix


def parse_partition_dir(name: str) -> tuple[str, int] | None:
    """(topic, partition) for a folder named ``<topic>-<partition>``, else None."""
    topic, sep, number = name.rpartition("-")
    if not sep or not number.isdigit() or name.endswith(DELETED_SUFFIX):
        return None
    if not _TOPIC_RE.fullmatch(topic) or topic in (".", ".."):
        return None
    return topic, int(number)


class LogManager:
    """The partition logs of one data directory.

    Opening takes an exclusive lock on the directory (DataDirLockedError if another process
    holds it), removes partitions left half-deleted, and opens every ``<topic>-<partition>``
    folder: without scanning after a clean shutdown, recovering otherwise. Per-topic configs
    come from ``topic_configs``; other topics get ``default_config``. Every log's segment
    files share one :class:`FileCache` of at most ``max_open_files`` descriptors (default:
    half the process's RLIMIT_NOFILE, see rilke.storage.handles).
    """

    def __init__(
        self,
        data_dir: Path,
        default_config: LogConfig,
        *,
        now_ms: int,
        topic_configs: Mapping[str, LogConfig] | None = None,
        max_open_files: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.default_config = default_config
        self.file_cache = FileCache(max_open_files or default_max_open_files())
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise DataDirLockedError(
                f"the data directory {self.data_dir} is in use by another process"
            ) from None
        self._logs: dict[tuple[str, int], PartitionLog] = {}
        self._closed = False
        try:
            marker = self.data_dir / CLEAN_SHUTDOWN_FILE
            self.had_clean_shutdown = marker.exists()
            if self.had_clean_shutdown:
                # From here on a crash is an unclean shutdown again.
                marker.unlink()
                files.fsync_dir(self.data_dir)
            configs = topic_configs or {}
            for path in sorted(self.data_dir.iterdir()):
                if not path.is_dir():
                    continue
                if path.name.endswith(DELETED_SUFFIX):
                    log.info("removing partly deleted partition %s", path)
                    _remove_tree(path)
                    continue
                parsed = parse_partition_dir(path.name)
                if parsed is None:
                    continue
                config = configs.get(parsed[0], default_config)
                self._logs[parsed] = PartitionLog.open(
                    path,
                    config,
                    now_ms=now_ms,
                    recover=not self.had_clean_shutdown,
                    cache=self.file_cache,
                )
        except BaseException:
            for partition_log in self._logs.values():
                partition_log.close()
            os.close(self._lock_fd)
            raise
        log.info(
            "opened %d partition log(s) in %s (%s)",
            len(self._logs),
            self.data_dir,
            "after a clean shutdown"
            if self.had_clean_shutdown
            else (
                "new data directory" if not self._logs else "no clean-shutdown marker: recovered"
            ),
        )

    def get(self, topic: str, partition: int) -> PartitionLog | None:
        """The log of a partition, or None if this directory has none."""
        return self._logs.get((topic, partition))

    def prepare_partitions(self, topic: str, partitions: Iterable[int]) -> None:
        """Make the folders of ``partitions`` of ``topic``, each with an empty first segment,
        durably (files, folders and the data directory fsynced), for ``create(...,
        prepared=True)`` to open without touching the disk again. A folder that already
        holds segments is left as it is.

        This and the two methods it is made of may run on any thread: they touch only the
        disk, no state of the manager (topic creation does its file work off the event loop
        with them). Raises InvalidTopicError for a bad name or partition, OSError when the
        disk refuses. Blocks on disk.
        """
        self.sync_prepared(self.make_partition_files(topic, partitions))

    def make_partition_files(self, topic: str, partitions: Iterable[int]) -> list[Path]:
        """``prepare_partitions`` without the syncs: the folders it made or found, for
        :meth:`sync_prepared` (several creations may share one). Any thread."""
        validate_topic(topic)
        made: list[Path] = []
        for partition in partitions:
            if partition < 0:
                raise InvalidTopicError(f"invalid partition {partition}")
            folder = self.data_dir / partition_dir_name(topic, partition)
            folder.mkdir(exist_ok=True)
            if not any(name.endswith(files.LOG_SUFFIX) for name in os.listdir(folder)):
                # The log file last: a folder with a .log has its whole first segment.
                for path in (
                    files.index_path(folder, 0),
                    files.time_index_path(folder, 0),
                    files.log_path(folder, 0),
                ):
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
            made.append(folder)
        return made

    def sync_prepared(self, made: Iterable[Path]) -> None:
        """fsync the folders ``make_partition_files`` made (their entries: the segment
        files), then the data directory (its entries: the folders). The new files are empty,
        so there is no data of theirs to sync, and the first fsync of an append to one makes
        its inode durable before that append is acknowledged. On a journalling file system
        the first sync commits every creation and the others find little left. Any thread."""
        for folder in made:
            files.fsync_dir(folder)
        files.fsync_dir(self.data_dir)

    def create(
        self, topic: str, partition: int, config: LogConfig, *, prepared: bool = False
    ) -> PartitionLog:
        """Create the log of a partition (idempotent: an existing log gets ``config``).

        ``prepared``: ``prepare_partitions`` made its files durably, so nothing is written or
        synced here (a few small reads). Raises InvalidTopicError for a bad topic name or a
        negative partition. Blocks on disk unless ``prepared``.
        """
        self._check_open()
        validate_topic(topic)
        if partition < 0:
            raise InvalidTopicError(f"invalid partition {partition}")
        key = (topic, partition)
        existing = self._logs.get(key)
        if existing is not None:
            existing.update_config(config)
            return existing
        path = self.data_dir / partition_dir_name(topic, partition)
        if not prepared:
            self.prepare_partitions(topic, [partition])
        partition_log = PartitionLog.open(
            path, config, now_ms=0, recover=False, cache=self.file_cache
        )
        self._logs[key] = partition_log
        return partition_log

    def delete(self, topic: str, partition: int) -> None:
        """Delete a partition's log and its folder (also one never opened); no-op if there
        is none.

        The folder is first renamed to ``...-delete`` (atomic), so a crash midway leaves
        nothing that opens as a partition.
        """
        self._check_open()
        partition_log = self._logs.pop((topic, partition), None)
        if partition_log is None:
            # A folder ``prepare_partitions`` made for a creation that failed before opening.
            folder = self.data_dir / partition_dir_name(topic, partition)
            if folder.is_dir():
                doomed = folder.with_name(f"{folder.name}.{uuid.uuid4().hex[:8]}{DELETED_SUFFIX}")
                folder.rename(doomed)
                files.fsync_dir(self.data_dir)
                _remove_tree(doomed)
            return
        for segment in partition_log.segments:
            segment.close()
        doomed = self.data_dir / deleted_dir_name(
            partition_log.directory.name, uuid.uuid4().hex[:8], files.name_max(self.data_dir)
        )
        partition_log.directory.rename(doomed)
        files.fsync_dir(self.data_dir)
        partition_log.directory = doomed
        partition_log.delete()

    def partitions(self) -> dict[tuple[str, int], PartitionLog]:
        """Every log by (topic, partition) (a copy of the mapping)."""
        return dict(self._logs)

    def flush_all(self) -> None:
        """fsync every log."""
        self._check_open()
        for partition_log in self._logs.values():
            partition_log.flush()

    def close(self) -> None:
        """Close every log (flush and checkpoint), write the clean-shutdown marker, unlock.

        Idempotent. If closing a log fails, no marker is written (the next open recovers).
        """
        if self._closed:
            return
        self._closed = True
        try:
            failed: OSError | None = None
            for partition_log in self._logs.values():
                try:
                    partition_log.close()
                except OSError as e:  # e.g. a full disk: the other logs are closed still
                    log.error("closing the log in %s failed: %s", partition_log.directory, e)
                    failed = failed or e
            if failed is not None:
                raise failed
            files.atomic_write(self.data_dir / CLEAN_SHUTDOWN_FILE, b"clean\n")
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)

    def _check_open(self) -> None:
        if self._closed:
            raise LogClosedError(f"the log manager of {self.data_dir} is closed")

    def __enter__(self) -> LogManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
