"""RaftLog: a node's view of its log, stable storage plus the entries not yet persisted.

Entries span several offsets and are named by their last offset (see ``types``). Lookups of
offsets at or above ``_unstable_offset`` are answered from the unstable part; below it from
storage (or the pending snapshot, which replaces the whole log once persisted).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from rilke.replication.raft.types import Entry, Snapshot, Storage


def _last_offset(entry: Entry) -> int:
    return entry.index


class RaftLog:
    """Invariants: ``applied <= applying <= committed <= last_index()``; the unstable entries
    are contiguous and start at ``_unstable_offset``; committed entries are never truncated.
    """

    def __init__(self, storage: Storage, committed: int, applied: int) -> None:
        self.storage = storage
        self._unstable: list[Entry] = []
        self._unstable_offset = storage.last_index() + 1
        """First offset of the unstable entries (== persisted last offset + 1 when none)."""
        self.pending_snapshot: Snapshot | None = None
        """A snapshot received but not yet persisted; once it is, it is the log start."""
        first = storage.first_index()
        assert first - 1 <= applied <= committed <= storage.last_index(), (
            first,
            applied,
            committed,
        )
        self.committed = committed
        self.applying = applied
        """Committed entries up to here were handed out in a Ready (not yet acknowledged)."""
        self.applied = applied

    # --- shape ---------------------------------------------------------------------------------

    def first_index(self) -> int:
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        if self._unstable:
            return self._unstable[-1].index
        if self.pending_snapshot is not None:
            return self.pending_snapshot.index
        return self._unstable_offset - 1

    def last_term(self) -> int:
        term = self.term(self.last_index())
        assert term is not None
        return term

    def stable_last_index(self) -> int:
        """The last offset known durable (what a leader may count as its own acknowledgement)."""
        if self.pending_snapshot is not None:
            return 0
        return self._unstable_offset - 1

    def snapshot(self) -> Snapshot:
        if self.pending_snapshot is not None:
            return self.pending_snapshot
        return self.storage.snapshot()

    # --- lookups -------------------------------------------------------------------------------

    def term(self, index: int) -> int | None:
        """The term of the entry containing offset ``index`` (the log start's term at the log
        start); None when ``index`` is compacted away or beyond the last offset."""
        if index >= self._unstable_offset:
            unstable = self._unstable
            if not unstable:
                return None
            last = unstable[-1]
            if index > last.index:
                return None
            if index >= last.first_index:
                return last.term
            return unstable[bisect.bisect_left(unstable, index, key=_last_offset)].term
        snap = self.pending_snapshot
        if snap is not None:
            return snap.term if index == snap.index else None
        return self.storage.term(index)

    def entry_at(self, index: int) -> Entry:
        """The entry containing offset ``index`` (which must lie within the held entries)."""
        if index >= self._unstable_offset:
            pos = bisect.bisect_left(self._unstable, index, key=_last_offset)
            return self._unstable[pos]
        return self.storage.entries(index, index, 0)[0]

    def is_boundary(self, index: int) -> bool:
        """Whether ``index`` is an entry's last offset (or the log start)."""
        last = self.last_index()
        if index == last:
            return True
        start = self.first_index() - 1
        if index == start:
            return True
        if index < start or index > last:
            return False
        return self.entry_at(index).index == index

    def match_term(self, index: int, term: int) -> bool:
        """Whether the log has an entry ending at ``index`` with ``term``."""
        return self.term(index) == term and self.is_boundary(index)

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Whether a log ending at (last_index, last_term) is at least as up to date as ours."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Entries overlapping offsets [lo, hi], at most ``max_bytes`` of data (at least one).
        Requires first_index() <= lo <= hi <= last_index()."""
        out: list[Entry] = []
        unstable = self._unstable
        if unstable and lo == unstable[-1].first_index and hi >= lo:
            return [unstable[-1]]  # the common case on a leader: just the newest entry
        assert self.first_index() <= lo <= hi <= self.last_index(), (lo, hi)
        if lo < self._unstable_offset:
            out = self.storage.entries(lo, min(hi, self._unstable_offset - 1), max_bytes)
            if hi < self._unstable_offset or out[-1].index < self._unstable_offset - 1:
                return out
            lo = self._unstable_offset
        total = 0
        for entry in out:
            total += len(entry.data)
        pos = bisect.bisect_left(unstable, lo, key=_last_offset)
        for i in range(pos, len(unstable)):
            entry = unstable[i]
            if entry.first_index > hi:
                break
            total += len(entry.data)
            if out and total > max_bytes:
                break
            out.append(entry)
        return out

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest boundary <= ``index`` whose term is <= ``term``, with its term (fast
        back-off). Returns (index, 0) when ``index`` lies before the log start."""
        start = self.first_index() - 1
        index = min(index, self.last_index())
        if index < start:
            return index, 0
        while index > start:
            entry = self.entry_at(index)
            if entry.index == index and entry.term <= term:
                return index, entry.term
            index = entry.first_index - 1
        start_term = self.term(start)
        assert start_term is not None
        return start, start_term

    def find_conflict(self, entries: Sequence[Entry]) -> int:
        """Position in ``entries`` of the first entry the log lacks or contradicts, or
        len(entries) when the log holds them all."""
        for pos, entry in enumerate(entries):
            if not self.match_term(entry.index, entry.term):
                return pos
        return len(entries)

    # --- changes -------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        """Append entries; the first may overwrite an uncommitted suffix from its first offset."""
        if not entries:
            return
        first = entries[0].first_index
        after_last = self.last_index() + 1
        assert first > self.committed, f"overwriting committed offset {first}"
        assert first <= after_last, f"gap before offset {first}"
        if first == after_last:
            self._unstable.extend(entries)
        elif first >= self._unstable_offset and self._unstable:
            pos = bisect.bisect_left(self._unstable, first, key=_last_offset)
            assert self._unstable[pos].first_index == first, "truncation inside an entry"
            del self._unstable[pos:]
            self._unstable.extend(entries)
        else:
            # The suffix being replaced is (partly) persisted: the next Ready says truncate.
            self._unstable = list(entries)
            self._unstable_offset = first

    def maybe_append(
        self, prev_index: int, prev_term: int, commit: int, entries: Sequence[Entry]
    ) -> int | None:
        """The follower's half of AppendEntries: if the log matches at (prev_index, prev_term),
        append what is new, advance the commit index, and return the last offset now known to
        match the leader; else None and nothing changes."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = entries[-1].index if entries else prev_index
        pos = self.find_conflict(entries)
        if pos < len(entries):
            self.append(entries[pos:])
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, commit: int) -> None:
        if commit > self.committed:
            assert commit <= self.last_index(), f"commit {commit} beyond {self.last_index()}"
            self.committed = commit

    def maybe_commit(self, index: int, term: int) -> bool:
        """Commit up to ``index`` if it is newer and of ``term`` (Raft 5.4.2: only entries of
        the leader's own term are committed by counting replicas)."""
        if index > self.committed and self.term(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log by ``snapshot`` (not yet persisted)."""
        assert snapshot.index > self.committed
        self.pending_snapshot = snapshot
        self._unstable = []
        self._unstable_offset = snapshot.index + 1
        self.committed = snapshot.index
        self.applying = max(self.applying, snapshot.index)

    # --- the Ready cycle -----------------------------------------------------------------------

    def unstable_entries(self) -> list[Entry]:
        return list(self._unstable)

    def has_unstable(self) -> bool:
        return bool(self._unstable) or self.pending_snapshot is not None

    def truncation_point(self) -> int | None:
        """Where stable storage must cut before the unstable entries are appended, if anywhere."""
        if self._unstable and self.pending_snapshot is None:
            first = self._unstable[0].first_index
            if first <= self.storage.last_index():
                return first
        return None

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to ``index`` (of ``term``) are durable; forget them unless they were
        replaced meanwhile."""
        if index < self._unstable_offset or self.term(index) != term:
            return
        pos = bisect.bisect_left(self._unstable, index, key=_last_offset)
        del self._unstable[: pos + 1]
        self._unstable_offset = index + 1

    def stable_snapshot_to(self, index: int) -> None:
        if self.pending_snapshot is not None and self.pending_snapshot.index == index:
            self.pending_snapshot = None

    def has_next_committed(self) -> bool:
        return self.applying < self.committed

    def next_committed_entries(self, max_bytes: int) -> list[Entry]:
        """Committed entries not yet handed out (marks them as applying)."""
        if self.applying >= self.committed:
            return []
        lo = max(self.applying + 1, self.first_index())
        entries = self.slice(lo, self.committed, max_bytes)
        self.applying = entries[-1].index
        return entries

    def applied_to(self, index: int) -> None:
        assert index <= self.applying, (index, self.applying)
        self.applied = max(self.applied, index)
