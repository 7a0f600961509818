"""A producer batch and the per-record futures that look into it.

One :class:`ProducerBatch` holds many records; a record's :class:`RecordFuture` is only a
(batch, index) pair, so sending a record allocates one small object and no locks or events.
The batch completes once (in the sender's event loop), wakes blocking waiters through one
threading.Event, asyncio waiters through futures created only when someone awaits, and runs
callbacks registered on any of its records.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Generator
from typing import Any

from rilke.client.structs import RecordMetadata, TopicPartition
from rilke.errors import KafkaTimeoutError, RilkeError

_PENDING = object()


class ProducerBatch:
    """Records for one partition, appended under the accumulator's lock.

    Lifecycle: open (taking records) -> closed (drained by the sender; ``data`` built,
    sequence stamped) -> done (``base_offset`` or ``exception`` set, exactly once).

    While open, the records are kept as columns, not encoded: ``values``, ``keys`` (None
    while every key is null), ``headers`` (encoded headers sections; None while no record has
    any) and ``timestamps``, so an append is a few list appends under the accumulator's
    lock. The sender encodes them in one call when it closes the batch (:meth:`encode`).
    ``size`` is an upper bound of the encoded batch's bytes.
    """

    __slots__ = (
        "_callbacks",
        "_done_event",
        "_loop_waiters",
        "attempts",
        "base_offset",
        "base_sequence",
        "builder",
        "created_s",
        "data",
        "deadline_s",
        "exception",
        "full",
        "headers",
        "keys",
        "lock",
        "log_append_time",
        "record_count",
        "retry_at_s",
        "size",
        "timestamps",
        "tp",
        "values",
    )

    def __init__(
        self,
        tp: TopicPartition,
        builder: Any,
        created_s: float,
        deadline_s: float,
        lock: threading.Lock,
    ) -> None:
        self.tp = tp
        self.lock = lock  # the accumulator's: guards completion against callback registration
        self.builder = builder
        self.created_s = created_s
        self.deadline_s = deadline_s
        self.record_count = 0
        self.size = 0
        self.timestamps: list[int] = []
        self.values: list[bytes | None] = []
        self.keys: list[bytes | None] | None = None
        self.headers: list[bytes | None] | None = None
        self.full = False
        self.data: bytes | None = None
        self.base_sequence = -1
        self.attempts = 0
        self.retry_at_s = 0.0
        self.base_offset: Any = _PENDING
        self.log_append_time = -1
        self.exception: BaseException | None = None
        self._done_event = threading.Event()
        self._callbacks: list[tuple[int, Callable[[Any], object], bool]] | None = None
        self._loop_waiters: list[asyncio.Future[None]] | None = None

    def encode(self) -> Any:
        """Encode the records into the builder (once, when the batch is closed: no appends
        after it) and return the builder."""
        builder = self.builder
        values = self.values
        if values:
            builder.append_columns(self.keys, values, self.headers, self.timestamps)
            self.values = []
            self.keys = self.headers = None
        return builder

    @property
    def done(self) -> bool:
        return self._done_event.is_set()

    def metadata(self, index: int) -> RecordMetadata:
        base = self.base_offset
        offset = -1 if base < 0 else base + index
        ts = self.log_append_time if self.log_append_time >= 0 else self.timestamps[index]
        return RecordMetadata(self.tp.topic, self.tp.partition, offset, ts)

    def complete(self, base_offset: int, log_append_time: int, lock: threading.Lock) -> None:
        """Record success (called once, from the sender's loop)."""
        self._finish(base_offset, log_append_time, None, lock)

    def fail(self, exc: BaseException, lock: threading.Lock) -> None:
        """Record failure (called once, from the sender's loop or on close)."""
        self._finish(-1, -1, exc, lock)

    def _finish(
        self,
        base_offset: int,
        log_append_time: int,
        exc: BaseException | None,
        lock: threading.Lock,
    ) -> None:
        with lock:
            if self._done_event.is_set():
                return
            self.base_offset = base_offset
            self.log_append_time = log_append_time
            self.exception = exc
            self.builder = None
            self.data = None
            self.values = []
            self.keys = self.headers = None
            self._done_event.set()
            callbacks, self._callbacks = self._callbacks, None
            waiters, self._loop_waiters = self._loop_waiters, None
        for fut in waiters or ():
            if not fut.done():
                fut.get_loop().call_soon_threadsafe(_resolve, fut)
        for index, fn, is_errback in callbacks or ():
            _run_callback(self, index, fn, is_errback)

    def add_callback(
        self, index: int, fn: Callable[[Any], object], is_errback: bool, lock: threading.Lock
    ) -> None:
        with lock:
            if not self._done_event.is_set():
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append((index, fn, is_errback))
                return
        _run_callback(self, index, fn, is_errback)

    def wait(self, timeout_s: float | None) -> bool:
        return self._done_event.wait(timeout_s)

    def loop_waiter(self, lock: threading.Lock) -> asyncio.Future[None] | None:
        """A future of the running loop resolved when the batch is done (None if done now)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with lock:
            if self._done_event.is_set():
                return None
            if self._loop_waiters is None:
                self._loop_waiters = []
            self._loop_waiters.append(fut)
        return fut


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


def _run_callback(
    batch: ProducerBatch, index: int, fn: Callable[[Any], object], is_errback: bool
) -> None:
    exc = batch.exception
    try:
        if exc is None and not is_errback:
            fn(batch.metadata(index))
        elif exc is not None and is_errback:
            fn(exc)
    except Exception:  # a user's callback must not break the sender
        import logging

        logging.getLogger(__name__).exception("producer callback raised")


class RecordFuture(tuple[ProducerBatch, int]):
    """The future result of one send(): a :class:`RecordMetadata` or an exception.

    Blocking code calls :meth:`get`; asyncio code awaits it. Callbacks run in the producer's
    I/O thread (or inline, if the record is already done): keep them short.

    A (batch, index) tuple underneath, made with :meth:`make` without a Python ``__init__``:
    one is created per record sent.
    """

    __slots__ = ()

    @staticmethod
    def make(batch: ProducerBatch, index: int) -> RecordFuture:
        return tuple.__new__(RecordFuture, (batch, index))

    @property
    def _batch(self) -> ProducerBatch:
        return self[0]

    @property
    def _index(self) -> int:
        return self[1]

    @property
    def _lock(self) -> threading.Lock:
        return self[0].lock

    def done(self) -> bool:
        return self._batch.done

    def succeeded(self) -> bool:
        return self._batch.done and self._batch.exception is None

    def failed(self) -> bool:
        return self._batch.done and self._batch.exception is not None

    def exception(self) -> BaseException | None:
        """The failure, or None if the record succeeded or is not done yet."""
        return self._batch.exception if self._batch.done else None

    def get(self, timeout: float | None = None) -> RecordMetadata:
        """Wait up to ``timeout`` seconds (None: forever) for the acknowledgement.

        Returns the record's :class:`RecordMetadata`; raises the delivery error, or
        :class:`KafkaTimeoutError` if the record is not done in time.
        """
        batch = self._batch
        if not batch.wait(timeout):
            raise KafkaTimeoutError(f"record not acknowledged within {timeout}s (still pending)")
        if batch.exception is not None:
            raise batch.exception
        return batch.metadata(self._index)

    def result(self, timeout: float | None = None) -> RecordMetadata:
        return self.get(timeout)

    def add_callback(self, fn: Callable[[RecordMetadata], object]) -> RecordFuture:
        """Call ``fn(metadata)`` when the record is acknowledged."""
        self._batch.add_callback(self._index, fn, False, self._lock)
        return self

    def add_errback(self, fn: Callable[[BaseException], object]) -> RecordFuture:
        """Call ``fn(exception)`` when the record fails."""
        self._batch.add_callback(self._index, fn, True, self._lock)
        return self

    def add_both(
        self, fn: Callable[[BaseException | None, RecordMetadata | None], object]
    ) -> RecordFuture:
        """Call ``fn(err, metadata)`` (one of them None) when done: confluent's on_delivery."""
        self.add_callback(lambda md: fn(None, md))
        self.add_errback(lambda exc: fn(exc, None))
        return self

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        batch = self._batch
        if not batch.done:
            waiter = batch.loop_waiter(self._lock)
            if waiter is not None:
                yield from waiter.__await__()
        if batch.exception is not None:
            raise batch.exception
        return batch.metadata(self._index)

    def __repr__(self) -> str:
        state = "pending" if not self.done() else ("failed" if self.failed() else "done")
        return f"<RecordFuture {self._batch.tp.topic}-{self._batch.tp.partition} #{self._index} {state}>"


def is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, RilkeError) and exc.retriable
