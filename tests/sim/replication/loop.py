"""A deterministic virtual-time asyncio event loop.

The loop's clock is virtual: its selector never blocks; when nothing is ready it jumps the
clock to the next timer (trio's MockClock with ``autojump``). Callbacks run in asyncio's own
FIFO order, so a run is a function of its inputs (and of ``PYTHONHASHSEED``, which orders the
runtime's sets of group names: the runner fixes it).
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class StalledError(RuntimeError):
    """Nothing is ready and no timer is due: the simulated world would wait forever."""


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events:
            return events
        if timeout is None:
            raise StalledError("no callback is ready and no timer is set")
        self._loop.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual seconds from 0 (see the module docstring)."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(_JumpingSelector(self))
        self.errors: list[dict[str, Any]] = []
        """What reached the exception handler (an error nobody awaited): a run with any fails."""
        self.steps = 0
        """Callbacks run (the simulation's unit of work, for steps/s)."""

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if seconds > 0:
            self._now += seconds

    def _run_once(self) -> None:
        self.steps += len(self._ready)  # type: ignore[attr-defined]
        super()._run_once()  # type: ignore[misc]

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        self.errors.append(context)


class InlineExecutor(ThreadPoolExecutor):
    """``run_in_executor`` work runs at once on the loop's thread (deterministic); no thread
    is ever started (asyncio wants a ThreadPoolExecutor as the default)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future
