"""The Raft storage of a replicated partition: PartitionRaftStorage that tells its partition.

:class:`ReplicatedStorage` is the group's :class:`PartitionRaftStorage` (the Raft log IS the
PartitionLog) with two additions a replicated partition needs:

- after each :meth:`persist` (a Ready's snapshot, truncation and entries written, before the
  round's fsync) it calls its observer, so the partition follows what its log holds: producer
  state fed from every written batch, whoever wrote it, rebuilt after a truncation or a
  snapshot; acks=1 acknowledgements of entries now written;
- with the topic's ``write.caching``, the node's group commit leaves this log's data out;
- the log start follows the log: retention (run by the partition's maintenance on every
  replica) deletes whole leading segments, and the entry ending at the new log start becomes
  the Raft snapshot, so a follower that needs what is gone is sent "start your log at N".

Not thread-safe: the runtime's event loop drives it (as PartitionRaftStorage).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from rilke.replication import offsets
from rilke.replication.raft.types import Entry, Ready, Snapshot
from rilke.replication.raft_storage import PartitionRaftStorage, StorageFlush

Observer = Callable[[Ready], None]
"""Called after a Ready was written to the log (before its fsync), with that Ready."""


def _ignore(_ready: Ready) -> None:
    pass


class ReplicatedStorage(PartitionRaftStorage):
    """PartitionRaftStorage with an ``observer`` of what is written and a log start that
    follows retention (see the module docstring). Build it with :meth:`open`."""

    observer: Observer = staticmethod(_ignore)
    write_caching = False
    """The topic's ``write.caching``: the round's group commit leaves this log's data out (it is
    acknowledged once written, fsynced later by maintenance); term, vote and the other state
    the file holds are still written before anything is sent."""

    def begin_flush(self) -> StorageFlush | None:
        """PartitionRaftStorage.begin_flush; with ``write_caching``, the state file only."""
        if not self.write_caching:
            return super().begin_flush()
        if not self._state_dirty:
            return None
        state_bytes = self._state.encode()
        self._state_dirty = self._commit_dirty = False
        return self._flush(None, state_bytes)

    def persist(self, ready: Ready, *, now_ms: int) -> None:
        """PartitionRaftStorage.persist, then the observer. When persisting fails part-way
        (ENOSPC), what it wrote is cut back (:meth:`rewind`: the runtime persists the same
        Ready again later) and, if the log changed, the observer is told to rebuild from
        the log as it is (a Ready with ``truncate_from``): the failed attempt's batches are
        neither acknowledged nor counted in the producer state. The error goes on."""
        end = self.log.log_end_offset
        try:
            super().persist(ready, now_ms=now_ms)
        except BaseException:
            changed = (
                self.log.log_end_offset != end
                or ready.snapshot is not None
                or ready.truncate_from is not None
            )
            with contextlib.suppress(OSError):  # the retry rewinds again first
                self.rewind(ready)
            if changed:
                self.observer(Ready(truncate_from=self.last_index() + 1))
            raise
        self.observer(ready)

    def follow_log_start(self) -> bool:
        """Make the log's start (moved by retention) the Raft log start: the entry ending
        there becomes the snapshot. Whether it moved. Called before the core reads the log."""
        start = offsets.snapshot_index(self.log.log_start_offset)
        state = self._state
        if start <= state.snapshot_index:
            return False
        term = self._term_from_epochs(start)
        state.snapshot_term = term if term is not None else state.snapshot_term
        state.snapshot_index = start
        # Terms that start at or below the new log start and are followed by a later one
        # are no longer needed (the snapshot's term stands for the offsets up to it).
        epochs = state.epochs
        while len(epochs) > 1 and epochs[1][0] <= start + 1:
            epochs.pop(0)
        self._state_dirty = True
        return True

    # The core reads the log start through these: each first follows retention.

    def first_index(self) -> int:
        self.follow_log_start()
        return super().first_index()

    def term(self, index: int) -> int | None:
        self.follow_log_start()
        return super().term(index)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        self.follow_log_start()
        return super().entries(lo, hi, max_bytes)

    def snapshot(self) -> Snapshot:
        self.follow_log_start()
        return super().snapshot()
