"""Timeline marks: where one record's time goes, across the client and broker processes.

Off unless the environment variable ``RILKE_TIMELINE`` names a directory (``rilke bench
timeline`` sets it for the processes it starts). When on, the produce and fetch paths call
:func:`mark` at each hop of a record (``send``, ``drained``, ``request``, ``broker_handler``,
``broker_appended``, ``flush_begin``, ``flush_done``, ``broker_acked``, ``response``,
``resolved``, ``fetch_woken``, ``fetch_answered``, ``fetch_response``, ...) with the record's
offset as the key and ``time.perf_counter_ns()`` as the time; at exit each process writes its
marks to ``<dir>/timeline-<pid>.json``. ``perf_counter`` is CLOCK_MONOTONIC on Linux, one clock
for every process of the machine, so marks of the client and the broker line up.

Keys are offsets of one partition: the timeline is for a benchmark of one partition at a low
rate (one record per batch), not for a busy broker. Off, a mark costs a global lookup and a
branch at the call site (``if timeline.ENABLED:``); the call sites are per batch or per
request, never per record. A leaf module, like :mod:`rilke.errors`: every layer may import it.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ENV = "RILKE_TIMELINE"

MAX_MARKS = 500_000
"""Marks kept per process; later ones are dropped (and counted)."""

_directory = os.environ.get(ENV) or None
ENABLED: bool = _directory is not None
"""Whether marks are taken (read at import from ``RILKE_TIMELINE``; :func:`enable` sets it)."""

_marks: list[tuple[str, int, int]] = []
_dropped = 0
_pending: dict[int, list[tuple[str, int]]] = {}  # id(object) -> marks made before its key
_lock = threading.Lock()
_now: Callable[[], int] = time.perf_counter_ns


def enable(directory: str | os.PathLike[str]) -> None:
    """Take marks in this process and write them to ``directory`` at exit (or :func:`dump`)."""
    global ENABLED, _directory
    _directory = str(directory)
    ENABLED = True


def mark(event: str, key: int, ns: int | None = None) -> None:
    """Record ``event`` for ``key`` (an offset) at ``ns`` (default: now). Thread-safe."""
    global _dropped
    when = _now() if ns is None else ns
    with _lock:
        if len(_marks) < MAX_MARKS:
            _marks.append((event, key, when))
        else:
            _dropped += 1


def mark_pending(owner: object, event: str) -> None:
    """Record ``event`` now for ``owner`` (a batch) whose key is not known yet; :func:`settle`
    gives it one. Thread-safe."""
    when = _now()
    with _lock:
        pending = _pending.get(id(owner))
        if pending is None:
            if len(_pending) >= MAX_MARKS:
                return
            pending = _pending[id(owner)] = []
        pending.append((event, when))


def settle(owner: object, key: int) -> None:
    """Give the pending marks of ``owner`` the key ``key`` (or drop them, for a negative key:
    the offset never became known)."""
    with _lock:
        pending = _pending.pop(id(owner), ())
    for event, when in pending:
        if key >= 0:
            mark(event, key, when)


def marks() -> list[tuple[str, int, int]]:
    """A copy of this process's marks: (event, key, ns)."""
    with _lock:
        return list(_marks)


def clear() -> None:
    global _dropped
    with _lock:
        _marks.clear()
        _pending.clear()
        _dropped = 0


def dump() -> Path | None:
    """Write this process's marks to ``<dir>/timeline-<pid>.json`` (replacing an earlier dump);
    returns the path, or None when off or there is nothing to write."""
    if not ENABLED or _directory is None:
        return None
    with _lock:
        data: dict[str, Any] = {"pid": os.getpid(), "dropped": _dropped, "marks": list(_marks)}
    if not data["marks"]:
        return None
    path = Path(_directory) / f"timeline-{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)
    return path


def load(directory: str | os.PathLike[str]) -> list[tuple[str, int, int]]:
    """Every process's marks written to ``directory``, merged."""
    out: list[tuple[str, int, int]] = []
    for path in sorted(Path(directory).glob("timeline-*.json")):
        out.extend((e, k, t) for e, k, t in json.loads(path.read_text())["marks"])
    return out


@atexit.register
def _at_exit() -> None:
    try:
        dump()
    except OSError:
        pass


def now_ns() -> int:
    """The clock of the marks: ``time.perf_counter_ns()``."""
    return _now()
