"""Group commit of one partition log: appends that arrive together share one fsync.

:class:`GroupFlush` keeps the acknowledgements that wait for durability and runs the log's
fsyncs on a worker thread (``PartitionLog.begin_flush``/``FlushJob.run``/``end_flush``), at
most one in flight per partition, so the event loop keeps serving produce and fetch
meanwhile. :class:`FlushSlots` bounds the flush jobs of a whole node. Both kinds of partition
(local, and replicated: a follower's writes are made durable the same way) use them.

Threading: on the event loop thread only, except ``FlushJob.run`` (a worker thread).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Generic, Protocol, TypeVar

from rilke import timeline
from rilke.errors import LogClosedError
from rilke.storage.files import storage_error
from rilke.storage.log import FlushJob, PartitionLog

log = logging.getLogger(__name__)

# Flush jobs of a node in flight at once (queued for a worker thread or running). Each holds
# duplicated descriptors of the files it syncs, outside the storage's descriptor cache: this
# bounds them, whatever the number of partitions flushing. More do not help: the executor
# runs a handful at a time, and partitions that wait share their next fsync with the appends
# that arrive meanwhile.
MAX_FLUSHES_IN_FLIGHT = 64

T = TypeVar("T")


class _Queued(Protocol):
    def _start_queued_flush(self) -> None: ...


class FlushSlots:
    """At most ``limit`` flush jobs in flight across the partitions that share it; the
    others wait their turn in arrival order. On the event loop only."""

    def __init__(self, limit: int = MAX_FLUSHES_IN_FLIGHT) -> None:
        assert limit >= 1
        self.limit = limit
        self.in_flight = 0
        self._waiting: deque[_Queued] = deque()
        self._pumping = False

    def try_take(self) -> bool:
        if self.in_flight < self.limit and not self._waiting:
            self.in_flight += 1
            return True
        return False

    def wait(self, flusher: _Queued) -> None:
        self._waiting.append(flusher)

    def release(self) -> None:
        """A job finished (or was never taken): start the next waiting partitions' flushes."""
        self.in_flight -= 1
        if self._pumping:  # a flush started below released its slot again at once
            return
        self._pumping = True
        try:
            while self._waiting and self.in_flight < self.limit:
                self.in_flight += 1
                self._waiting.popleft()._start_queued_flush()
        finally:
            self._pumping = False


