"""The values that cross the Raft core's boundary: messages, entries, states, Ready, Config.

The core (:class:`rilke.replication.raft.node.RaftNode`) is a deterministic state machine. It
reads no clock, opens no socket, writes no file and draws randomness only from the
``random.Random`` it is handed. Everything it wants done is returned in a :class:`Ready`.

Offsets and entries
-------------------
An entry is one record batch. It spans ``offset_count`` consecutive offsets, and its ``index``
is its LAST offset (so ``first_index = index - offset_count + 1``). The log is a sequence of
entries whose offsets are contiguous: each entry's ``first_index`` is the previous entry's
``index + 1``. An offset that is some entry's last offset is an entry *boundary*; every index
Raft reasons about (``prev_log_index``, match, commit, snapshot index) is a boundary. The term of
any offset is the term of the entry that contains it. The entry "before the log" is the
snapshot (log start): its index is ``first_index - 1`` and its term is kept with it; an empty
log has log start (0, 0), so the first entry's first offset is 1.

The I/O order the caller must keep (one ``Ready`` at a time)
------------------------------------------------------------
::

    if node.has_ready():
        rd = node.ready()
        1. persist, in this order: rd.snapshot (reset the log to it), rd.truncate_from (drop the
           log suffix), rd.entries (append), rd.hard_state. All of it must be durable before 2
           (an fsync is needed only when rd.must_sync).
        2. send rd.messages and rd.heartbeats (heartbeats may be coalesced per destination).
        3. apply rd.snapshot's payload (if any), then rd.committed_entries, in order; hand
           rd.read_states to whoever waits on them.
        4. node.advance(rd)

``tick``, ``step``, ``propose`` and the other inputs may be called between ``ready()`` and
``advance()``; ``ready()`` must not be called again before ``advance()``.

The core is not thread-safe: one thread (or one event loop task) drives a node.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

NO_NODE = 0
"""The id meaning "nobody" (no vote, no known leader). Real node ids are >= 1."""


class MessageType(enum.Enum):
    """What a :class:`Message` asks or answers."""

    PRE_VOTE = "pre-vote"
    """Would you vote for me at ``term`` (my term + 1, not yet taken)? ``index``/``log_term`` are
    the candidate's last index and term. Sent by a pre-candidate (thesis 9.6)."""
    PRE_VOTE_RESP = "pre-vote-resp"
    """Answer to PRE_VOTE; ``reject`` False means granted. A grant carries the request's term."""
    VOTE = "vote"
    """Vote for me at ``term``; ``index``/``log_term`` are the candidate's last index and term.
    ``context`` == :data:`CAMPAIGN_TRANSFER` when a leader transfer asked for the election."""
    VOTE_RESP = "vote-resp"
    """Answer to VOTE; ``reject`` False means granted."""
    APPEND = "append"
    """Append ``entries`` after (``index``, ``log_term``) (prev_log_index/prev_log_term);
    ``commit`` is the leader's commit index."""
    APPEND_RESP = "append-resp"
    """Answer to APPEND (or SNAPSHOT). Accepted: ``index`` is the follower's last index that
    matches the leader. Rejected: ``index`` is the rejected prev index, ``reject_hint`` /
    ``hint_term`` a guess of where the logs may match (fast back-off)."""
    HEARTBEAT = "heartbeat"
    """Leader liveness; ``commit`` = min(the follower's match, leader commit); ``context`` carries
    a read-index request id when one is being confirmed."""
    HEARTBEAT_RESP = "heartbeat-resp"
    """Answer to HEARTBEAT, echoing its ``context``."""
    SNAPSHOT = "snapshot"
    """Reset your log to ``snapshot`` (the leader's log start: index, term, configuration and a
    caller-provided payload). Sent to a follower whose next entry the leader no longer has."""
    TIMEOUT_NOW = "timeout-now"
    """Leader transfer: start an election at once (skipping PreVote)."""
    TRANSFER_LEADER = "transfer-leader"
    """A follower forwards a ``transfer_leadership`` request to the leader: ``index`` is the
    proposed new leader's id."""
    READ_INDEX = "read-index"
    """A follower forwards a ``read_index`` request to the leader; ``context`` is its id."""
    READ_INDEX_RESP = "read-index-resp"
    """The leader's answer: ``index`` is the read index for ``context``; ``reject`` if refused."""


VOTE_TYPES = frozenset({MessageType.PRE_VOTE, MessageType.VOTE})

CAMPAIGN_TRANSFER = b"campaign-transfer"
"""``Message.context`` of a VOTE caused by leader transfer: voters grant it even while they
still believe in a live leader (CheckQuorum's lease)."""
LOG_LOST = b"log-lost"
"""``Message.context`` of a rejecting APPEND_RESP from a follower that lacks entries its leader
counts as its match (a heartbeat's commit beyond its last index: its data dir was wiped or
lost its tail). ``reject_hint``/``hint_term`` are its last index and term; the leader lowers
that follower's match to it and probes again (a snapshot if the entries are gone)."""


