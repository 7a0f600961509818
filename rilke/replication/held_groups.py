"""HeldGroups: a node's durable record of the Raft groups whose state it has held.

A replica that finds no Raft state file may be new to its group, or may have lost its
state (its partition folder wiped or replaced). The two must not be confused: a replica that
lost its state may have voted in a term it no longer remembers and acknowledged entries it no
longer holds, so it must not vote until a leader has caught it up (``Config.storage_lost``).
The metadata's leader epoch tells them apart only when the node's metadata view is caught up
when the partition opens; on a restart it may not be yet.

This record does not depend on the view: one small file per group in ``<data_dir>/
__replica_groups/``, written (and synced, with its folder) right after the group's state file
was first synced on this node, in the same group-commit window. A group recorded here whose
state file is missing lost it. A crash between the state file and the record leaves a state
file without a record, which the next open records. A topic's deletion forgets its groups.
Group names carry the topic's id, so a topic created again under the same name is a new
group. Wiping the WHOLE data directory wipes this record too: that case is not caught here.

Blocks on disk (small files); safe to call from any thread for different groups.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rilke.errors import KafkaStorageError
from rilke.storage import files

HELD_DIR = "__replica_groups"
"""The record's folder in a node's data directory."""


class HeldGroups:
    """The groups recorded in ``directory`` (made on first use)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, group: str) -> Path:
        # Group names hold "/" and may be long: the file is named by a digest and holds the
        # name itself, for people reading the folder and for the check in :meth:`holds`.
        digest = hashlib.sha256(group.encode("utf-8")).hexdigest()[:32]
        return self.directory / f"{digest}.group"

    def holds(self, group: str) -> bool:
        """Whether ``group``'s state was recorded as held here. Raises KafkaStorageError for
        a record that cannot be read or names another group (damaged: the answer is unknown,
        and guessing "not held" would let a replica that lost its state vote)."""
        path = self._path(group)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise KafkaStorageError(f"cannot read the replica group record {path}: {exc}") from exc
        if data != group.encode("utf-8"):
            raise KafkaStorageError(
                f"the replica group record {path} is damaged: it names "
                f"{data[:200].decode('utf-8', 'replace')!r}, not {group!r}"
            )
        return True

    def record(self, group: str) -> None:
        """Record ``group`` durably (the file and its folder synced). Idempotent."""
        path = self._path(group)
        if path.exists():
            return
        if not self.directory.is_dir():
            self.directory.mkdir(parents=True, exist_ok=True)
            files.fsync_dir(self.directory.parent)
        files.atomic_write(path, group.encode("utf-8"))

    def forget(self, group: str) -> None:
        """Remove ``group``'s record (its data is being deleted). Nothing if not recorded."""
        try:
            os.unlink(self._path(group))
        except FileNotFoundError:
            return
