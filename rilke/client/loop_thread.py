"""An asyncio event loop on a daemon thread: how the blocking facades run the asyncio core.

All blocking clients of a process share one loop thread (:func:`shared_loop`): grpc's asyncio
poller is bound to the first loop that uses it, so a process that opened and closed clients
with loops of their own printed ``RuntimeError: Event loop is closed`` from grpc's poller
once a later loop came along. The shared loop lives until the interpreter exits; then
:func:`_at_exit` runs the clients' exit hooks (a forgotten producer flushes) and stops the
loop, cancelling and awaiting what is left so no "Task was destroyed but it is pending"
lines are printed.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from rilke.errors import KafkaTimeoutError

T = TypeVar("T")

log = logging.getLogger(__name__)


class LoopThread:
    """Starts a loop on its own thread; :meth:`run` executes a coroutine there and waits."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for t in pending:
                    t.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop and return its result, waiting at most ``timeout_s``.

        Raises what the coroutine raises, or :class:`KafkaTimeoutError` on the deadline (the
        coroutine is then cancelled).
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from its own loop thread (would deadlock)")
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout_s)
        except TimeoutError:
            fut.cancel()
            raise KafkaTimeoutError(f"the operation did not finish within {timeout_s}s") from None

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread.is_alive():
            try:
                self.loop.call_soon_threadsafe(self.loop.stop)
            except RuntimeError:  # the loop closed meanwhile
                return
            self._thread.join(timeout_s)


_shared: LoopThread | None = None
_shared_lock = threading.Lock()
_exit_hooks: dict[int, Callable[[], None]] = {}

EXIT_STOP_TIMEOUT_S = 5.0
"""How long the exit hook waits for the shared loop to cancel its tasks and close."""


def shared_loop() -> LoopThread:
    """The process's one loop thread for blocking clients, started on first use.

    Clients must not stop it (it outlives them); it stops at interpreter exit. Calls made
    from the loop thread itself (a callback calling a blocking client) raise RuntimeError
    instead of deadlocking.
    """
    global _shared
    with _shared_lock:
        if _shared is None or not _shared.alive:
            _shared = LoopThread("rilke-client-loop")
        return _shared


def add_exit_hook(key: int, hook: Callable[[], None]) -> None:
    """Run ``hook()`` at interpreter exit, before the shared loop stops (while it can still
    send); :func:`remove_exit_hook` with the same ``key`` takes it back."""
    with _shared_lock:
        _exit_hooks[key] = hook


def remove_exit_hook(key: int) -> None:
    with _shared_lock:
        _exit_hooks.pop(key, None)


@atexit.register
def _at_exit() -> None:
    with _shared_lock:
        hooks = list(_exit_hooks.values())
        _exit_hooks.clear()
    for hook in hooks:
        try:
            hook()
        except Exception:
            log.warning("a client's exit hook failed", exc_info=True)
    thread = _shared
    if thread is not None:
        thread.stop(EXIT_STOP_TIMEOUT_S)
