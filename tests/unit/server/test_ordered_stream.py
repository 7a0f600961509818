"""answer_in_order: request order, read-ahead while an answer waits, no hop when nothing does."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from rilke.server.ordered_stream import answer_in_order

DEADLINE_S = 5.0

_END = object()


class Source:
    """A request stream fed by the test (``put``; ``end`` closes it, ``fail`` breaks it)."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.read: list[int] = []

    def put(self, *items: int) -> None:
        for item in items:
            self.queue.put_nowait(item)

    def end(self) -> None:
        self.queue.put_nowait(_END)

    def fail(self) -> None:
        self.queue.put_nowait(ValueError("malformed"))

    async def __aiter__(self) -> AsyncIterator[int]:
        while True:
            item = await self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, int)
            self.read.append(item)
            yield item


class Work:
    """start() makes a future per request: done at once for ``instant`` ones."""

    def __init__(self, instant: bool) -> None:
        self.instant = instant
        self.futures: dict[int, asyncio.Future[str]] = {}
        self.started: list[int] = []

    def start(self, request: int) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        if self.instant:
            future.set_result(f"r{request}")
        self.futures[request] = future
        self.started.append(request)
        return future

    @staticmethod
    def ready(future: asyncio.Future[str]) -> bool:
        return future.done()

    @staticmethod
    async def finish(request: int, future: asyncio.Future[str]) -> str:
        async with asyncio.timeout(DEADLINE_S):
            return await future


async def until(condition: object) -> None:
    """Let the loop run until ``condition()`` holds (failing after DEADLINE_S)."""
    async with asyncio.timeout(DEADLINE_S):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0)


def test_a_ready_answer_comes_in_the_same_loop_pass_as_its_request() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=True)
        # A quiet stream (no read counts as busy): each request is read on the stream's task.
        answers = answer_in_order(source, work.start, work.ready, work.finish, 4, busy_gap_s=0)
        loop = asyncio.get_running_loop()
        for i in range(5):
            passes: list[int] = []
            source.put(i)
            # Scheduled once the request is readable: a hop (a reader task, a queue) would
            # let this run before the answer arrives.
            loop.call_soon(passes.append, i)
            assert await anext(answers) == f"r{i}"
            assert passes == []
            await asyncio.sleep(0)
        # Nothing was read ahead: the stream's own task read each request.
        assert source.read == [0, 1, 2, 3, 4]
        source.end()
        with pytest.raises(StopAsyncIteration):
            await anext(answers)

    asyncio.run(main())


def test_a_busy_stream_reads_the_next_request_while_an_answer_goes_out() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=True)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 4, busy_gap_s=60)
        source.put(0, 1, 2)
        assert await anext(answers) == "r0"
        await until(lambda: source.read == [0, 1])  # read ahead before answer 1 is asked for
        assert await anext(answers) == "r1"
        await until(lambda: source.read == [0, 1, 2])
        assert await anext(answers) == "r2"
        # The read-ahead that has to wait (nothing queued) makes the stream quiet again.
        third = asyncio.ensure_future(anext(answers))
        for _ in range(5):
            await asyncio.sleep(0)
        source.put(3)
        assert await third == "r3"
        source.end()
        with pytest.raises(StopAsyncIteration):
            await anext(answers)

    asyncio.run(main())


def test_answers_keep_request_order_and_later_requests_start_while_one_waits() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=False)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 8)
        source.put(0, 1, 2)
        first = asyncio.ensure_future(anext(answers))
        await until(lambda: work.started == [0, 1, 2])
        for i in (2, 1):  # later ones finish first
            work.futures[i].set_result(f"r{i}")
        await asyncio.sleep(0)
        assert not first.done()
        work.futures[0].set_result("r0")
        assert await first == "r0"
        assert await anext(answers) == "r1"
        assert await anext(answers) == "r2"
        await answers.aclose()

    asyncio.run(main())


def test_read_ahead_is_bounded_by_max_in_flight() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=False)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 2)
        source.put(0, 1, 2, 3)
        first = asyncio.ensure_future(anext(answers))
        await until(lambda: len(work.started) == 2)
        for _ in range(20):
            await asyncio.sleep(0)
        assert work.started == [0, 1]  # 2 and 3 wait unread
        work.futures[0].set_result("r0")
        assert await first == "r0"
        second = asyncio.ensure_future(anext(answers))
        await until(lambda: len(work.started) == 3)
        for _ in range(20):
            await asyncio.sleep(0)
        assert work.started == [0, 1, 2]  # again 2 held: 3 waits unread
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        await answers.aclose()

    asyncio.run(main())


def test_the_end_of_the_stream_answers_what_is_still_owed() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=False)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 8)
        source.put(0, 1)
        source.end()
        collected = asyncio.ensure_future(_collect(answers))
        await until(lambda: work.started == [0, 1])
        work.futures[1].set_result("r1")
        work.futures[0].set_result("r0")
        assert await collected == ["r0", "r1"]

    asyncio.run(main())


def test_a_broken_request_stream_raises_after_the_answers_before_it() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=True)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 8)
        source.put(0, 1)
        source.fail()
        assert await anext(answers) == "r0"
        assert await anext(answers) == "r1"
        with pytest.raises(ValueError, match="malformed"):
            await anext(answers)

    asyncio.run(main())


def test_a_broken_request_stream_while_an_answer_waits_raises_and_cancels_it() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=False)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 8)
        source.put(0)
        first = asyncio.ensure_future(anext(answers))
        await until(lambda: work.started == [0])
        source.fail()
        with pytest.raises(ValueError, match="malformed"):
            await first
        assert work.futures[0].cancelled()  # finish() of the waiting answer was cancelled

    asyncio.run(main())


def test_closing_the_answers_cancels_what_they_wait_for() -> None:
    async def main() -> None:
        source, work = Source(), Work(instant=False)
        answers = answer_in_order(source, work.start, work.ready, work.finish, 8)
        source.put(0)
        first = asyncio.ensure_future(anext(answers))
        await until(lambda: work.started == [0])
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        await answers.aclose()
        assert work.futures[0].cancelled()

    asyncio.run(main())


async def _collect(answers: AsyncIterator[str]) -> list[str]:
    return [a async for a in answers]