class GroupFlush(Generic[T]):
    """The fsyncs of one partition log and the acknowledgements waiting for them.

    ``wait_for(offset, future, result)`` resolves ``future`` with ``result`` once the log is
    flushed to ``offset`` (or fails it with the flush's error, as a KafkaStorageError for a
    disk error). ``schedule()`` asks for a flush: when none is in flight (the partition was
    idle) it starts at once, so a lone append waits for one fsync and nothing more; every
    append that arrives while one is in flight shares the next, started as soon as that one
    finishes (group commit without a timer). ``flush_messages``
    (the topic's ``flush.messages``) makes ``count_appended`` schedule one after that many
    messages. On the event loop thread only.
    """

    def __init__(self, name: str, log_: PartitionLog, flush_slots: FlushSlots | None) -> None:
        self._name = name  # "<topic>-<partition>", for log lines
        self._log = log_
        self._slots = flush_slots  # shared by the node's partitions (None: no bound)
        self.flush_messages: int | None = None
        self._waiters: deque[tuple[int, asyncio.Future[T], T]] = deque()
        self._job: FlushJob | None = None  # at most one in flight
        self._slot_taken = False
        # Resolved (with its error or None) once that job is finished and counted.
        self._finished: asyncio.Future[BaseException | None] | None = None
        self._again = False  # appends arrived while it ran
        self._unflushed_messages = 0
        self._closed = False

    @property
    def job_in_flight(self) -> bool:
        return self._job is not None

    def count_appended(self, messages: int) -> None:
        """``messages`` were appended: schedule a flush when ``flush_messages`` are due."""
        self._unflushed_messages += messages
        if self.flush_messages is not None and self._unflushed_messages >= self.flush_messages:
            self.schedule()

    def wait_for(self, offset: int, future: asyncio.Future[T], result: T) -> None:
        """Resolve ``future`` with ``result`` once everything below ``offset`` is flushed."""
        self._waiters.append((offset, future, result))

    def schedule(self) -> None:
        """Flush what is appended: now when no flush is in flight, else right after it.

        A fixed window (1 ms, when the fsync ran on the loop thread) made every lone
        acks=all append wait for it; with the fsyncs on a worker thread the one in flight is
        the window: appends that arrive while it runs share the next one."""
        if self._closed:
            return
        if self._finished is not None:
            # One fsync at a time (in flight, or waiting for a slot): appends that arrive
            # while it runs share the next one, started as soon as it finishes.
            self._again = True
            return
        self._start(None)

    def _start(self, up_to_offset: int | None) -> asyncio.Future[BaseException | None] | None:
        """Take a flush job from the log and run its fsyncs on a worker thread, so the loop
        keeps serving requests meanwhile. Returns a future resolved (with the error, or None)
        once the job is finished and counted, or None when there is nothing to flush (or
        taking the job failed: the waiters are failed then). Only when none is in flight."""
        assert self._job is None
        loop = asyncio.get_running_loop()
        slots = self._slots
        if slots is not None and not self._slot_taken:
            if not slots.try_take():
                # Wait for a slot; the flush then covers everything appended until it starts.
                if self._finished is None:
                    self._finished = loop.create_future()
                    slots.wait(self)
                return self._finished
            self._slot_taken = True
        try:
            job = self._log.begin_flush(up_to_offset)
        except Exception as e:
            self._give_slot_back()
            self._failed(e)
            self._resolve_waiting(e)
            return None
        self._unflushed_messages = 0
        if job is None:
            self._give_slot_back()
            self._release_flushed()
            self._resolve_waiting(None)
            return None
        self._job = job
        if timeline.ENABLED:
            timeline.mark("flush_begin", self._log.log_end_offset - 1)
        finished = self._finished or loop.create_future()  # a queued flush keeps its own
        self._finished = finished
        loop.run_in_executor(None, job.run).add_done_callback(self._finish)
        return finished

    def _finish(self, done: asyncio.Future[None]) -> None:
        """On the loop, when a job's fsyncs have finished (or failed)."""
        job, finished = self._job, self._finished
        assert job is not None and finished is not None
        # Cleared before `finished` resolves: a waiter that wakes finds no stale job.
        self._job = None
        self._finished = None
        self._give_slot_back()
        error = LogClosedError("the flush was cancelled") if done.cancelled() else done.exception()
        if error is not None:
            self._log.abort_flush(job)
            if not self._closed:
                self._failed(error)
            finished.set_result(error)
            return
        if self._closed:
            job.close()
            finished.set_result(None)
            return
        self._log.end_flush(job)
        if timeline.ENABLED:
            timeline.mark("flush_done", self._log.flushed_offset - 1)
        self._release_flushed()
        finished.set_result(None)
        if self._again or self._waiters:
            self._again = False
            self._start(None)

    def _start_queued_flush(self) -> None:
        """FlushSlots gave this partition a slot (taken for it already)."""
        self._slot_taken = True
        if self._closed:
            self._give_slot_back()
            self._resolve_waiting(None)
            return
        self._start(None)

    def _give_slot_back(self) -> None:
        if self._slot_taken:
            self._slot_taken = False
            assert self._slots is not None
            self._slots.release()

    def _resolve_waiting(self, error: BaseException | None) -> None:
        """Resolve the future of a flush that waited for a slot and then had nothing to do
        (or failed to start)."""
        finished, self._finished = self._finished, None
        if finished is not None and not finished.done():
            finished.set_result(error)

    def _failed(self, error: BaseException) -> None:
        log.error("flush of %s failed: %s", self._name, error)
        if isinstance(error, OSError):
            error = storage_error(error, self._log.directory, "flush")
        while self._waiters:
            _, future, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(error)

    def _release_flushed(self) -> None:
        flushed = self._log.flushed_offset
        while self._waiters and self._waiters[0][0] <= flushed:
            _, future, result = self._waiters.popleft()
            if not future.done():
                future.set_result(result)

    async def flush_async(self, up_to_offset: int | None = None) -> None:
        """Flush up to ``up_to_offset`` (default: everything) with the fsyncs on a worker
        thread, after the one in flight if any; for maintenance. On return the flush is
        counted (``flushed_offset`` raised). Raises what the flush raised (OSError),
        LogClosedError when closed meanwhile."""
        while self._finished is not None:
            # (Never done while set: _finish clears it first, so this always waits.)
            await asyncio.shield(self._finished)  # its error went to its own waiters
        if self._closed:
            raise LogClosedError(f"partition {self._name} is closed")
        finished = self._start(up_to_offset)
        if finished is not None:
            error = await asyncio.shield(finished)
            if error is not None:
                raise error

    def flush(self) -> None:
        """Flush now, on this thread, and release every waiter (shutdown). A job in flight
        meanwhile is harmless: the log syncs the same files again."""
        if not self._closed:
            self._log.flush()
            self._unflushed_messages = 0
            self._release_flushed()

    def close(self) -> None:
        """Stop: fail every acknowledgement still waiting (call :meth:`flush` first)."""
        self._closed = True
        if self._job is None:
            self._resolve_waiting(None)  # waiting for a slot: flushed just now
        while self._waiters:
            _, future, _ = self._waiters.popleft()
            if not future.done():
                future.set_exception(LogClosedError("the partition closed"))
