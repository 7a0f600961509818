"""The leader's view of each follower: match, next, state, and the in-flight window."""

from __future__ import annotations

from collections import deque

from rilke.replication.raft.types import PeerStatus, ProgressState


class Inflights:
    """APPENDs sent but not acknowledged, bounded by count and bytes.

    Invariants: ``count == len(_queue) <= max_msgs``; ``bytes`` is the sum of the queued sizes;
    the queued indexes increase.
    """

    __slots__ = ("_queue", "bytes", "max_bytes", "max_msgs")

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self._queue: deque[tuple[int, int]] = deque()
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.bytes = 0

    @property
    def count(self) -> int:
        return len(self._queue)

    def add(self, index: int, size_bytes: int) -> None:
        """Record an APPEND whose last entry ends at ``index``."""
        assert len(self._queue) < self.max_msgs, "adding to a full in-flight window"
        assert not self._queue or self._queue[-1][0] < index, "in-flight indexes must increase"
        self._queue.append((index, size_bytes))
        self.bytes += size_bytes

    def free_le(self, index: int) -> None:
        """Forget every APPEND acknowledged by a response up to ``index``."""
        queue = self._queue
        while queue and queue[0][0] <= index:
            self.bytes -= queue.popleft()[1]

    def full(self) -> bool:
        return len(self._queue) >= self.max_msgs or self.bytes >= self.max_bytes

    def reset(self) -> None:
        self._queue.clear()
        self.bytes = 0


class Progress:
    """Replication progress of one peer, kept by the leader.

    Invariants: ``0 <= match < next``; ``next - 1`` is an entry boundary of the leader's log;
    in PROBE at most one APPEND is unacknowledged (``probe_sent``); in REPLICATE the window
    bounds what is unacknowledged; in SNAPSHOT nothing is sent until ``pending_snapshot`` is
    acknowledged or abandoned.
    """

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "next",
        "pending_snapshot",
        "probe_sent",
        "recent_active",
        "snapshot_ticks",
        "state",
    )

    def __init__(self, next_index: int, inflights: Inflights, *, is_learner: bool) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.recent_active = False
        self.inflights = inflights
        self.is_learner = is_learner

    def become_probe(self) -> None:
        if self.state is ProgressState.SNAPSHOT:
            self.next = max(self.match + 1, self.pending_snapshot + 1)
        else:
            self.next = self.match + 1
        self._reset(ProgressState.PROBE)

    def become_replicate(self) -> None:
        self.next = self.match + 1
        self._reset(ProgressState.REPLICATE)

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def _reset(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.snapshot_ticks = 0
        self.inflights.reset()
        assert 0 <= self.match < self.next, (self.match, self.next)

    def maybe_update(self, index: int) -> bool:
        """The peer has everything up to ``index``; returns whether match moved forward."""
        updated = False
        if self.match < index:
            self.match = index
            updated = True
            self.probe_sent = False
        self.next = max(self.next, index + 1)
        assert 0 <= self.match < self.next, (self.match, self.next)
        return updated

    def sent_entries(self, last_index: int, size_bytes: int) -> None:
        """An APPEND with entries ending at ``last_index`` (0: none) went out."""
        if self.state is ProgressState.REPLICATE:
            if last_index:
                self.next = last_index + 1
                self.inflights.add(last_index, size_bytes)
        elif self.state is ProgressState.PROBE:
            self.probe_sent = True
        assert 0 <= self.match < self.next, (self.match, self.next)

    def maybe_decr_to(self, rejected: int, new_next: int) -> bool:
        """The peer rejected an APPEND whose prev index was ``rejected``; the leader guesses
        ``new_next`` (a boundary + 1 below ``rejected``). Returns False for a stale rejection."""
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(new_next, self.match + 1)
        self.probe_sent = False
        assert 0 <= self.match < self.next, (self.match, self.next)
        return True

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return self.inflights.full()
        return True

    def status(self) -> PeerStatus:
        return PeerStatus(
            match=self.match,
            next=self.next,
            state=self.state,
            recent_active=self.recent_active,
            is_learner=self.is_learner,
            inflight_msgs=self.inflights.count,
            inflight_bytes=self.inflights.bytes,
        )
