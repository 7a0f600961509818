"""The metadata applier: committed entries of the metadata group in, a current view out.

The Raft runtime hands every committed entry of the metadata group, in index order, to
:meth:`MetadataApplier.apply_entry` (on voters and learners alike), and a snapshot it
installs to :meth:`MetadataApplier.restore`. A NORMAL entry is one batch of metadata records
(:func:`records.decode_batch`); Raft's no-op and configuration entries only move the applied
index. A batch the state machine rejects changes nothing, on every node alike; the applier
returns the error, so that the leader can answer the request that proposed it.

For log trimming, :meth:`snapshot` gives (applied index, bytes); restart is
:meth:`restore` of the latest snapshot, then the entries after its index.

Pure: no I/O, no clock. Not thread-safe: call from the one thread (the event loop) that
applies the group's entries.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rilke.errors import ControllerError, CorruptMetadataRecordError
from rilke.replication.controller.records import decode_batch
from rilke.replication.controller.snapshot import decode_snapshot, encode_snapshot
from rilke.replication.controller.state import MetadataState
from rilke.replication.controller.view import NO_CONTROLLER, MetadataView, view_of
from rilke.replication.raft.types import Entry, EntryKind

log = logging.getLogger(__name__)


class MetadataApplier:
    """Owns the node's :class:`MetadataState`; ``applied_index`` is the index of the last
    entry applied (0: none; after :meth:`restore`, the snapshot's)."""

    def __init__(self, state: MetadataState | None = None, node_id: int = 0) -> None:
        self.state = state if state is not None else MetadataState()
        self.node_id = node_id
        self.rejected = 0
        self._view: MetadataView | None = None
        self._listeners: list[Callable[[], None]] = []

    @property
    def applied_index(self) -> int:
        return self.state.applied_offset

    def apply_entry(self, entry: Entry) -> ControllerError | None:
        """Apply one committed entry (entries must come in index order, each once). Returns
        None, or the error for which its batch was rejected (nothing changed)."""
        if entry.index <= self.applied_index:
            raise AssertionError(
                f"entry {entry.index} applied after {self.applied_index}: out of order"
            )
        if entry.kind is not EntryKind.NORMAL:
            self.state.skip_to(entry.index)
            return None
        return self.apply_batch(entry.index, entry.data)

    def apply_batch(self, last_offset: int, data: bytes) -> ControllerError | None:
        """Apply the batch whose last offset is ``last_offset``; as :meth:`apply_entry`."""
        try:
            records = decode_batch(data)
            if not records:
                self.state.skip_to(last_offset)
                return None
            self.state.apply_batch(records, last_offset)
        except ControllerError as e:
            if isinstance(e, CorruptMetadataRecordError) and self.applied_index < last_offset:
                self.state.skip_to(last_offset)
            self.rejected += 1
            log.warning(
                "node %s: metadata entry at offset %s rejected: %s", self.node_id, last_offset, e
            )
            return e
        self._changed()
        return None

    def snapshot(self) -> tuple[int, bytes]:
        """(applied index, the state's bytes): the entries up to that index may be trimmed."""
        return self.applied_index, encode_snapshot(self.state)

    def restore(self, data: bytes) -> None:
        """Replace the state with a snapshot's (a restart, or a snapshot from the leader).
        Raises CorruptMetadataRecordError, keeping the current state, if it does not hold."""
        self.state = decode_snapshot(data)
        self._changed()

    def view(self, controller_id: int = NO_CONTROLLER) -> MetadataView:
        """The current view (the same object until something changes)."""
        view = self._view
        if view is None or view.controller_id != controller_id:
            view = self._view = view_of(self.state, controller_id)
        return view

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change of the state; returns the unsubscribe."""
        self._listeners.append(callback)
        return lambda: self._listeners.remove(callback)

    def _changed(self) -> None:
        self._view = None
        for callback in list(self._listeners):
            callback()
