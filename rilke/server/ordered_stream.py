"""Answer a stream of requests in request order, pipelined, without a hop when nothing waits.

A bidi stream such as ``Broker.ProduceStream`` reads requests and writes one answer per
request, in request order, while later requests may already be read and started (their
writes issued) before an earlier one is acknowledged. :func:`answer_in_order` does that with
one rule for the common low-load case: when nothing is waiting and a request's work is
already done once started (acks=0 and acks=1 resolve at append), its answer is produced on
the stream's own task at once: no reader task, no queue, no extra loop pass between the
request's arrival and its answer. It reads ahead on a second task, up to ``max_in_flight``
requests, while an answer waits (acks=all, a flush) and while the stream is busy: a request
that came within ``BUSY_GAP_S`` of asking for it says more are queued, and then the next read
runs while this answer is written (read and write one after the other halved full-speed
throughput: each is a gRPC operation and a wake of the loop); a read-ahead that has to wait
says the stream went quiet, and reads are direct again.

Runs on the server's event loop; the callables are called there.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

Req = TypeVar("Req")
Started = TypeVar("Started")
Resp = TypeVar("Resp")

BUSY_GAP_S = 0.0005
"""A request read within this long of asking for it marks the stream busy (read ahead).
At 200 requests/s the gap is ~5 ms; at full speed with several requests in flight it is one
loop pass (tens to a few hundred us on a loaded 2-core machine)."""


async def _next(it: AsyncIterator[Req]) -> Req:
    return await anext(it)


async def answer_in_order(
    requests: AsyncIterator[Req],
    start: Callable[[Req], Started],
    ready: Callable[[Started], bool],
    finish: Callable[[Req, Started], Awaitable[Resp]],
    max_in_flight: int,
    *,
    busy_gap_s: float = BUSY_GAP_S,
) -> AsyncIterator[Resp]:
    """Yield ``finish(request, start(request))`` for each request, in request order.

    ``start`` begins a request's work (synchronously, in arrival order); ``ready`` says
    whether its result is there already (``finish`` then answers without waiting);
    ``finish`` waits for the result (it owns the request's deadline) and builds the answer.
    While the oldest answer waits, at most ``max_in_flight`` started requests are held.
    An error of ``requests`` (a malformed message) is raised once it is read; the answers
    before it have been yielded. ``busy_gap_s``: see :data:`BUSY_GAP_S`. At the end of ``requests`` the answers still owed are
    yielded, then it returns. Closing the generator cancels what it waits for.
    """
    assert max_in_flight >= 1
    it = aiter(requests)
    pending: deque[tuple[Req, Started]] = deque()
    read: asyncio.Task[Req] | None = None  # reading ahead (only while an answer waits)
    head: asyncio.Task[Resp] | None = None  # finish() of pending[0], once it must wait
    ended = False
    loop = asyncio.get_running_loop()
    try:
        while True:
            if head is None and pending:
                request, started = pending[0]
                if ready(started):
                    pending.popleft()
                    yield await finish(request, started)
                    continue
                head = asyncio.ensure_future(finish(request, started))
            if head is None:  # nothing owed: read the next request on this task
                if ended:
                    return
                try:
                    if read is not None:
                        busy = read.done()  # it had to wait: quiet again
                        request, read = await read, None
                    else:
                        asked = loop.time()
                        request = await anext(it)
                        busy = loop.time() - asked < busy_gap_s
                except StopAsyncIteration:
                    return
                pending.append((request, start(request)))
                if busy and len(pending) < max_in_flight:
                    read = asyncio.ensure_future(_next(it))
                continue
            if read is None and not ended and len(pending) < max_in_flight:
                read = asyncio.ensure_future(_next(it))
            if read is not None:
                await asyncio.wait((head, read), return_when=asyncio.FIRST_COMPLETED)
                if read.done():
                    done, read = read, None
                    try:
                        request = done.result()
                    except StopAsyncIteration:
                        ended = True
                    else:
                        pending.append((request, start(request)))
                if not head.done():
                    continue
            response = await head
            head = None
            pending.popleft()
            yield response
    finally:
        for task in (read, head):
            if task is not None and not task.done():
                task.cancel()
