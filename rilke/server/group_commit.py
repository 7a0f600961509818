"""Sharing and pacing work that many requests ask for at once (topic creation uses both).

:class:`GroupCommit`: disk work on a worker thread, shared by every request that asks
meanwhile. Making partition folders durable or writing the topic registry costs a few journal
commits whatever its size, so requests that arrive while one run is on its way share the
next one, as appends share an fsync. At most one run is in flight; items are taken in arrival
order.

:class:`StepQueue`: work that must run on the event loop (opening partition logs), cut into
steps, one step per turn of the loop, so that a thousand creations resuming at once do not
hold the loop for all of their steps in one go.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
A = TypeVar("A")
R = TypeVar("R")


class GroupCommit(Generic[T, A]):
    """``begin(items)`` on the event loop takes what a run needs (e.g. a document to write),
    then ``work(taken)`` runs on a worker thread and returns, per item, None or the exception
    that item's waiter gets. Every waiter of a run gets that exception if ``begin`` or
    ``work`` raises. Used from the event loop only."""

    def __init__(
        self,
        begin: Callable[[list[T]], A],
        work: Callable[[A], Sequence[BaseException | None]],
    ) -> None:
        self._begin = begin
        self._work = work
        self._queue: list[tuple[T, asyncio.Future[None]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Have ``item`` done by the next run; returns when it was, or raises its error. If
        the caller is cancelled the item is still done (the run is shared)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._drain())
        await asyncio.shield(future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[tuple[T, asyncio.Future[None]]] = []
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                results: Sequence[BaseException | None]
                try:
                    taken = self._begin([item for item, _ in batch])
                    results = await loop.run_in_executor(None, self._work, taken)
                    assert len(results) == len(batch)
                except Exception as e:
                    results = [e] * len(batch)
                for (_, future), error in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if error is None:
                        future.set_result(None)
                    else:
                        future.set_exception(error)
        finally:
            self._runner = None
            for _, future in [*batch, *self._queue]:  # left only if this task was cancelled
                if not future.done():
                    future.cancel()


class StepQueue:
    """Work on the event loop in bounded steps, one step per turn of the loop, in arrival
    order, whoever submits them: requests that arrive meanwhile are served between two steps
    (however many callers resume at once). Used from the event loop only."""

    def __init__(self) -> None:
        self._steps: deque[tuple[Callable[[], object], asyncio.Future[object]]] = deque()
        self._runner: asyncio.Task[None] | None = None

    async def run(self, step: Callable[[], R]) -> R:
        """Run ``step()`` on a later turn of the loop; its result, or raises its error. A
        cancelled caller's step does not run if it has not started."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._steps.append((step, future))
        if self._runner is None:
            self._runner = asyncio.ensure_future(self._drain())
        return await future  # type: ignore[return-value]

    async def _drain(self) -> None:
        try:
            while self._steps:
                await asyncio.sleep(0)  # a turn for what arrived since the last step
                step, future = self._steps.popleft()
                if future.done():
                    continue
                try:
                    future.set_result(step())
                except Exception as e:
                    future.set_exception(e)
        finally:
            self._runner = None
            while self._steps:
                _, future = self._steps.popleft()
                future.cancel()
