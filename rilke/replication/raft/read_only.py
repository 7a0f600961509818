"""Read index (thesis 6.4): pending linearizable reads waiting for a heartbeat quorum."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class ReadIndexStatus:
    index: int
    """The leader's commit index when the request arrived: the read point."""
    requester: int
    """Who asked (the leader itself or a follower that forwarded the request)."""
    context: bytes
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """Requests in arrival order; a quorum of acks for one confirms it and all before it.

    Invariant: ``_queue`` holds exactly the keys of ``_pending``, in arrival order.
    """

    def __init__(self) -> None:
        self._pending: dict[bytes, ReadIndexStatus] = {}
        self._queue: list[bytes] = []

    def __len__(self) -> int:
        return len(self._queue)

    def add_request(self, index: int, requester: int, context: bytes) -> bool:
        """Queue a request; False when ``context`` is already pending (a duplicate)."""
        if context in self._pending:
            return False
        self._pending[context] = ReadIndexStatus(index, requester, context)
        self._queue.append(context)
        return True

    def recv_ack(self, node_id: int, context: bytes) -> set[int] | None:
        """Record a heartbeat response echoing ``context``; the acks so far (None if unknown)."""
        status = self._pending.get(context)
        if status is None:
            return None
        status.acks.add(node_id)
        return status.acks

    def advance(self, context: bytes) -> list[ReadIndexStatus]:
        """Release the request ``context`` and every earlier one (they are confirmed too)."""
        if context not in self._pending:
            return []
        pos = self._queue.index(context)
        released = [self._pending.pop(c) for c in self._queue[: pos + 1]]
        del self._queue[: pos + 1]
        return released

    def last_context(self) -> bytes | None:
        return self._queue[-1] if self._queue else None

    def reset(self) -> None:
        self._pending.clear()
        self._queue.clear()
