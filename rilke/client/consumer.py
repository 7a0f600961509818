"""The consumer: ``rilke.aio.Consumer`` (asyncio) and ``rilke.Consumer`` (blocking facade).

Partitions come from one assignment source: :meth:`assign` (manual), or a consumer group
(``group_id`` with :meth:`subscribe`), which rilke/client/group.py provides by setting
:data:`GROUP_FACTORY`: it is called with the consumer core and returns an object with
``subscribe(topics)``, ``async poll()`` (drives heartbeats; calls ``core.fetcher.assign`` on
assignment changes), ``async commit(offsets)``, ``async committed(tps)``, ``async close()``.
Its ``committed`` answers the fetcher's ``initial_position`` hook.

The blocking consumer runs the fetch loop on a daemon thread; poll() decodes buffered batches
in the caller's thread, so a poll costs no thread hop when records are waiting.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from rilke.client.cluster import Cluster
from rilke.client.config import CONSUMER_ALIASES, cluster_settings, kafka_names, require_positive
from rilke.client.fetcher import Fetcher
from rilke.client.loop_thread import shared_loop
from rilke.client.offsets import EARLIEST, LATEST, list_offsets, normalize_tps
from rilke.client.structs import ConsumerRecord, OffsetAndTimestamp, TopicPartition
from rilke.errors import ConsumerClosedError, IllegalStateError

GROUP_FACTORY: Callable[[Any], Any] | None = None
"""Set by rilke.client.group to build a group membership for consumers with a group_id."""

Records = dict[TopicPartition, list[ConsumerRecord]]


def _iter_wait_ms(timeout_s: float | None, last_record: float) -> float:
    """How long an iterator's next poll may wait: a second, or what is left of
    consumer_timeout_ms since the last record."""
    if timeout_s is None:
        return 1000.0
    return max(0.0, min(1.0, last_record + timeout_s - time.monotonic())) * 1000.0


def _iter_timed_out(timeout_s: float | None, last_record: float) -> bool:
    return timeout_s is not None and time.monotonic() - last_record >= timeout_s


class _ConsumerCore:
    """Settings and the state both facades share; the loop-bound parts are made in start()."""

    @kafka_names(CONSUMER_ALIASES, "consumer")
    def __init__(
        self,
        *topics: str,
        bootstrap_servers: str | Iterable[str] = "127.0.0.1:9292",
        client_id: str = "rilke-consumer",
        group_id: str | None = None,
        auto_offset_reset: str = "latest",
        enable_auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        fetch_min_bytes: int = 1,
        fetch_max_wait_ms: int = 500,
        fetch_max_bytes: int = 52_428_800,
        max_partition_fetch_bytes: int = 1_048_576,
        max_prefetch_bytes: int = 4 * 1_048_576,
        max_poll_records: int = 500,
        check_crcs: bool = True,
        isolation_level: str = "read_uncommitted",
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        retry_backoff_max_ms: int = 1000,
        metadata_max_age_ms: int = 300_000,
        consumer_timeout_ms: float | None = None,
        key_deserializer: Callable[[bytes], Any] | None = None,
        value_deserializer: Callable[[bytes], Any] | None = None,
        **group_settings: Any,
    ) -> None:
        for name, fn in (
            ("key_deserializer", key_deserializer),
            ("value_deserializer", value_deserializer),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
        self.key_deserializer = key_deserializer
        self.value_deserializer = value_deserializer
        if consumer_timeout_ms is not None:
            require_positive("consumer_timeout_ms", consumer_timeout_ms, allow_zero=True)
        # Iterating the consumer stops after this long without a record (None: never), as
        # kafka-python's consumer_timeout_ms does.
        self.consumer_timeout_s = (
            None if consumer_timeout_ms is None else consumer_timeout_ms / 1000.0
        )
        if auto_offset_reset not in ("earliest", "latest", "none"):
            raise ValueError(
                f"auto_offset_reset must be 'earliest', 'latest' or 'none', not {auto_offset_reset!r}"
            )
        if isolation_level not in ("read_uncommitted", "read_committed"):
            raise ValueError(
                f"isolation_level must be 'read_uncommitted' or 'read_committed', not {isolation_level!r}"
            )
        for name, value in (
            ("fetch_max_bytes", fetch_max_bytes),
            ("max_partition_fetch_bytes", max_partition_fetch_bytes),
            ("max_prefetch_bytes", max_prefetch_bytes),
            ("max_poll_records", max_poll_records),
        ):
            require_positive(name, value)
        require_positive("fetch_max_wait_ms", fetch_max_wait_ms, allow_zero=True)
        self._cluster_args = cluster_settings(
            bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
            retry_backoff_max_ms=retry_backoff_max_ms,
            metadata_max_age_ms=metadata_max_age_ms,
        )
        if group_settings and group_id is None:
            raise TypeError(f"unknown consumer settings: {', '.join(sorted(group_settings))}")
        self.topics = list(topics)
        self.group_id = group_id
        self.enable_auto_commit = enable_auto_commit
        self.auto_commit_interval_ms = auto_commit_interval_ms
        self.group_settings = group_settings
        self.max_poll_records = max_poll_records
        self.request_timeout_s = request_timeout_ms / 1000.0
        self._fetcher_args = {
            "auto_offset_reset": auto_offset_reset,
            "fetch_min_bytes": fetch_min_bytes,
            "fetch_max_wait_ms": fetch_max_wait_ms,
            "fetch_max_bytes": fetch_max_bytes,
            "max_partition_fetch_bytes": max_partition_fetch_bytes,
            "max_prefetch_bytes": max_prefetch_bytes,
            "check_crcs": check_crcs,
            "isolation_level": 0 if isolation_level == "read_uncommitted" else 1,
            "request_timeout_ms": request_timeout_ms,
        }
        self.isolation_level = 0 if isolation_level == "read_uncommitted" else 1
        self.cluster: Cluster | None = None
        self.fetcher: Fetcher | None = None
        self.group: Any = None
        self.closed = False
        self.manual = False
        self.callbacks_in_thread = False  # set by the blocking facade

    async def start(self) -> None:
        """Connect and start fetching (the assignment comes from assign() or subscribe())."""
        if self.fetcher is not None:
            return
        self.cluster = Cluster(**self._cluster_args)
        self.fetcher = Fetcher(self.cluster, **self._fetcher_args)  # type: ignore[arg-type]
        self.fetcher.start()
        if self.group_id is not None:
            if GROUP_FACTORY is None:
                try:
                    import rilke.client.group  # noqa: F401  (sets GROUP_FACTORY)
                except ImportError:
                    pass
            if GROUP_FACTORY is not None:
                self.group = GROUP_FACTORY(self)
        if self.topics:
            await self.subscribe(self.topics)

    def _require(self) -> Fetcher:
        if self.closed:
            raise ConsumerClosedError("the consumer is closed: create a new one")
        if self.fetcher is None:
            raise IllegalStateError("the consumer is not started: use start() or 'async with'")
        return self.fetcher

    async def subscribe(
        self,
        topics: Iterable[str] = (),
        pattern: str | None = None,
        on_assign: Callable[[set[TopicPartition]], Any] | None = None,
        on_revoke: Callable[[set[TopicPartition]], Any] | None = None,
    ) -> None:
        """Subscribe to topics, or topics matching ``pattern`` (a Python regex matched in full
        by the coordinator), through the consumer group (needs ``group_id``).

        ``on_revoke(partitions)`` runs inside poll() before partitions are taken away (commit
        there if you commit manually), ``on_assign(partitions)`` after partitions are added.
        Without a group, subscribing to topics assigns all their partitions (read as a
        standalone consumer, as ``rilke consume`` does).
        """
        fetcher = self._require()
        self.topics = list(topics)
        if self.group is not None:
            fetcher.report_unknown_topics = False  # the coordinator revokes such partitions
            self.group.subscribe(self.topics, pattern, on_assign, on_revoke)
            return
        if pattern is not None:
            raise IllegalStateError("subscribing to a pattern needs a consumer group (group_id)")
        if self.group_id is not None:
            raise IllegalStateError(
                "consumer groups are not available in this build: use assign() without group_id"
            )
        assert self.cluster is not None
        tps: list[TopicPartition] = []
        for topic in self.topics:
            n = await self.cluster.wait_for_topic(topic, self.request_timeout_s)
            tps.extend(TopicPartition(topic, p) for p in range(n))
        fetcher.assign(tps)

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        """Read exactly these partitions (replaces the assignment; no group membership)."""
        fetcher = self._require()
        if self.group is not None and self.topics:
            raise IllegalStateError("assign() and subscribe() cannot be mixed on one consumer")
        self.manual = True
        fetcher.report_unknown_topics = True  # no coordinator revokes them: poll() says so
        fetcher.assign(normalize_tps(partitions))

    def assignment(self) -> set[TopicPartition]:
        return set(self._require().partitions)

    def subscription(self) -> set[str] | None:
        """The subscribed topics (kafka-python's subscription()); None when the consumer
        is not subscribed (never, after unsubscribe(), or with assign())."""
        if self.manual or not self.topics:
            return None
        return set(self.topics)

    def _unsubscribe_local(self) -> Any:
        """Drop the subscription and the assignment; returns the group membership to leave
        (None without a group), already replaced by a fresh one for a later subscribe()."""
        fetcher = self._require()
        self.topics = []
        self.manual = False
        fetcher.assign([])
        old = self.group
        if old is not None and GROUP_FACTORY is not None:
            self.group = GROUP_FACTORY(self)
        return old

    async def _leave(self, membership: Any) -> None:
        if membership is not None:
            await membership.close()

    def deserialize(self, got: Records) -> Records:
        """Apply key_deserializer/value_deserializer (not to None) to polled records;
        raises SerializationError naming the record that would not decode."""
        kd, vd = self.key_deserializer, self.value_deserializer
        if kd is None and vd is None:
            return got
        from rilke.serde import SerializationError

        out: Records = {}
        for tp, records in got.items():
            converted = []
            for r in records:
                try:
                    key = kd(r.key) if kd is not None and r.key is not None else r.key
                    value = vd(r.value) if vd is not None and r.value is not None else r.value
                except Exception as exc:
                    raise SerializationError(
                        f"cannot deserialize the record at {tp.topic}-{tp.partition} offset "
                        f"{r.offset}: {type(exc).__name__}: {exc}"
                    ) from exc
                converted.append(r._replace(key=key, value=value))
            out[tp] = converted
        return out

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        """The next poll() returns records from ``offset`` of ``partition`` (must be assigned)."""
        if offset < 0:
            raise ValueError(f"offset must be >= 0, not {offset}")
        tp = normalize_tps([partition])[0]
        self._require().seek(tp, offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        """Read from the first available offset of these (default: all assigned) partitions."""
        fetcher = self._require()
        for tp in normalize_tps(partitions) or list(fetcher.partitions):
            fetcher.seek(tp, None, EARLIEST)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        """Read only records produced from now on for these (default: all) partitions."""
        fetcher = self._require()
        for tp in normalize_tps(partitions) or list(fetcher.partitions):
            fetcher.seek(tp, None, LATEST)

    def pause(self, *partitions: TopicPartition) -> None:
        fetcher = self._require()
        with fetcher.lock:
            for tp in normalize_tps(partitions):
                if tp in fetcher.partitions:
                    fetcher.partitions[tp].paused = True

    def resume(self, *partitions: TopicPartition) -> None:
        fetcher = self._require()
        with fetcher.lock:
            for tp in normalize_tps(partitions):
                if tp in fetcher.partitions:
                    fetcher.partitions[tp].paused = False
        fetcher.wake()

    def highwater(self, partition: TopicPartition) -> int | None:
        """The last high watermark a fetch saw for ``partition`` (None before any fetch)."""
        st = self._require().partitions.get(partition)
        return None if st is None or st.high_watermark < 0 else st.high_watermark

    def lag(self, partition: TopicPartition) -> int | None:
        """Records between the position and the last high watermark a fetch saw (None when
        either is not known yet)."""
        st = self._require().partitions.get(partition)
        if st is None or st.high_watermark < 0 or st.position is None:
            return None
        return max(0, st.high_watermark - st.position)

    async def position(
        self, partition: TopicPartition | tuple[str, int], timeout_s: float | None = None
    ) -> int:
        """The offset of the next record poll() returns for ``partition`` (resolving a reset)."""
        tp = normalize_tps([partition])[0]
        fetcher = self._require()
        deadline = time.monotonic() + (self.request_timeout_s if timeout_s is None else timeout_s)
        while True:
            with fetcher.lock:
                st = fetcher.partitions.get(tp)
                if st is None:
                    raise IllegalStateError(
                        f"{tp.topic}-{tp.partition} is not assigned to this consumer"
                    )
                if st.position is not None:
                    return st.position
                if st.error is not None:
                    raise st.error
            if time.monotonic() >= deadline:
                from rilke.errors import KafkaTimeoutError

                raise KafkaTimeoutError(f"position of {tp.topic}-{tp.partition} not known in time")
            fetcher.wake()
            await asyncio.sleep(0.005)

    async def _offsets(self, partitions: Iterable[Any], query: int) -> dict[TopicPartition, int]:
        self._require()
        assert self.cluster is not None
        tps = normalize_tps(partitions)
        got = await list_offsets(
            self.cluster, dict.fromkeys(tps, query), self.request_timeout_s, self.isolation_level
        )
        return {tp: got[tp].offset for tp in tps}

    async def beginning_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        return await self._offsets(partitions, EARLIEST)

    async def end_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        return await self._offsets(partitions, LATEST)

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        """The first offset at or after each time in ms; None where no record is that late."""
        self._require()
        assert self.cluster is not None
        for ts in timestamps.values():
            if ts < 0:
                raise ValueError(f"timestamps must be >= 0 ms, not {ts}")
        got = await list_offsets(
            self.cluster,
            {normalize_tps([tp])[0]: ts for tp, ts in timestamps.items()},
            self.request_timeout_s,
            self.isolation_level,
        )
        return {tp: (ot if ot.offset >= 0 else None) for tp, ot in got.items()}

    async def partitions_for_topic(self, topic: str) -> set[int]:
        self._require()
        assert self.cluster is not None
        n = await self.cluster.wait_for_topic(topic, self.request_timeout_s)
        return set(range(n))

    async def close_core(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.group is not None:
            try:
                await self.group.close()
            except Exception:
                import logging

                logging.getLogger(__name__).warning("leaving the group failed", exc_info=True)
        if self.fetcher is not None:
            await self.fetcher.close()
            with self.fetcher.lock:
                self.fetcher.data_ready.notify_all()
        if self.cluster is not None:
            await self.cluster.close()


class AIOConsumer(_ConsumerCore):
    """The asyncio consumer: ``async with rilke.aio.Consumer("t", bootstrap_servers=...) as c``.

    ``await c.getmany(timeout_ms)`` (alias ``poll``) returns records by partition;
    ``async for record in c`` yields them one at a time. See :class:`rilke.Consumer` for the
    settings.
    """

    async def __aenter__(self) -> AIOConsumer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def getmany(self, timeout_ms: float = 0, max_records: int | None = None) -> Records:
        """Records fetched since the last call, up to ``max_records`` (default max_poll_records),
        waiting up to ``timeout_ms`` for some. Raises a partition's error once (see take())."""
        fetcher = self._require()
        limit = max_records or self.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            if self.group is not None:
                await self.group.poll()
            fetcher.aio_data_ready.clear()
            got = fetcher.take(limit)
            if got:
                return self.deserialize(got)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.closed:
                return {}
            try:
                await asyncio.wait_for(
                    fetcher.aio_data_ready.wait(), min(remaining, 0.5 if self.group else remaining)
                )
            except TimeoutError:
                pass

    poll = getmany

    async def getone(self) -> ConsumerRecord:
        """The next record, waiting as long as it takes."""
        while True:
            got = await self.getmany(1000, 1)
            for records in got.values():
                return records[0]

    async def __aiter__(self) -> AsyncIterator[ConsumerRecord]:
        """Records one by one; ends when the consumer closes, or after consumer_timeout_ms
        without a record."""
        last_record = time.monotonic()
        while not self.closed:
            got = await self.getmany(_iter_wait_ms(self.consumer_timeout_s, last_record))
            if got:
                last_record = time.monotonic()
            elif _iter_timed_out(self.consumer_timeout_s, last_record):
                return
            for records in got.values():
                for r in records:
                    yield r

    async def commit(self, offsets: dict[TopicPartition, Any] | None = None) -> None:
        """Commit ``offsets`` (the next offset to read, an int or OffsetAndMetadata, per
        partition), or the current position of every assigned partition."""
        if self.group is None:
            raise IllegalStateError("commit() needs a consumer group (group_id)")
        await self.group.commit(offsets)

    async def committed(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        """The group's committed OffsetAndMetadata (None: nothing committed) per partition,
        default the assigned ones."""
        if self.group is None:
            raise IllegalStateError("committed() needs a consumer group (group_id)")
        return dict(await self.group.committed(partitions))

    async def close(self) -> None:
        await self.close_core()

    async def stop(self) -> None:
        """aiokafka's name for :meth:`close`."""
        await self.close_core()

    def unsubscribe(self) -> None:
        """Give up the subscription and every assigned partition (aiokafka's unsubscribe());
        with a group, the member leaves it (in the background; commits first with
        auto-commit). A later subscribe() joins again."""
        old = self._unsubscribe_local()
        if old is not None:
            self._leaving = asyncio.ensure_future(self._leave(old))


class Consumer:
    """A blocking consumer (kafka-python style). Use from one thread.

    ``Consumer(*topics, bootstrap_servers="127.0.0.1:9292", group_id=None,
    auto_offset_reset="latest"|"earliest"|"none", fetch_min_bytes=1, fetch_max_wait_ms=500,
    fetch_max_bytes=50 MiB, max_partition_fetch_bytes=1 MiB, max_prefetch_bytes=4 MiB,
    max_poll_records=500, check_crcs=True, isolation_level="read_uncommitted",
    request_timeout_ms=30000, client_id="rilke-consumer", consumer_timeout_ms=None)``.

    Topics given without a group_id are read whole (every partition assigned); or call
    assign(). poll() returns ``{TopicPartition: [ConsumerRecord, ...]}``; iterating the
    consumer yields records one by one, and stops after consumer_timeout_ms without one
    (None: it waits for more as long as the consumer is open). Every wait is bounded by its
    timeout.

    With ``group_id`` (rilke/client/group.py): ``enable_auto_commit=True``,
    ``auto_commit_interval_ms=5000``, ``session_timeout_ms=45000``,
    ``max_poll_interval_ms=300000`` (a member that does not poll that long is removed and
    rejoins on its next poll), ``rebalance_timeout_ms`` (default max_poll_interval_ms),
    ``group_instance_id=None`` (static membership: close() keeps the partitions for the
    session timeout), ``group_remote_assignor`` ("sticky", "range", "roundrobin"). Topics
    given to the constructor or subscribe(topics, pattern, on_assign, on_revoke) are split
    among the group's members; commit(), commit_async(), committed(), close() (commits with
    auto-commit, then leaves at once).
    """

    def __init__(self, *topics: str, **config: Any) -> None:
        self._aio = AIOConsumer(*topics, **config)
        # Rebalance callbacks run on a worker thread while poll() waits, so they can call
        # this consumer's blocking methods (commit) without deadlocking its loop thread.
        self._aio.callbacks_in_thread = True
        self._thread = shared_loop()
        try:
            self._thread.run(self._aio.start(), self._aio.request_timeout_s + 5)
        except BaseException:
            self._thread.run(self._aio.close_core(), self._aio.request_timeout_s + 5)
            raise
        self._iter_buffer: list[ConsumerRecord] = []

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Any) -> Any:
        return self._thread.run(coro, self._aio.request_timeout_s + 5)

    def subscribe(
        self,
        topics: Iterable[str] = (),
        pattern: str | None = None,
        on_assign: Callable[[set[TopicPartition]], Any] | None = None,
        on_revoke: Callable[[set[TopicPartition]], Any] | None = None,
    ) -> None:
        """See :meth:`AIOConsumer.subscribe`. The callbacks run while poll() waits (on a
        worker thread, so they may call commit())."""
        self._run(self._aio.subscribe(list(topics), pattern, on_assign, on_revoke))

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        self._aio.assign(partitions)

    def assignment(self) -> set[TopicPartition]:
        return self._aio.assignment()

    def subscription(self) -> set[str] | None:
        return self._aio.subscription()

    def unsubscribe(self) -> None:
        """Give up the subscription and every assigned partition (kafka-python's
        unsubscribe()); with a group, leave it (committing first with auto-commit) and wait
        for that. A later subscribe() joins again."""
        old = self._aio._unsubscribe_local()
        if old is not None:
            self._run(self._aio._leave(old))

    def start(self) -> None:
        """aiokafka's start(): the blocking consumer is started by its constructor already."""

    def stop(self) -> None:
        """aiokafka's name for :meth:`close`."""
        self.close()

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        self._aio.seek(partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self._aio.seek_to_beginning(*partitions)

    def seek_to_end(self, *partitions: TopicPartition) -> None:
        self._aio.seek_to_end(*partitions)

    def pause(self, *partitions: TopicPartition) -> None:
        self._aio.pause(*partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._aio.resume(*partitions)

    def position(
        self, partition: TopicPartition | tuple[str, int], timeout: float | None = None
    ) -> int:
        return int(
            self._thread.run(
                self._aio.position(partition, timeout), (timeout or self._aio.request_timeout_s) + 5
            )
        )

    def highwater(self, partition: TopicPartition) -> int | None:
        return self._aio.highwater(partition)

    def lag(self, partition: TopicPartition) -> int | None:
        return self._aio.lag(partition)

    def beginning_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        return dict(self._run(self._aio.beginning_offsets(list(partitions))))

    def end_offsets(self, partitions: Iterable[Any]) -> dict[TopicPartition, int]:
        return dict(self._run(self._aio.end_offsets(list(partitions))))

    def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, OffsetAndTimestamp | None]:
        return dict(self._run(self._aio.offsets_for_times(timestamps)))

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(self._run(self._aio.partitions_for_topic(topic)))

    def poll(self, timeout_ms: float = 0, max_records: int | None = None) -> Records:
        """Records fetched since the last call, up to ``max_records`` (default
        max_poll_records), waiting up to ``timeout_ms`` for the first. Returns ``{}`` when none
        came in time. Raises a partition's error (offset out of range with
        auto_offset_reset='none', :class:`CorruptRecordError`) once."""
        aio = self._aio
        fetcher = aio._require()
        limit = max_records or aio.max_poll_records
        deadline = time.monotonic() + timeout_ms / 1000.0
        while True:
            if aio.group is not None and aio.group.poll_needed():
                self._run(aio.group.poll())
            got = fetcher.take(limit)
            if got:
                return aio.deserialize(got)
            with fetcher.data_ready:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or aio.closed:
                    return {}
                if not fetcher.has_buffered_locked():
                    fetcher.pollers_waiting += 1
                    try:
                        fetcher.data_ready.wait(min(remaining, 0.5) if aio.group else remaining)
                    finally:
                        fetcher.pollers_waiting -= 1

    def __iter__(self) -> Iterator[ConsumerRecord]:
        """Records one by one; ends when the consumer closes, or after consumer_timeout_ms
        without a record."""
        timeout_s = self._aio.consumer_timeout_s
        last_record = time.monotonic()
        while not self._aio.closed:
            if not self._iter_buffer:
                got = self.poll(_iter_wait_ms(timeout_s, last_record))
                if got:
                    last_record = time.monotonic()
                elif _iter_timed_out(timeout_s, last_record):
                    return
                for records in got.values():
                    self._iter_buffer.extend(records)
                self._iter_buffer.reverse()
                continue
            yield self._iter_buffer.pop()

    def commit(self, offsets: dict[TopicPartition, Any] | None = None) -> None:
        """Commit and wait (see :meth:`AIOConsumer.commit`)."""
        self._run(self._aio.commit(offsets))

    def commit_async(
        self,
        offsets: dict[TopicPartition, Any] | None = None,
        callback: Callable[[dict[TopicPartition, Any] | None, BaseException | None], Any]
        | None = None,
    ) -> concurrent.futures.Future[None]:
        """Commit without waiting; returns a future, and calls ``callback(offsets, error)``
        (on the consumer's loop thread) when the commit is done."""
        future = asyncio.run_coroutine_threadsafe(self._aio.commit(offsets), self._thread.loop)
        if callback is not None:
            future.add_done_callback(lambda f: callback(offsets, f.exception()))
        return future

    def committed(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, Any]:
        """See :meth:`AIOConsumer.committed`."""
        return dict(self._run(self._aio.committed(partitions)))

    def close(self) -> None:
        if self._aio.closed:
            return
        self._run(self._aio.close())
