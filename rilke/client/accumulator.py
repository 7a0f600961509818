"""The producer's record accumulator: per-partition batches filled by send(), drained by the sender.

Callers append from any thread under one lock (no thread hop per record); the lock is held
for a few list appends per record, since records stay unencoded until the sender closes
their batch (encoding them there in one call), so callers and the sender rarely wait for
each other. The sender, on the client's event loop, drains batches that are full, older than
``linger_ms``, or flushed. The
bytes held by unfinished batches are bounded by ``buffer_memory``: :meth:`append` reports a
full buffer and the producer facade decides how to wait.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from itertools import repeat
from typing import Any, NoReturn

from rilke import timeline
from rilke.client import codec
from rilke.client.batch import ProducerBatch
from rilke.client.structs import TopicPartition

RECORD_OVERHEAD_BYTES = 32
"""The most bytes a record adds to a batch beyond its key, value and headers: the record's
length (5), attributes (1), timestamp delta (10), offset delta (5), key and value lengths (5
each) and the headers count (1). A batch's ``size`` adds this per record, so it bounds the
encoded batch."""

BATCH_OVERHEAD_BYTES = 61
"""The batch header."""


class BufferFull(Exception):
    """Raised by :meth:`RecordAccumulator.append` while buffered bytes exceed buffer_memory."""


class RecordAccumulator:
    """Per-partition queues of batches. Thread-safe: every method takes ``self.lock``.

    Invariant: the last batch of a partition's queue is the only one that may be open (not
    full); batches leave a queue in order.
    """

    def __init__(
        self,
        *,
        batch_size: int,
        linger_ms: float,
        compression: int,
        buffer_memory: int,
        delivery_timeout_ms: float,
        max_batch_bytes: int = 1 << 62,
    ) -> None:
        self.lock = threading.Lock()
        self.max_batch_bytes = max_batch_bytes
        self.space_freed = threading.Condition(self.lock)
        self.batch_size = batch_size
        self.linger_s = linger_ms / 1000.0
        self.compression = compression
        self.buffer_memory = buffer_memory
        self.delivery_timeout_s = delivery_timeout_ms / 1000.0
        self.buffered_bytes = 0
        self._queues: dict[TopicPartition, deque[ProducerBatch]] = {}
        self.incomplete: set[ProducerBatch] = set()
        # Invariant: <= the delivery deadline of every queued batch (inf: none queued), so
        # expire() can answer "nothing yet" without taking the lock senders append under
        # (taking it on every sender round cost the producer 16% of the loop thread's time
        # and as much of send()'s, in lock hand-offs; `rilke bench produce`, issue 14).
        self.next_expiry_s = float("inf")
        self.flushing = 0
        self.closed = False
        self.fatal: BaseException | None = None  # set when the sender died: appends refuse
        # Set by the sender: wakes it (thread-safe). Called with the lock held, at most once
        # per batch, and only while the sender sleeps: the sender sets ``sender_sleeping``
        # before it drains, so a batch opened after its drain always wakes it.
        self.wakeup: Callable[[], None] = lambda: None
        self.sender_sleeping = False
        # Set by the aio facade to hear of freed space on its loop.
        self.on_space_freed: Callable[[], None] | None = None

    def _open_batch(
        self, tp: TopicPartition, queue: deque[ProducerBatch] | None
    ) -> tuple[ProducerBatch, deque[ProducerBatch]]:
        """Open a new batch at the end of ``tp``'s queue (made if ``queue`` is None); under
        the lock. Raises :class:`BufferFull` while buffered bytes exceed buffer_memory."""
        if self.buffered_bytes >= self.buffer_memory:
            raise BufferFull
        now = time.monotonic()
        batch = ProducerBatch(
            tp, codec.new_builder(self.compression), now, now + self.delivery_timeout_s, self.lock
        )
        if queue is None:
            queue = self._queues[tp] = deque()
        batch.size = BATCH_OVERHEAD_BYTES
        self.buffered_bytes += BATCH_OVERHEAD_BYTES
        queue.append(batch)
        self.incomplete.add(batch)
        self.next_expiry_s = min(self.next_expiry_s, batch.deadline_s)
        if timeline.ENABLED:
            timeline.mark_pending(batch, "send")
        return batch, queue

    def append(  # noqa: PLR0917  (the hot path: positional on purpose)
        self,
        tp: TopicPartition,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        timestamp_ms: int,
        size_hint: int = -1,
    ) -> tuple[ProducerBatch, int, bool]:
        """Append one record to ``tp``'s open batch, opening one if needed.

        ``key`` and ``value`` are bytes or None, ``headers`` a sequence of (str, bytes or
        None) pairs or None/empty, ``size_hint`` the record's key and value bytes (-1: count
        them here). The record is kept unencoded (see :class:`ProducerBatch`); the open batch
        is closed first when the record could carry it past ``max_batch_bytes``, the most a
        broker takes in one batch. Returns (batch, index in batch, whether a new batch was
        opened). Raises :class:`BufferFull` (nothing appended) while buffered bytes exceed
        buffer_memory, and TypeError for a key, value or header of the wrong type (nothing
        appended).
        """
        if value is not None and value.__class__ is not bytes:
            raise TypeError(f"value must be bytes or None, not {type(value).__name__}")
        if key is not None and key.__class__ is not bytes:
            raise TypeError(f"key must be bytes or None, not {type(key).__name__}")
        if size_hint < 0:
            size_hint = (len(key) if key is not None else 0) + (
                len(value) if value is not None else 0
            )
        encoded_headers = None
        if headers:
            encoded_headers = codec.encode_headers(headers)
            size_hint += len(encoded_headers)
        bound = size_hint + RECORD_OVERHEAD_BYTES
        with self.lock:
            if self.closed:
                self._refuse_closed()
            queue = self._queues.get(tp)
            batch = queue[-1] if queue else None
            created = False
            if batch is None or batch.full:
                batch, queue = self._open_batch(tp, queue)
                created = True
            elif batch.size + bound > self.max_batch_bytes and batch.record_count:
                batch.full = True
                batch, queue = self._open_batch(tp, queue)
                created = True
            index = batch.record_count
            batch.record_count = index + 1
            batch.values.append(value)
            if key is not None or batch.keys is not None:
                if batch.keys is None:
                    batch.keys = [None] * index
                batch.keys.append(key)
            if encoded_headers is not None or batch.headers is not None:
                if batch.headers is None:
                    batch.headers = [None] * index
                batch.headers.append(encoded_headers)
            batch.timestamps.append(timestamp_ms)
            size = batch.size + bound
            batch.size = size
            self.buffered_bytes += bound
            if size >= self.batch_size:
                batch.full = True
                if self.sender_sleeping:
                    self.sender_sleeping = False
                    self.wakeup()
            elif created and self.sender_sleeping:
                self.sender_sleeping = False
                self.wakeup()
            return batch, index, created

    def append_many(  # noqa: PLR0917  (the hot path: positional on purpose)
        self,
        tp: TopicPartition,
        keys: list[bytes | None] | None,
        values: list[bytes | None],
        timestamp_ms: int,
        start: int,
        stop: int,
        largest: int,
    ) -> tuple[ProducerBatch, int, int]:
        """Append records ``values[start:stop]`` (keys from ``keys``, or null; bytes or None)
        to ``tp``'s open batch, opening one if needed, until that batch is full. ``largest``
        (the key and value bytes of the largest record) keeps the batch within
        ``max_batch_bytes``. Returns (batch, index in the batch of the first record appended,
        index after the last one appended: ``stop`` when all fit). The caller calls again from
        there. Raises :class:`BufferFull` (nothing appended) while buffered bytes exceed
        buffer_memory, and TypeError for a key or value that is not bytes or None (nothing
        appended).
        """
        if start >= stop:
            raise ValueError(f"append_many of no records ({start}..{stop})")
        if keys is not None and len(keys) < stop:
            raise ValueError(f"{len(keys)} keys for values up to index {stop}")
        per = largest + RECORD_OVERHEAD_BYTES  # the most one record adds
        with self.lock:
            if self.closed:
                self._refuse_closed()
            queue = self._queues.get(tp)
            batch = queue[-1] if queue else None
            created = False
            if (
                batch is None
                or batch.full
                or (batch.record_count and batch.size + per > self.max_batch_bytes)
            ):
                if batch is not None:
                    batch.full = True
                batch, queue = self._open_batch(tp, queue)
                created = True
            size = batch.size
            # As many as surely fit under max_batch_bytes (at least one: the caller checked
            # that one record fits an empty batch), stopping at the one that reaches batch_size.
            fit = min((self.max_batch_bytes - size) // per, -(-(self.batch_size - size) // per))
            end = min(stop, start + max(fit, 1))
            added_values = values[start:end]
            added_keys = keys[start:end] if keys is not None else None
            for column, what in ((added_values, "value"), (added_keys, "key")):
                if column is not None and any(
                    x is not None and x.__class__ is not bytes for x in column
                ):
                    if created and queue is not None:  # no empty batch: the broker refuses those
                        self._drop_new(tp, batch, queue)
                    raise TypeError(f"every {what} must be bytes or None")
            added = sum(map(len, filter(None, added_values)))
            if added_keys is not None:
                added += sum(map(len, filter(None, added_keys)))
            count = end - start
            added += count * RECORD_OVERHEAD_BYTES
            first = batch.record_count
            batch.record_count = first + count
            batch.values.extend(added_values)
            if added_keys is not None or batch.keys is not None:
                if batch.keys is None:
                    batch.keys = [None] * first
                batch.keys.extend(added_keys if added_keys is not None else repeat(None, count))
            if batch.headers is not None:
                batch.headers.extend(repeat(None, count))
            batch.timestamps.extend(repeat(timestamp_ms, count))
            size += added
            batch.size = size
            self.buffered_bytes += added
            if end < stop or size >= self.batch_size:
                batch.full = True
                if self.sender_sleeping:
                    self.sender_sleeping = False
                    self.wakeup()
            elif created and self.sender_sleeping:
                self.sender_sleeping = False
                self.wakeup()
            return batch, first, end

    def _drop_new(
        self, tp: TopicPartition, batch: ProducerBatch, queue: deque[ProducerBatch]
    ) -> None:
        """Take back a batch just opened that got no record; under the lock."""
        queue.pop()
        self.incomplete.discard(batch)
        self.buffered_bytes -= batch.size
        if not queue:
            del self._queues[tp]

    def _refuse_closed(self) -> NoReturn:
        from rilke.errors import ProducerClosedError

        if self.fatal is not None:
            raise ProducerClosedError(
                f"the producer stopped after an error ({self.fatal}): create a new one"
            )
        raise ProducerClosedError("the producer is closed: create a new one to send")

    def drain(
        self, now: float, sendable: Callable[[TopicPartition], bool]
    ) -> tuple[list[ProducerBatch], float | None, bool]:
        """Take the first batch of every partition that is ready and ``sendable(tp)``.

        Ready: full, lingered long enough, or a flush or close is under way. Returns the
        batches (closed: no more appends), the earliest time another batch becomes ready
        by linger (None: none waiting), and whether a ready batch is left behind one taken
        (one per partition per call: the caller drains again if it can send more).
        """
        ready: list[ProducerBatch] = []
        next_ready: float | None = None
        more = False
        force = self.flushing > 0 or self.closed
        linger_s = self.linger_s
        with self.lock:
            empty: list[TopicPartition] = []
            for tp, queue in self._queues.items():
                if not queue:
                    empty.append(tp)
                    continue
                batch = queue[0]
                due = batch.created_s + linger_s
                if batch.full or force or due <= now or len(queue) > 1:
                    if sendable(tp):
                        queue.popleft()
                        batch.full = True
                        ready.append(batch)
                        if not queue:
                            empty.append(tp)
                        elif not more:
                            after = queue[0]
                            more = (
                                after.full
                                or force
                                or len(queue) > 1
                                or after.created_s + linger_s <= now
                            )
                elif next_ready is None or due < next_ready:
                    next_ready = due
            for tp in empty:
                if not self._queues.get(tp):
                    self._queues.pop(tp, None)
        return ready, next_ready, more

    def expire(self, now: float) -> list[ProducerBatch]:
        """Remove and return queued (never sent) batches past their delivery deadline."""
        expired: list[ProducerBatch] = []
        if now < self.next_expiry_s:  # an unlocked read: a batch added since is seen next round
            return expired
        with self.lock:
            soonest = float("inf")
            for queue in self._queues.values():
                while queue and queue[0].deadline_s <= now:
                    batch = queue.popleft()
                    batch.full = True
                    expired.append(batch)
                if queue and queue[0].deadline_s < soonest:
                    soonest = queue[0].deadline_s
            self.next_expiry_s = soonest
        return expired

    def take_all(self) -> list[ProducerBatch]:
        """Remove and return every queued batch (used when closing without waiting)."""
        with self.lock:
            out = [b for q in self._queues.values() for b in q]
            self._queues.clear()
            for b in out:
                b.full = True
        return out

    def has_queued(self) -> bool:
        with self.lock:
            return any(self._queues.values())

    def release(self, batches: Iterable[ProducerBatch]) -> None:
        """Forget finished batches and free their bytes; wakes senders blocked on space."""
        with self.lock:
            for b in batches:
                if b in self.incomplete:
                    self.incomplete.discard(b)
                    self.buffered_bytes -= b.size
            self.space_freed.notify_all()
        if self.on_space_freed is not None:
            self.on_space_freed()

    def snapshot_incomplete(self) -> list[ProducerBatch]:
        with self.lock:
            return list(self.incomplete)
