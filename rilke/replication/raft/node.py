"""RaftNode: the Raft state machine of one node of one group (skeleton; filled in below)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from rilke.replication.raft.types import (
    ConfChange,
    Config,
    ConfState,
    Entry,
    Message,
    PeerStatus,
    Ready,
    Role,
    Storage,
)


class RaftNode:
    """One node's Raft state machine (see the types module for the I/O contract).

    Inputs: :meth:`tick`, :meth:`step`, :meth:`propose`, :meth:`propose_conf_change`,
    :meth:`transfer_leadership`, :meth:`read_index`. Output: :meth:`ready`, acknowledged with
    :meth:`advance`. Deterministic given the config, the storage's contents, the rng's seed
    and the sequence of inputs. Not thread-safe.
    """

    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        """Restart from ``storage`` (term, vote, commit, configuration, log); a new group takes
        its configuration from ``config.voters``/``config.learners``. Starts as a follower.
        Raises InvalidConfigError on a bad config."""
        raise NotImplementedError

    # --- inputs -------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, CheckQuorum)."""
        raise NotImplementedError

    def step(self, msg: Message) -> None:
        """Handle a message from a peer (``msg.to`` must be this node). Messages from unknown
        terms, stale or duplicated ones are handled or ignored as Raft says; never raises for
        a well-formed message."""
        raise NotImplementedError

    def campaign(self) -> None:
        """Start an election now (a PreVote round first when ``pre_vote``), as if the election
        timeout had fired. Does nothing on a leader or on a node that cannot vote."""
        raise NotImplementedError

    def propose(self, data: bytes | Sequence[bytes], offset_count: int | Sequence[int] = 1) -> int:
        """Append one entry (``bytes``) or several (a sequence) to the leader's log.

        ``offset_count`` is how many offsets each entry spans (one int for all, or one per
        entry). Returns the index (last offset) of the last appended entry; each entry's
        offsets follow the previous one's. Raises NotLeaderError when this node is not the
        leader, ProposalDroppedError (retriable) during a leader transfer or when the
        uncommitted bytes would exceed ``max_uncommitted_bytes``. Nothing changes on error.
        """
        raise NotImplementedError

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a CONFIG entry changing one member; returns its index. The change takes effect
        on every node when the entry commits. Raises NotLeaderError off the leader;
        ProposalDroppedError while another change is uncommitted, before the leader has
        committed an entry of its own term, when promoting a learner that has not caught up
        (match < commit), or when removing/demoting the leader itself; InvalidRequestError for a
        change that makes no sense (adding a voter never seen as a learner, removing a stranger).
        """
        raise NotImplementedError

    def transfer_leadership(self, to: int) -> None:
        """Ask the leadership to move to voter ``to``: the leader stops taking proposals, brings
        ``to`` up to date, then sends it TIMEOUT_NOW. Forwarded to the leader from a follower.
        The transfer is abandoned after an election timeout. Raises NotLeaderError when no
        leader is known, InvalidRequestError when ``to`` is not a voter."""
        raise NotImplementedError

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read point. A ReadState(index, context) appears in a later
        Ready once the leader confirmed its leadership; serve the read after applying up to
        ``index``. ``context`` must be unique among outstanding requests. Raises NotLeaderError
        when no leader is known; ProposalDroppedError when too many reads are pending."""
        raise NotImplementedError

    def report_snapshot(self, to: int, success: bool) -> None:
        """Optional: the transport reports whether a SNAPSHOT to ``to`` was delivered. A failure
        puts the peer back in probe state at once (otherwise after an election timeout)."""
        raise NotImplementedError

    # --- output -------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        """Whether :meth:`ready` would return a non-empty Ready."""
        raise NotImplementedError

    def ready(self) -> Ready:
        """Everything to persist, send and apply now. Call :meth:`advance` with it before the
        next ``ready()``."""
        raise NotImplementedError

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was persisted, sent and applied (the I/O order)."""
        raise NotImplementedError

    # --- read-only accessors ------------------------------------------------------------------

    @property
    def id(self) -> int:
        raise NotImplementedError

    @property
    def term(self) -> int:
        raise NotImplementedError

    @property
    def vote(self) -> int:
        raise NotImplementedError

    @property
    def role(self) -> Role:
        raise NotImplementedError

    @property
    def leader_id(self) -> int:
        """The leader this node follows (itself when leader), NO_NODE when unknown."""
        raise NotImplementedError

    @property
    def commit_index(self) -> int:
        raise NotImplementedError

    @property
    def applied_index(self) -> int:
        raise NotImplementedError

    @property
    def last_index(self) -> int:
        """The last offset of this node's log (persisted or not)."""
        raise NotImplementedError

    @property
    def conf(self) -> ConfState:
        """The configuration in effect (changes when a CONFIG entry commits)."""
        raise NotImplementedError

    def peer_status(self) -> dict[int, PeerStatus]:
        """The leader's progress of every member (itself included); empty off the leader."""
        raise NotImplementedError

    def log_entries(self, lo: int, hi: int) -> list[Entry]:
        """This node's entries overlapping offsets [lo, hi] (persisted or not), for checks."""
        raise NotImplementedError