class EntryKind(enum.Enum):
    NORMAL = "normal"
    """User data (a record batch)."""
    NO_OP = "no-op"
    """The empty control entry a new leader appends to commit an entry of its own term."""
    CONFIG = "config"
    """A membership change; ``data`` is an encoded :class:`ConfChange`."""


@dataclass(slots=True, frozen=True)
class Entry:
    """One log entry: a record batch spanning ``offset_count`` offsets, ending at ``index``.

    Invariants: ``term >= 1``; ``offset_count >= 1``; ``index >= offset_count`` (offsets start
    at 1). Treat as immutable.
    """

    term: int
    index: int
    """The entry's last offset (the batch's last offset): Raft's log index for this entry."""
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL
    offset_count: int = 1
    """How many offsets the entry spans (the batch's record count; 1 for control entries)."""

    @property
    def first_index(self) -> int:
        """The entry's first offset (the batch's base offset)."""
        return self.index - self.offset_count + 1

    @property
    def size_bytes(self) -> int:
        """What the entry counts against byte bounds (in-flight, uncommitted, per message)."""
        return len(self.data)


@dataclass(slots=True, frozen=True)
class ConfState:
    """A group's membership: voters (counted in quorums) and learners (replicated to only).

    Invariant: ``voters`` and ``learners`` are disjoint.
    """

    voters: frozenset[int]
    learners: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        assert not (self.voters & self.learners), "a node is both voter and learner"


class ConfChangeType(enum.Enum):
    ADD_VOTER = "add-voter"
    """Promote a caught-up learner to voter (a new node must join as a learner first)."""
    ADD_LEARNER = "add-learner"
    """Add a new non-voting member (or demote a voter other than the leader)."""
    REMOVE_NODE = "remove-node"
    """Remove a voter or learner (not the leader: transfer leadership first)."""


@dataclass(slots=True, frozen=True)
class ConfChange:
    """One membership change: one server at a time (thesis 4.1)."""

    type: ConfChangeType
    node_id: int

    def encode(self) -> bytes:
        """The CONFIG entry's data: ASCII ``"<type> <node_id>"``, readable in traces."""
        return f"{self.type.value} {self.node_id}".encode()

    @classmethod
    def decode(cls, data: bytes) -> ConfChange:
        """The inverse of :meth:`encode`; raises ValueError on bytes it did not produce."""
        kind, _, node = data.decode("ascii").partition(" ")
        return cls(ConfChangeType(kind), int(node))

    def apply_to(self, conf: ConfState) -> ConfState:
        """The configuration after this change (a no-op change returns ``conf`` unchanged)."""
        voters, learners = set(conf.voters), set(conf.learners)
        if self.type is ConfChangeType.ADD_VOTER:
            learners.discard(self.node_id)
            voters.add(self.node_id)
        elif self.type is ConfChangeType.ADD_LEARNER:
            voters.discard(self.node_id)
            learners.add(self.node_id)
        else:
            voters.discard(self.node_id)
            learners.discard(self.node_id)
        return ConfState(frozenset(voters), frozenset(learners))


@dataclass(slots=True, frozen=True)
class Snapshot:
    """The log start: everything up to ``index`` (a boundary of ``term``) is summarised here.

    For a partition log the log itself is the state machine, so ``data`` is empty and
    installing the snapshot means "reset the log to start after ``index``". For the metadata
    group ``data`` is the serialized state, provided by the caller through storage.
    """

    index: int
    term: int
    conf: ConfState
    data: bytes = b""


@dataclass(slots=True)
class Message:
    """One message between two nodes of a group. Treat as immutable once handed out.

    The meaning of ``index``, ``log_term``, ``commit``, ``reject_hint`` and ``hint_term`` depends
    on ``type`` (see :class:`MessageType`); unused fields stay 0 / empty.
    """

    type: MessageType
    to: int
    frm: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: Sequence[Entry] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    hint_term: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""

    def size_bytes(self) -> int:
        """Payload bytes (entries' data), for flow control."""
        return sum(len(e.data) for e in self.entries)


@dataclass(slots=True, frozen=True)
class HardState:
    """What must be durable before any message of the same Ready is sent.

    Invariants (over a node's life): ``term`` never decreases; ``vote`` changes only with a
    term change or from NO_NODE; ``commit`` never decreases; ``recovering`` goes from True to
    False only (at the Ready that records the leader it caught up with as ``vote``).
    """

    term: int = 0
    vote: int = NO_NODE
    commit: int = 0
    recovering: bool = False
    """This replica lost its state for the group (``Config.storage_lost``) and has not yet
    caught up with a leader: it grants no vote and does not campaign (see
    ``Config.storage_lost``). Persisted, so a restart while recovering goes on recovering."""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(slots=True, frozen=True)
