"""Callbacks a partition calls when something moves (high watermark, leadership).

:class:`Subscribers` keeps them by key: ``add`` returns the function that removes the one it
added, ``notify`` calls every one with the same arguments (a callback may unsubscribe while
it runs). On the event loop thread only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVarTuple

Args = TypeVarTuple("Args")


class Subscribers(Generic[*Args]):
    """Callbacks taking ``*Args``, each removable by the function ``add`` returned."""

    def __init__(self) -> None:
        self._callbacks: dict[int, Callable[[*Args], None]] = {}
        self._next_key = 0

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def add(self, callback: Callable[[*Args], None]) -> Callable[[], None]:
        key = self._next_key
        self._next_key += 1
        self._callbacks[key] = callback

        def unsubscribe() -> None:
            self._callbacks.pop(key, None)

        return unsubscribe

    def notify(self, *args: *Args) -> None:
        if self._callbacks:
            for callback in list(self._callbacks.values()):
                callback(*args)
