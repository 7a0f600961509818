"""The simulated clock and event loop.

A single-threaded loop over a heap of ``(time_ms, seq, callback)``. ``seq`` is a counter that
breaks ties in scheduling order, so two runs from the same seed fire events in the same order.
Time only moves when the loop pops an event: nothing here reads a real clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

# A heap entry: (time_ms, seq, callback, cancelled flag). ``seq`` is unique, so tuple
# comparison (fast, in C) never reaches the callback.
_Entry = tuple[int, int, Callable[[], None], list[bool]]


class TimerHandle:
    """Lets the scheduler of an event cancel it before it fires."""

    __slots__ = ("_flag",)

    def __init__(self, flag: list[bool]) -> None:
        self._flag = flag

    def cancel(self) -> None:
        self._flag[0] = True


class EventLoop:
    """A heap of timed callbacks on a simulated clock (milliseconds).

    Not thread-safe (there is one thread). Callbacks may schedule further events; an event
    scheduled for the current instant runs after every event already queued for that instant.
    """

    def __init__(self, max_queue: int = 1_000_000) -> None:
        self.now_ms = 0
        self.steps = 0
        self._heap: list[_Entry] = []
        self._seq = 0
        # A bound on the queue: a runaway simulation (a message storm) fails loudly.
        self._max_queue = max_queue

    def call_at(self, time_ms: int, callback: Callable[[], None]) -> TimerHandle:
        """Schedule ``callback`` at ``time_ms`` (clamped to now). Returns a cancel handle."""
        assert len(self._heap) < self._max_queue, "event queue overflow"
        flag = [False]
        heapq.heappush(self._heap, (max(time_ms, self.now_ms), self._seq, callback, flag))
        self._seq += 1
        return TimerHandle(flag)

    def call_later(self, delay_ms: int, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(self.now_ms + delay_ms, callback)

    def pending(self) -> int:
        return len(self._heap)

    def run_one(self) -> bool:
        """Pop and run the next live event. Returns False when the queue is empty."""
        while self._heap:
            time_ms, _seq, callback, flag = heapq.heappop(self._heap)
            if flag[0]:
                continue
            self.now_ms = time_ms
            self.steps += 1
            callback()
            return True
        return False

    def run_until(self, time_ms: int, stop: Callable[[], bool] | None = None) -> bool:
        """Run events up to and including ``time_ms``; stop early once ``stop()`` is true.

        Returns True if ``stop`` fired. The clock ends at ``time_ms`` otherwise.
        """
        while self._heap and self._heap[0][0] <= time_ms:
            self.run_one()
            if stop is not None and stop():
                return True
        self.now_ms = max(self.now_ms, time_ms)
        return False
