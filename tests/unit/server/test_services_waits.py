"""The broker handlers' waits: an acknowledgement waited for with a deadline, never cancelled."""

from __future__ import annotations

import asyncio

import pytest

from rilke.server.services import _wait_done


def test_returns_once_the_future_is_done() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        loop.call_soon(future.set_result, 7)
        await _wait_done(future, 10)
        assert future.result() == 7

    asyncio.run(main())


def test_times_out_without_cancelling_the_future() -> None:
    async def main() -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with pytest.raises(TimeoutError):
            await _wait_done(future, 0.01)
        assert not future.done()  # other requests may still wait on the same append
        future.set_result(1)

    asyncio.run(main())


def test_a_cancelled_wait_leaves_the_future_and_no_callback_behind() -> None:
    async def main() -> None:
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiting = asyncio.ensure_future(_wait_done(future, 10))
        await asyncio.sleep(0)  # (lets the wait start)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not future.cancelled()
        called = []
        future.add_done_callback(lambda f: called.append(f.result()))
        future.set_result(3)
        await asyncio.sleep(0)
        assert called == [3]

    asyncio.run(main())
