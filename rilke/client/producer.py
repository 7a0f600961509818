"""The producer: ``rilke.aio.Producer`` (asyncio) and ``rilke.Producer`` (blocking facade).

send() partitions the record and appends it to the accumulator under a lock in the caller's
thread; the sender task on the event loop drains batches and talks to brokers. The blocking
producer runs that loop on a daemon thread, so a send() costs no thread hop.

Keys and values are bytes (or bytearray/memoryview); a str is encoded as UTF-8; None is a
null key or value. Header values likewise; header keys are str.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat
from typing import Any

from rilke.client import tracing
from rilke.client.accumulator import (
    BATCH_OVERHEAD_BYTES,
    RECORD_OVERHEAD_BYTES,
    BufferFull,
    RecordAccumulator,
)
from rilke.client.batch import RecordFuture
from rilke.client.cluster import Cluster
from rilke.client.config import (
    PRODUCER_ALIASES,
    cluster_settings,
    compression_id,
    kafka_names,
    normalize_acks,
    require_positive,
)
from rilke.client.loop_thread import add_exit_hook, remove_exit_hook, shared_loop
from rilke.client.metrics import ProducerMetrics
from rilke.client.partitioner import KeyPartitioner, StickyPartitioner
from rilke.client.send_many import ManySend
from rilke.client.sender import Sender
from rilke.client.structs import RecordMetadata, TopicPartition
from rilke.errors import (
    IllegalStateError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    ProducerClosedError,
    UnknownTopicOrPartitionError,
)

log = logging.getLogger(__name__)

_new_tuple = tuple.__new__
_INT64_MAX = (1 << 63) - 1

Headers = Iterable[tuple[str, "bytes | str | None"]]


def _to_bytes(x: Any, what: str) -> bytes | None:
    if x is None or isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode()
    if isinstance(x, bytearray | memoryview):
        return bytes(x)
    raise TypeError(f"{what} must be bytes, str or None, not {type(x).__name__}")


def _headers(headers: Headers | None) -> list[tuple[str, bytes | None]] | None:
    if not headers:
        return None
    out = []
    for k, v in headers:
        if not isinstance(k, str):
            raise TypeError(f"header keys must be str, not {type(k).__name__}")
        out.append((k, _to_bytes(v, "a header value")))
    return out


Serializer = Callable[[Any], Any]
Partitioner = Callable[[Any, list[int], list[int]], int]
"""kafka-python's partitioner: ``(key_bytes, all_partitions, available_partitions) -> int``."""