class SoftState:
    """Volatile state worth telling the caller about when it changes (not persisted)."""

    leader_id: int
    role: Role


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read may be served once this node has APPLIED up to ``index``."""

    index: int
    context: bytes


@dataclass(slots=True)
class Ready:
    """Everything the node wants done, in the I/O order of the module docstring.

    Fields default to "nothing to do". Hand the same object back to ``advance()``.
    """

    hard_state: HardState | None = None
    """Persist if not None (before sending anything)."""
    snapshot: Snapshot | None = None
    """If not None: durably reset the log to start after ``snapshot.index`` (dropping every
    entry), record the snapshot as the log start, then apply its payload."""
    truncate_from: int | None = None
    """If not None: durably drop every entry whose last offset is >= ``truncate_from`` (a suffix
    starting at an entry boundary + 1) before appending ``entries``. Equals
    ``entries[0].first_index`` when set."""
    entries: Sequence[Entry] = ()
    """Append durably (after snapshot and truncation, before sending)."""
    messages: Sequence[Message] = ()
    """Send after the above is durable. Order within one destination matters little (Raft
    tolerates reordering) but keeping it is kind."""
    heartbeats: Sequence[Message] = ()
    """HEARTBEAT messages, separate so the transport can coalesce every group's heartbeat to one
    node into one network message. Same durability rule as ``messages``."""
    committed_entries: Sequence[Entry] = ()
    """Apply in order, after persisting. Contiguous; starts right after the last applied."""
    soft_state: SoftState | None = None
    """Not None when leader or role changed since the previous Ready."""
    read_states: Sequence[ReadState] = ()
    """Linearizable reads that became servable (see :class:`ReadState`)."""
    must_sync: bool = False
    """Whether step 1 needs an fsync before step 2: True when there are entries, a snapshot or
    a truncation, or when the term or vote changed. A Ready whose hard state differs only in
    ``commit`` may be written without one (a commit index lost in a crash is learnt again)."""

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.snapshot
            or self.entries
            or self.messages
            or self.heartbeats
            or self.committed_entries
            or self.soft_state
            or self.read_states
        )


@dataclass(slots=True)
class Config:
    """How a node behaves. Ticks are the caller's unit of time (e.g. 100 ms each)."""

    node_id: int
    voters: Sequence[int] = ()
    """The group's bootstrap voters: the configuration before the first CONFIG entry, used when
    the storage's log start carries no configuration. Every node of the group, including one
    that joins later as a learner, must be given the same bootstrap configuration."""
    learners: Sequence[int] = ()
    """The bootstrap learners, under the same rule as ``voters``."""
    storage_lost: bool = False
    """This replica's durable state for the group is gone (its data dir wiped) while the group
    already existed: it may have voted in a term it no longer remembers (a second vote in that
    term could elect a second leader) and acknowledged entries it no longer holds (its vote
    for a candidate without them could lose committed entries). Such a replica recovers
    (``HardState.recovering``, persisted): it grants no vote or pre-vote, does not campaign
    and ignores TIMEOUT_NOW until a leader of its current term has made its log hold that
    leader's commit index at an entry of the leader's own term (so every entry committed
    before that term, which the leader holds, is in this log); it then records that leader
    as its vote for the term and votes as usual from the next term on. Its term still follows
    every message, so the leader it waits for is at least as new as any term it heard of
    since the wipe. Ignored in a group whose only voter is this node (nobody could catch it
    up). The caller decides: e.g. no state file while the metadata says the group had a
    leader (Kafka's KIP-853 gives a wiped voter a new directory id instead; etcd requires it
    to be removed and added again)."""
    applied: int = 0
    """On restart: the index the caller's state machine has already applied. Committed entries
    after max(applied, log start) are handed out again in Ready.committed_entries."""
    election_timeout_ticks: int = 10
    """A follower that hears no leader for a random time in [T, 2T) ticks campaigns. A leader
    with CheckQuorum steps down if a quorum was not active within T ticks."""
    heartbeat_timeout_ticks: int = 1
    """A leader sends heartbeats every this many ticks. Must be < election_timeout_ticks."""
    pre_vote: bool = True
    """Run a PreVote round before a real election (thesis 9.6)."""
    check_quorum: bool = True
    """The leader steps down when it has not heard from a quorum within an election timeout, and
    followers that heard from a leader within it ignore (pre-)vote requests."""
    read_lease: bool = False
    """Serve read_index from the leader's lease (requires check_quorum) without a heartbeat
    round while the lease holds (see ``RaftNode.has_lease``); otherwise, a heartbeat round.
    Correct only while clock drift plus message delay stay under ``lease_margin_ticks``."""
    lease_margin_ticks: int = 2
    """How much shorter than the election timeout the leader's lease is."""
    broadcast_commit: bool = True
    """When the leader's commit index moves, tell every follower at once (an APPEND each, as
    etcd does). False: followers learn it with the next APPEND or heartbeat, which halves the
    leader's messages when proposals come one at a time; the leader's own commit (what a
    producer with acks=all waits for) is not delayed either way."""
    max_inflight_msgs: int = 256
    """At most this many APPENDs unacknowledged per follower in replicate state."""
    max_inflight_bytes: int = 8 * 1024 * 1024
    """At most this many entry bytes unacknowledged per follower (one message may exceed)."""
    max_uncommitted_bytes: int = 64 * 1024 * 1024
    """The leader refuses proposals (ProposalDroppedError) while this many entry bytes are
    proposed but not yet committed; a single proposal is accepted when none is pending."""
    max_size_per_msg: int = 1024 * 1024
    """At most this many entry bytes per APPEND (at least one entry is always sent)."""
    max_committed_bytes_per_ready: int = 16 * 1024 * 1024
    """At most this many bytes of committed entries in one Ready (at least one entry)."""
    max_pending_reads: int = 1024
    """Bound on read_index requests waiting for the leader (ProposalDroppedError beyond)."""

    def validate(self) -> None:
        """Raise rilke.errors.InvalidConfigError if the settings cannot work."""
        from rilke.errors import InvalidConfigError

        if self.node_id < 1:
            raise InvalidConfigError("node_id must be >= 1")
        if self.heartbeat_timeout_ticks < 1:
            raise InvalidConfigError("heartbeat_timeout_ticks must be >= 1")
        if self.election_timeout_ticks <= self.heartbeat_timeout_ticks:
            raise InvalidConfigError("election_timeout_ticks must exceed heartbeat_timeout_ticks")
        if self.max_inflight_msgs < 1 or self.max_inflight_bytes < 1:
            raise InvalidConfigError("max_inflight_msgs and max_inflight_bytes must be >= 1")
        if self.read_lease and not self.check_quorum:
            raise InvalidConfigError("read_lease requires check_quorum")
        if self.read_lease and not 0 <= self.lease_margin_ticks < self.election_timeout_ticks:
            raise InvalidConfigError("lease_margin_ticks must lie in [0, election_timeout_ticks)")
        if set(self.voters) & set(self.learners):
            raise InvalidConfigError("a node cannot be both voter and learner")


