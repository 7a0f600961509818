"""rilke.replication.raft: the Raft core, a deterministic state machine with no I/O.

Start with :class:`RaftNode` (the node), :class:`Ready` (its output) and
:class:`MemoryStorage` (the storage the tests and the simulation use); the module docstring of
:mod:`rilke.replication.raft.types` states the I/O order the caller must keep.
"""

from rilke.replication.raft.node import RaftNode
from rilke.replication.raft.storage import MemoryStorage
from rilke.replication.raft.types import (
    CAMPAIGN_TRANSFER,
    NO_NODE,
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    Message,
    MessageType,
    PeerStatus,
    ProgressState,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SoftState,
    Storage,
)

__all__ = [
    "CAMPAIGN_TRANSFER",
    "NO_NODE",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryKind",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "PeerStatus",
    "ProgressState",
    "RaftNode",
    "ReadState",
    "Ready",
    "Role",
    "Snapshot",
    "SoftState",
    "Storage",
]
