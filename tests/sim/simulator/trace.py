"""The trace recorder: what happened, in order, on the simulated clock.

Events are stored as tuples and formatted only when printed, so recording costs little on the
hot path. The recorder keeps the last ``max_events`` events (a bound on memory for long runs).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator


class Trace:
    """An append-only, bounded list of ``(time_ms, step, node, kind, detail)`` events.

    ``node`` is a node id or -1 for cluster-wide events. ``detail`` is any object with a useful
    ``str()``; it is not formatted until :meth:`lines` is called.
    """

    def __init__(self, max_events: int = 200_000, enabled: bool = True) -> None:
        self.enabled = enabled
        self._events: deque[tuple[int, int, int, str, object]] = deque(maxlen=max_events)
        self.dropped = 0

    def record(self, time_ms: int, step: int, node: int, kind: str, detail: object = "") -> None:
        if not self.enabled:
            return
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append((time_ms, step, node, kind, detail))

    def __len__(self) -> int:
        return len(self._events)

    def kinds(self) -> Iterator[str]:
        for event in self._events:
            yield event[3]

    def lines(self, last: int | None = None) -> list[str]:
        events = list(self._events)
        if last is not None:
            events = events[-last:]
        out = []
        if self.dropped:
            out.append(f"... {self.dropped} earlier events not kept")
        for time_ms, step, node, kind, detail in events:
            who = "cluster" if node < 0 else f"n{node}"
            out.append(f"{time_ms:>8}ms #{step:<7} {who:<7} {kind:<14} {detail}")
        return out

    def format(self, last: int | None = None) -> str:
        return "\n".join(self.lines(last))
