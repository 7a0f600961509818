"""MemoryStorage: the :class:`~rilke.replication.raft.types.Storage` interface over a list.

It models *durable* storage: in the simulation a crash keeps exactly what was written here and
loses the rest of the node. The caller writes to it from each Ready (``persist_ready`` does
the four steps in the right order); the core only reads it. Not thread-safe.
"""

from __future__ import annotations

import bisect

from rilke.replication.raft.types import ConfState, Entry, EntryKind, HardState, Ready, Snapshot


def _last_offset(entry: Entry) -> int:
    return entry.index


class MemoryStorage:
    """A durable log in memory: a snapshot (the log start), entries after it, a hard state.

    Invariants: ``_entries`` are contiguous (each ``first_index`` is the previous ``index + 1``)
    and the first starts at ``_snapshot.index + 1``; ``_hard_state.commit <= last_index()``
    whenever the node is not in the middle of applying a Ready.
    """

    def __init__(self, conf: ConfState | None = None) -> None:
        self._snapshot = Snapshot(0, 0, conf or ConfState(frozenset()))
        self._entries: list[Entry] = []
        self._hard_state = HardState()

    # --- the Storage interface (read by the core) ---------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.conf

    def first_index(self) -> int:
        return self._snapshot.index + 1

    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self._snapshot.index

    def term(self, index: int) -> int | None:
        if index == self._snapshot.index:
            return self._snapshot.term
        pos = self._position(index)
        return None if pos is None else self._entries[pos].term

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        assert self.first_index() <= lo <= hi <= self.last_index(), (lo, hi)
        start = self._position(lo)
        assert start is not None
        entries = self._entries
        if start == len(entries) - 1:
            return [entries[start]]  # the tail, the common case
        out: list[Entry] = []
        total = 0
        for i in range(start, len(entries)):
            entry = entries[i]
            if entry.first_index > hi:
                break
            total += len(entry.data)
            if out and total > max_bytes:
                break
            out.append(entry)
        return out

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def config_entries(self) -> list[Entry]:
        return [entry for entry in self._entries if entry.kind is EntryKind.CONFIG]

    # --- writes (by the caller, from Ready) ---------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def set_hard_state(self, hard_state: HardState) -> None:
        self._hard_state = hard_state

    def apply_snapshot(self, snapshot: Snapshot) -> None:
        """Reset the log to start after ``snapshot`` (every entry is dropped)."""
        self._snapshot = snapshot
        self._entries = []

    def truncate_suffix(self, from_index: int) -> None:
        """Drop every entry whose last offset is >= ``from_index`` (an entry's first offset)."""
        pos = self._position(from_index)
        if pos is None:
            assert from_index > self.last_index(), "truncation below the log start"
            return
        assert self._entries[pos].first_index == from_index, "truncation inside an entry"
        del self._entries[pos:]

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries that continue the log exactly (truncate first when overwriting)."""
        for entry in entries:
            assert entry.first_index == self.last_index() + 1, (
                f"entry {entry.first_index}..{entry.index} does not continue {self.last_index()}"
            )
            self._entries.append(entry)

    def compact(self, index: int, conf: ConfState, data: bytes = b"") -> None:
        """Drop entries up to the boundary ``index`` (retention), keeping it as the log start.

        ``conf`` is the configuration in effect at ``index`` and ``data`` the snapshot payload.
        Requires ``index`` to be an entry boundary within the log and <= the commit index.
        """
        assert index <= self._hard_state.commit, "compaction beyond the commit index"
        if index <= self._snapshot.index:
            return
        pos = self._position(index)
        assert pos is not None and self._entries[pos].index == index, "not a boundary"
        self._snapshot = Snapshot(index, self._entries[pos].term, conf, data)
        del self._entries[: pos + 1]

    def persist_ready(self, ready: Ready) -> None:
        """Step 1 of the I/O order: snapshot, truncation, entries, then hard state."""
        if ready.snapshot is not None:
            self.apply_snapshot(ready.snapshot)
        if ready.truncate_from is not None:
            self.truncate_suffix(ready.truncate_from)
        if ready.entries:
            self.append(list(ready.entries))
        if ready.hard_state is not None:
            self.set_hard_state(ready.hard_state)

    def all_entries(self) -> list[Entry]:
        """A copy of the entries held (for checks and tests)."""
        return list(self._entries)

    def _position(self, offset: int) -> int | None:
        """The list position of the entry containing ``offset``, or None."""
        entries = self._entries
        if not entries or offset <= self._snapshot.index or offset > entries[-1].index:
            return None
        if offset >= entries[-1].first_index:
            return len(entries) - 1  # the common case: the tail
        return bisect.bisect_left(entries, offset, key=_last_offset)