def _serialize(fn: Serializer, value: Any, what: str, topic: str) -> Any:
    from rilke.serde import SerializationError

    try:
        return fn(value)
    except SerializationError:
        raise
    except Exception as exc:
        raise SerializationError(
            f"the {what} serializer failed on a record for topic {topic!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


class _ProducerCore:
    """Settings, accumulator and partitioning shared by both facades."""

    @kafka_names(PRODUCER_ALIASES, "producer")
    def __init__(
        self,
        bootstrap_servers: str | Iterable[str] = "127.0.0.1:9292",
        *,
        client_id: str = "rilke-producer",
        acks: int | str = "all",
        linger_ms: float = 5,
        batch_size: int = 512 * 1024,
        compression: str | None = "none",
        max_in_flight: int = 5,
        retries: int = 2**31 - 1,
        retry_backoff_ms: float = 100,
        retry_backoff_max_ms: float = 1000,
        delivery_timeout_ms: float = 120_000,
        request_timeout_ms: float = 30_000,
        enable_idempotence: bool = True,
        max_request_size: int = 1024 * 1024,
        buffer_memory: int = 32 * 1024 * 1024,
        max_block_ms: float = 60_000,
        metadata_max_age_ms: float = 300_000,
        produce_path: str = "unary",
        key_serializer: Serializer | None = None,
        value_serializer: Serializer | None = None,
        partitioner: Partitioner | None = None,
        trace_context: bool | None = None,
    ) -> None:
        self.acks = normalize_acks(acks)
        for name, fn in (
            ("key_serializer", key_serializer),
            ("value_serializer", value_serializer),
            ("partitioner", partitioner),
        ):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable, not {type(fn).__name__}")
        self.key_serializer = key_serializer
        self.value_serializer = value_serializer
        self.partitioner = partitioner
        if trace_context and not tracing.ENABLED:
            raise ValueError("trace_context=True needs OpenTelemetry: pip install 'rilke[otel]'")
        # W3C trace context in headers: by default when the program has set up tracing.
        self.trace_context = (
            tracing.tracing_configured() if trace_context is None else bool(trace_context)
        )
        if produce_path not in ("unary", "stream"):
            raise ValueError(f"produce_path must be 'unary' or 'stream', not {produce_path!r}")
        codec = compression_id(compression)
        for name, value in (
            ("batch_size", batch_size),
            ("max_in_flight", max_in_flight),
            ("max_request_size", max_request_size),
            ("buffer_memory", buffer_memory),
            ("delivery_timeout_ms", delivery_timeout_ms),
        ):
            require_positive(name, value)
        for name, value in (
            ("linger_ms", linger_ms),
            ("retries", retries),
            ("max_block_ms", max_block_ms),
        ):
            require_positive(name, value, allow_zero=True)
        if enable_idempotence and self.acks != -1:
            # Kafka requires acks=all for idempotence; we keep sequences with acks=1 as well
            # (ordering across retries) but not with acks=0, where nothing is acknowledged.
            enable_idempotence = self.acks != 0
        self._cluster_settings = cluster_settings(
            bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
            retry_backoff_max_ms=retry_backoff_max_ms,
            metadata_max_age_ms=metadata_max_age_ms,
        )
        self._settings: dict[str, Any] = {
            "request_timeout_ms": request_timeout_ms,
            "retry_backoff_ms": retry_backoff_ms,
            "retry_backoff_max_ms": retry_backoff_max_ms,
            "retries": retries,
            "max_in_flight": max_in_flight,
            "max_request_size": max_request_size,
            "enable_idempotence": enable_idempotence,
            "produce_path": produce_path,
        }
        self.max_request_size = max_request_size
        self.max_block_s = max_block_ms / 1000.0
        self.acc = RecordAccumulator(
            batch_size=batch_size,
            linger_ms=linger_ms,
            compression=codec,
            buffer_memory=buffer_memory,
            delivery_timeout_ms=delivery_timeout_ms,
            max_batch_bytes=max_request_size,
        )
        self._sticky = StickyPartitioner()
        self._keyed = KeyPartitioner()
        self._tps: dict[tuple[str, int], TopicPartition] = {}
        # The sticky partition of each topic (the StickyPartitioner's choice), for keyless sends.
        self._sticky_tps: dict[str, TopicPartition] = {}
        self._max_record_bytes = max_request_size - RECORD_OVERHEAD_BYTES - BATCH_OVERHEAD_BYTES
        self.cluster: Cluster | None = None
        self.sender: Sender | None = None
        self._closed = False
        self._metrics = ProducerMetrics()
        # One check on the hot path decides whether a record needs anything beyond bytes.
        self._prepare: Callable[..., tuple[Any, Any, Any, Any]] | None = (
            self._prepare_record
            if key_serializer or value_serializer or partitioner or self.trace_context
            else None
        )

    def _start_on_loop(self) -> None:
        s = self._settings
        self.cluster = Cluster(**self._cluster_settings)
        self.sender = Sender(
            self.cluster,
            self.acc,
            acks=self.acks,
            retries=int(s["retries"]),
            retry_backoff_ms=s["retry_backoff_ms"],
            retry_backoff_max_ms=s["retry_backoff_max_ms"],
            request_timeout_ms=s["request_timeout_ms"],
            max_in_flight=int(s["max_in_flight"]),
            max_request_size=int(s["max_request_size"]),
            enable_idempotence=bool(s["enable_idempotence"]),
            produce_path=str(s["produce_path"]),
            metrics=self._metrics,
        )
        self.sender.start()

    def metrics(self) -> dict[str, Any]:
        """The producer's own metrics (see :meth:`ProducerMetrics.snapshot`): records sent,
        failed and retried, batch sizes, request latency, buffer use, and the circuit-breaker
        state of each broker. Safe to call from any thread."""
        return self._metrics.snapshot(
            self.acc, self.cluster.transport if self.cluster is not None else None
        )

    def _prepare_record(  # noqa: PLR0917
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Headers | None,
        partition: int | None,
        num_partitions: int,
    ) -> tuple[Any, Any, Any, int | None]:
        """Serializers, the partitioner callable and trace context, for producers that have
        any of them. Raises SerializationError (nothing queued) for a value that will not
        encode, ValueError for a partitioner answer out of range."""
        if self.value_serializer is not None and value is not None:
            value = _serialize(self.value_serializer, value, "value", topic)
        if self.key_serializer is not None and key is not None:
            key = _serialize(self.key_serializer, key, "key", topic)
        if partition is None and self.partitioner is not None:
            key = _to_bytes(key, "key")
            every = list(range(num_partitions))
            chosen = self.partitioner(key, every, every)
            if not isinstance(chosen, int) or not 0 <= chosen < num_partitions:
                raise ValueError(
                    f"the partitioner returned {chosen!r} for topic {topic!r}, which has "
                    f"partitions 0..{num_partitions - 1}"
                )
            partition = chosen
        if self.trace_context:
            headers = tracing.inject(_headers(headers))
        return value, key, headers, partition

    def _num_partitions(self, topic: str) -> int | None:
        cluster = self.cluster
        if cluster is None:
            raise IllegalStateError("the producer is not started: use start() or 'async with'")
        return cluster.partitions_for(topic)

    def _try_append(  # noqa: PLR0917  (the hot path: positional on purpose)
        self,
        topic: str,
        value: Any,
        key: Any,
        headers: Headers | None,
        partition: int | None,
        timestamp_ms: int | None,
        num_partitions: int,
    ) -> RecordFuture:
        """Append one record; raises BufferFull (nothing appended) when out of buffer space."""
        if self._prepare is not None:
            value, key, headers, partition = self._prepare(
                topic, value, key, headers, partition, num_partitions
            )
        if value.__class__ is not bytes:
            value = _to_bytes(value, "value")
        if key is not None and key.__class__ is not bytes:
            key = _to_bytes(key, "key")
        if headers:
            headers = _headers(headers)
        size = (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if size > self._max_record_bytes:
            raise MessageSizeTooLargeError(
                f"a record of {size} bytes is larger than max_request_size "
                f"({self.max_request_size}): raise max_request_size or send smaller records"
            )
        sticky = partition is None and key is None
        if sticky:  # one lookup: the topic's sticky partition, as a TopicPartition
            tp = self._sticky_tps.get(topic)
            if tp is None or tp.partition >= num_partitions:
                tp = self._sticky_tps[topic] = self._tp(
                    topic, self._sticky.partition(topic, num_partitions)
                )
        else:
            if partition is None:
                partition = self._keyed.partition(key, num_partitions)
            elif not 0 <= partition < num_partitions:
                raise UnknownTopicOrPartitionError(
                    f"partition {partition} of topic {topic!r} does not exist "
                    f"(the topic has {num_partitions} partitions)"
                )
            tp = self._tps.get((topic, partition))
            if tp is None:
                tp = self._tp(topic, partition)
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        elif not 0 <= timestamp_ms <= _INT64_MAX:
            raise ValueError(
                f"timestamp_ms must be in 0..2**63-1 (ms since the epoch), not {timestamp_ms}"
            )
        batch, index, _ = self.acc.append(tp, key, value, headers, timestamp_ms, size)
        if sticky and batch.full:
            self._sticky_tps[topic] = self._tp(
                topic, self._sticky.on_new_batch(topic, num_partitions, tp.partition)
            )
        return _new_tuple(RecordFuture, (batch, index))  # RecordFuture.make, inlined

    def _tp(self, topic: str, partition: int) -> TopicPartition:
        """The one TopicPartition of ``topic``/``partition`` (made once)."""
        tp = self._tps.get((topic, partition))
        if tp is None:
            tp = self._tps[(topic, partition)] = TopicPartition(topic, partition)
        return tp


class AIOProducer(_ProducerCore):
    """The asyncio producer: ``async with rilke.aio.Producer(...) as p: await p.send(...)``.

    All coroutines run on the loop that called :meth:`start`. See :class:`rilke.Producer` for
    the settings.
    """

    async def start(self) -> None:
        if self.sender is not None:
            return
        self._start_on_loop()
        loop = asyncio.get_running_loop()
        self._space = asyncio.Event()

        def space_freed() -> None:
            loop.call_soon_threadsafe(self._space.set)

        self.acc.on_space_freed = space_freed

    async def __aenter__(self) -> AIOProducer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def partitions_for(self, topic: str) -> int:
        """The number of partitions of ``topic`` (fetching metadata if needed)."""
        if self.cluster is None:
            await self.start()
        assert self.cluster is not None
        return await self.cluster.wait_for_topic(topic, self.max_block_s)

    async def send(  # noqa: PLR0917  (Kafka clients' positional order)
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Queue one record; returns an awaitable :class:`RecordFuture` of its metadata.

        Waits (up to max_block_ms) for topic metadata and buffer space; raises
        :class:`KafkaTimeoutError` when they do not come, :class:`ProducerClosedError` after
        close(), TypeError/ValueError for bad arguments.
        """
        if self._closed:
            raise ProducerClosedError("the producer is closed: create a new one to send")
        n = self._num_partitions(topic) if self.cluster is not None else None
        if n is None:
            n = await self.partitions_for(topic)
        deadline = None
        while True:
            try:
                return self._try_append(topic, value, key, headers, partition, timestamp_ms, n)
            except BufferFull:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_block_s
                if now >= deadline:
                    raise KafkaTimeoutError(
                        f"buffer_memory ({self.acc.buffer_memory} bytes) stayed full for "
                        f"max_block_ms: the broker is slower than the sends"
                    ) from None
                self._space.clear()
                try:
                    await asyncio.wait_for(self._space.wait(), min(0.1, deadline - now))
                except TimeoutError:
                    pass

    async def send_many(
        self,
        topic: str,
        values: Sequence[Any],
        keys: Sequence[Any] | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Sequence[RecordFuture]:
        """Queue many records (see :mod:`rilke.client.send_many`); one future per record, in
        order. Raises as :meth:`send` does, before any record is queued for bad arguments."""
        if self._closed:
            raise ProducerClosedError("the producer is closed: create a new one to send")
        n = self._num_partitions(topic) if self.cluster is not None else None
        if n is None:
            n = await self.partitions_for(topic)
        if self._prepare is not None:
            return [
                await self.send(topic, v, k, partition=partition, timestamp_ms=timestamp_ms)
                for v, k in zip(values, keys or repeat(None, len(values)), strict=True)
            ]
        many = ManySend(self, topic, values, keys, partition, timestamp_ms, n)
        deadline = None
        while True:
            try:
                many.step()
                return many.futures
            except BufferFull:
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.max_block_s
                if now >= deadline:
                    raise KafkaTimeoutError(
                        f"buffer_memory ({self.acc.buffer_memory} bytes) stayed full for "
                        f"max_block_ms: {many.queued} of "
                        f"{len(values)} records were queued"
                    ) from None
                self._space.clear()
                try:
                    await asyncio.wait_for(self._space.wait(), min(0.1, deadline - now))
                except TimeoutError:
                    pass

    async def send_and_wait(self, topic: str, value: Any = None, **kwargs: Any) -> RecordMetadata:
        """send() and await the acknowledgement."""
        fut = await self.send(topic, value, **kwargs)
        return await fut

    async def flush(self, timeout: float | None = None) -> None:
        """Send everything queued now and wait for it; raises KafkaTimeoutError on the deadline."""
        if self.sender is None:
            return
        batches = self.acc.snapshot_incomplete()
        with self.acc.lock:
            self.acc.flushing += 1
        self.sender.wake()
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            for b in batches:
                waiter = b.loop_waiter(self.acc.lock)
                if waiter is None:
                    continue
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    await asyncio.wait_for(waiter, remaining)
                except TimeoutError:
                    raise KafkaTimeoutError(f"flush did not finish within {timeout}s") from None
        finally:
            with self.acc.lock:
                self.acc.flushing -= 1

    async def close(self, timeout: float | None = None) -> None:
        """Send what is queued (waiting up to ``timeout`` seconds, None: delivery timeout),
        fail what is left with :class:`ProducerClosedError`, and release connections."""
        if self._closed:
            return
        self._closed = True
        if self.sender is None:
            return
        with self.acc.lock:
            self.acc.closed = True
        wait_s = self.acc.delivery_timeout_s if timeout is None else timeout
        await self.sender.stop(wait_s)
        assert self.cluster is not None
        await self.cluster.close()

    async def stop(self, timeout: float | None = None) -> None:
        """aiokafka's name for :meth:`close`."""
        await self.close(timeout)


EXIT_FLUSH_TIMEOUT_S = 10.0
"""How long a producer the program did not close may take to deliver its records at
interpreter exit; what is still undelivered then is dropped, with a warning that counts it."""


class Producer:
    """A blocking producer. Thread-safe: send() from any number of threads.

    ``Producer(bootstrap_servers="127.0.0.1:9292", acks=1, linger_ms=5, batch_size=512 KiB,
    compression="none"|"gzip"|"lz4", max_in_flight=5, retries=..., retry_backoff_ms=100,
    retry_backoff_max_ms=1000, delivery_timeout_ms=120000, request_timeout_ms=30000,
    enable_idempotence=True, max_request_size=1 MiB, buffer_memory=32 MiB, max_block_ms=60000,
    client_id="rilke-producer", produce_path="unary"|"stream", key_serializer=None,
    value_serializer=None, partitioner=None, trace_context=None)``; kafka-python's ``compression_type`` and
    ``max_in_flight_requests_per_connection`` are accepted for ``compression`` and
    ``max_in_flight``. An unknown setting is a TypeError naming it.

    acks: 0 (no acknowledgement), 1 (the leader wrote it), 'all'/-1 (committed; the
    default, as Kafka's clients since 3.0). compression: "none", "gzip", "lz4", and "zstd" or
    "snappy" with the ``zstd``/``snappy`` extras. key_serializer/value_serializer: callables
    from a key/value to bytes (see :mod:`rilke.serde`), not called for None; a failure raises
    SerializationError at send(). partitioner: kafka-python's callable ``(key_bytes,
    all_partitions, available_partitions) -> partition``, for records without a partition.
    trace_context: write the active OpenTelemetry span's ``traceparent`` into each record's
    headers (None: when the program has set a tracer provider; see rilke.client.tracing).
    A producer the program forgets to close flushes at interpreter exit (up to
    :data:`EXIT_FLUSH_TIMEOUT_S`), or warns how many records it dropped. With
    enable_idempotence (the default; off for acks=0) the producer gets a producer id and
    numbers each partition's records, so retries neither duplicate nor reorder them.
    batch_size is a soft bound: a batch closes once it reaches it (the last record may cross);
    max_request_size is the hard one: for a record and for a batch (the broker's default
    max.message.bytes is 1 MiB; raise both together).
    produce_path: "unary" sends each request as its own Produce call (up to max_in_flight
    at once); "stream" pipelines them on one ProduceStream per broker.
    """

    def __init__(
        self, bootstrap_servers: str | Iterable[str] = "127.0.0.1:9292", **config: Any
    ) -> None:
        self._aio = AIOProducer(bootstrap_servers, **config)
        self._thread = shared_loop()
        try:
            self._thread.run(self._aio.start(), 30)
        except BaseException:
            self._thread.run(self._aio.close(0), 10)
            raise
        self._closed = False
        add_exit_hook(id(self), self._close_at_exit)

    def start(self) -> None:
        """aiokafka's start(): the blocking producer is started by its constructor already."""

    def stop(self, timeout: float | None = None) -> None:
        """aiokafka's name for :meth:`close`."""
        self.close(timeout)

    def _pending_records(self) -> int:
        return sum(b.record_count for b in self._aio.acc.snapshot_incomplete())

    def _close_at_exit(self) -> None:
        """The interpreter is exiting and the program never closed this producer: deliver
        what is queued (bounded), then close; warn with the count of what was dropped."""
        if self._closed:
            return
        pending = self._pending_records()
        try:
            if pending:
                self.flush(EXIT_FLUSH_TIMEOUT_S)
        except Exception:
            pass
        dropped = self._pending_records()
        self.close(0)
        if dropped:
            log.warning(
                "a producer that was never closed dropped %d of %d records at exit (not "
                "delivered within %.0fs): call close() or flush() before the program ends",
                dropped,
                pending,
                EXIT_FLUSH_TIMEOUT_S,
            )

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def partitions_for(self, topic: str) -> int:
        """The number of partitions of ``topic`` (fetching metadata if needed)."""
        n = self._aio._num_partitions(topic)
        if n is not None:
            return n
        return self._thread.run(self._aio.partitions_for(topic), self._aio.max_block_s + 1)

    def send(  # noqa: PLR0917  (Kafka clients' positional order)
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: Headers | None = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> RecordFuture:
        """Queue one record and return a :class:`RecordFuture` of its :class:`RecordMetadata`.

        Blocks up to max_block_ms for topic metadata (first send to a topic) and for buffer
        space; raises :class:`KafkaTimeoutError` then. Raises
        :class:`UnknownTopicOrPartitionError` for a topic the broker does not have,
        :class:`MessageSizeTooLargeError` for a record larger than max_request_size,
        :class:`ProducerClosedError` after close(), TypeError for bad keys/values, ValueError
        for a negative timestamp_ms.
        """
        aio = self._aio
        parts = aio.cluster.topics.get(topic) if aio.cluster is not None else None
        n = len(parts) if parts else None
        if n is None:
            if self._closed:
                raise ProducerClosedError("the producer is closed: create a new one to send")
            n = self.partitions_for(topic)
        try:
            return aio._try_append(topic, value, key, headers, partition, timestamp_ms, n)
        except BufferFull:
            pass
        deadline = time.monotonic() + aio.max_block_s
        while True:
            with aio.acc.space_freed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError(
                        f"buffer_memory ({aio.acc.buffer_memory} bytes) stayed full for "
                        f"max_block_ms: the broker is slower than the sends"
                    )
                if aio.acc.buffered_bytes >= aio.acc.buffer_memory:
                    aio.acc.space_freed.wait(min(remaining, 0.1))
            try:
                return aio._try_append(topic, value, key, headers, partition, timestamp_ms, n)
            except BufferFull:
                continue

    def send_many(
        self,
        topic: str,
        values: Sequence[Any],
        keys: Sequence[Any] | None = None,
        *,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> Sequence[RecordFuture]:
        """Queue many records of ``topic``: ``values[i]`` with ``keys[i]`` (or no keys), one
        create time for all (default now), no headers; returns one :class:`RecordFuture` per
        record, in order. For callers that already hold many records: the per-call work of
        :meth:`send` is paid per batch, not per record (:mod:`rilke.client.send_many`).

        Every record is checked first: TypeError, ValueError,
        :class:`MessageSizeTooLargeError` or :class:`UnknownTopicOrPartitionError` leave
        nothing queued. Blocks up to max_block_ms for buffer space; :class:`KafkaTimeoutError`
        then says how many records were queued (those are sent).
        """
        aio = self._aio
        n = self.partitions_for(topic)
        if aio._prepare is not None:
            return [
                self.send(topic, v, k, partition=partition, timestamp_ms=timestamp_ms)
                for v, k in zip(values, keys or repeat(None, len(values)), strict=True)
            ]
        many = ManySend(aio, topic, values, keys, partition, timestamp_ms, n)
        deadline = time.monotonic() + aio.max_block_s
        while True:
            try:
                many.step()
                return many.futures
            except BufferFull:
                pass
            with aio.acc.space_freed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise KafkaTimeoutError(
                        f"buffer_memory ({aio.acc.buffer_memory} bytes) stayed full for "
                        f"max_block_ms: {many.queued} of "
                        f"{len(values)} records were queued"
                    )
                if aio.acc.buffered_bytes >= aio.acc.buffer_memory:
                    aio.acc.space_freed.wait(min(remaining, 0.1))

    def flush(self, timeout: float | None = None) -> None:
        """Send everything queued now and wait for it; raises KafkaTimeoutError on the deadline."""
        aio = self._aio
        batches = aio.acc.snapshot_incomplete()
        if not batches:
            return
        with aio.acc.lock:
            aio.acc.flushing += 1
        try:
            assert aio.sender is not None
            self._thread.loop.call_soon_threadsafe(aio.sender.wake)
            deadline = None if timeout is None else time.monotonic() + timeout
            for b in batches:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not b.wait(remaining):
                    raise KafkaTimeoutError(f"flush did not finish within {timeout}s")
        finally:
            with aio.acc.lock:
                aio.acc.flushing -= 1

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds; None: the delivery timeout), then stop.

        Records not delivered by then fail with :class:`ProducerClosedError`.
        """
        if self._closed:
            return
        self._closed = True
        remove_exit_hook(id(self))
        wait_s = self._aio.acc.delivery_timeout_s if timeout is None else timeout
        self._thread.run(self._aio.close(timeout), wait_s + 10)

    def metrics(self) -> dict[str, Any]:
        """See :meth:`AIOProducer.metrics`: records sent and failed, retries, batch sizes,
        request latency, buffer use, circuit-breaker state per broker."""
        return self._aio.metrics()
