"""Test helper: wait on a condition with a deadline (never a sleep as synchronisation)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], timeout_s: float = 10.0, what: str = "the condition"
) -> None:
    """Return as soon as ``condition()`` is true; raise AssertionError naming ``what`` if it is
    still false after ``timeout_s`` seconds. Polls every 20 ms."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)