class ProgressState(enum.Enum):
    """How the leader replicates to one follower (etcd's tracker states)."""

    PROBE = "probe"
    """One APPEND at a time until the follower's match is found."""
    REPLICATE = "replicate"
    """Pipelined APPENDs, bounded by the in-flight window."""
    SNAPSHOT = "snapshot"
    """A SNAPSHOT is on its way; nothing else is sent until it is acknowledged."""


@dataclass(slots=True, frozen=True)
class PeerStatus:
    """A read-only copy of the leader's view of one peer (see ``RaftNode.peer_status``)."""

    match: int
    next: int
    state: ProgressState
    recent_active: bool
    is_learner: bool
    inflight_msgs: int
    inflight_bytes: int


class Storage(Protocol):
    """What the core reads from stable storage (the durable log). The core never writes it: the
    caller applies each Ready to it (see the module docstring), and the core reads back only
    what the caller has made durable.

    Offsets follow the module docstring: an entry spans several offsets and is named by its last
    one. ``snapshot index`` is the log start (``first_index() - 1``).
    """

    def initial_state(self) -> tuple[HardState, ConfState]:
        """The persisted hard state and the configuration at the log start (the snapshot's);
        empty when the log was never reset to a snapshot, meaning "the bootstrap configuration
        of Config". The core replays the CONFIG entries of the log on top of it."""
        ...

    def first_index(self) -> int:
        """The first offset of the first entry held (snapshot index + 1)."""
        ...

    def last_index(self) -> int:
        """The last offset held (the snapshot index when no entry is held)."""
        ...

    def term(self, index: int) -> int | None:
        """The term of the entry containing offset ``index``, the snapshot's term at the snapshot
        index, and None outside [snapshot index, last_index()]."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """The entries overlapping offsets [lo, hi], in order, stopping before the entry that
        would take the total of ``size_bytes`` over ``max_bytes`` (at least one entry is
        returned). Requires first_index() <= lo <= hi <= last_index()."""
        ...

    def snapshot(self) -> Snapshot:
        """The current log start as a Snapshot (with the caller's payload), for a follower that
        needs entries before first_index()."""
        ...

    def config_entries(self) -> list[Entry]:
        """The CONFIG entries held after the log start, in order (read once, at restart, so a
        storage that indexes them spares the core a scan of the whole log)."""
        ...
