"""RaftNode: the Raft state machine of one node of one group.

Raft as in the paper and Ongaro's thesis, shaped after etcd-io/raft: PreVote and CheckQuorum,
fast log back-off, a no-op entry on election, leader transfer, one-at-a-time membership changes
with learners, flow control per follower, read index and an optional lease. The module
docstring of :mod:`rilke.replication.raft.types` states the I/O contract.
"""

from __future__ import annotations

import enum
import logging
import random
from collections.abc import Sequence

from rilke.errors import InvalidRequestError, NotLeaderError, ProposalDroppedError
from rilke.replication.raft.log import RaftLog
from rilke.replication.raft.progress import Inflights, Progress
from rilke.replication.raft.quorum import VoteResult, quorum_size, vote_result
from rilke.replication.raft.read_only import ReadOnly
from rilke.replication.raft.types import (
    CAMPAIGN_TRANSFER,
    LOG_LOST,
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
    SoftState,
    Storage,
)

logger = logging.getLogger(__name__)

_MT = MessageType
_REPLICATE = ProgressState.REPLICATE
_NORMAL = EntryKind.NORMAL


class _Campaign(enum.Enum):
    PRE_ELECTION = "pre-election"
    ELECTION = "election"
    TRANSFER = "transfer"


class RaftNode:
    """One node's Raft state machine (see the types module for the I/O contract).

    Inputs: :meth:`tick`, :meth:`step`, :meth:`campaign`, :meth:`propose`,
    :meth:`propose_conf_change`, :meth:`transfer_leadership`, :meth:`read_index`. Output:
    :meth:`ready`, acknowledged with :meth:`advance`. Deterministic given the config, the
    storage's contents, the rng's state and the sequence of inputs. Not thread-safe.

    Invariants: ``_term`` never decreases; ``_vote`` is set at most once per term; a leader's
    log only grows; ``_log.committed`` never decreases; a leader only commits by counting
    replicas entries of its own term; at most one configuration change is uncommitted on a
    leader (``_pending_conf_index``).
    """

    def __init__(self, config: Config, storage: Storage, rng: random.Random) -> None:
        """Restart from ``storage`` (term, vote, commit, configuration, log); a new group takes
        its configuration from ``config.voters``/``config.learners``. Starts as a follower.
        Committed entries after ``max(config.applied, log start)`` are handed out again.
        Raises InvalidConfigError on a bad config."""
        config.validate()
        self._config = config
        self._rng = rng
        self._id = config.node_id
        hard_state, conf = storage.initial_state()
        if not conf.voters and not conf.learners:
            conf = ConfState(frozenset(config.voters), frozenset(config.learners))
        # A snapshot holds only committed state, and the contract's write order (snapshot
        # first, hard state last) means a crash between the two leaves a hard state whose
        # commit is behind the snapshot: the snapshot's index is then the commit we know.
        snapshot_index = storage.first_index() - 1
        committed = max(hard_state.commit, snapshot_index)
        applied = min(max(config.applied, snapshot_index), committed)
        self._log = RaftLog(storage, committed, applied)
        self._term = hard_state.term
        self._vote = hard_state.vote
        # See Config.storage_lost: no vote, no campaign until caught up with a leader.
        self._recovering = (hard_state.recovering or config.storage_lost) and bool(
            conf.voters - {config.node_id}
        )
        if self._recovering and not hard_state.recovering:
            logger.warning(
                "raft node %d: state lost, recovering: no vote until a leader of term >= %d "
                "catches this log up",
                self._id,
                self._term,
            )
        self._leader = NO_NODE
        self._role = Role.FOLLOWER
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._ticks = 0
        """Ticks since this node started: the clock of the leader lease."""
        self._last_ack: dict[int, int] = {}
        """Leader: the tick at which each peer last answered an APPEND or HEARTBEAT."""
        self._lease_revoked = False
        self._randomized_election_timeout = 0
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, Progress] = {}
        self._transferee = NO_NODE
        self._pending_conf_index = 0
        self._uncommitted_bytes = 0
        self._read_only = ReadOnly()
        self._pending_reads: list[tuple[int, bytes]] = []
        self._msgs: list[Message] = []
        # Keyed by (peer, context): ticks between two Readys coalesce into one heartbeat each.
        self._heartbeats: dict[tuple[int, bytes], Message] = {}
        self._read_states: list[ReadState] = []
        self._prev_hard_state = hard_state
        self._prev_soft_state = SoftState(NO_NODE, Role.FOLLOWER)
        self._ready_outstanding = False
        # Proposals and commit advances ask for one broadcast, done when the Ready is built:
        # several proposals (or commits) between two Readys then share one APPEND per peer.
        self._bcast_pending = False
        # CONFIG entries past the commit index, applied when they commit (a configuration takes
        # effect on commit, one change at a time). On restart, replay the committed ones on top
        # of the log start's configuration (the storage answers from its index of them).
        self._uncommitted_conf: list[int] = []
        for entry in storage.config_entries():
            if entry.index <= committed:
                conf = ConfChange.decode(entry.data).apply_to(conf)
            else:
                self._uncommitted_conf.append(entry.index)
        self._conf = conf
        self._become_follower(self._term, NO_NODE)

    # --- read-only accessors ------------------------------------------------------------------

    @property
    def id(self) -> int:
        return self._id

    @property
    def term(self) -> int:
        return self._term

    @property
    def vote(self) -> int:
        return self._vote

    @property
    def recovering(self) -> bool:
        """Whether this node lost its state and waits for a leader to catch it up before it
        votes or campaigns (``Config.storage_lost``)."""
        return self._recovering

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader_id(self) -> int:
        """The leader this node follows (itself when leader), NO_NODE when unknown."""
        return self._leader

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def applied_index(self) -> int:
        return self._log.applied

    @property
    def last_index(self) -> int:
        """The last offset of this node's log (persisted or not)."""
        return self._log.last_index()

    @property
    def first_index(self) -> int:
        """The first offset of this node's log (log start + 1)."""
        return self._log.first_index()

    @property
    def conf(self) -> ConfState:
        """The configuration in effect (changes when a CONFIG entry commits)."""
        return self._conf

    @property
    def transferee(self) -> int:
        """The target of a leader transfer in progress, NO_NODE when none."""
        return self._transferee

    @property
    def uncommitted_bytes(self) -> int:
        return self._uncommitted_bytes

    def peer_status(self) -> dict[int, PeerStatus]:
        """The leader's progress of every member (itself included); empty off the leader."""
        return {node: pr.status() for node, pr in sorted(self._progress.items())}

    def log_entries(self, lo: int, hi: int) -> list[Entry]:
        """This node's entries overlapping offsets [lo, hi] (persisted or not), for checks.
        Offsets outside the log are ignored."""
        lo = max(lo, self._log.first_index())
        hi = min(hi, self._log.last_index())
        if lo > hi:
            return []
        return self._log.slice(lo, hi, 1 << 62)

    def term_at(self, index: int) -> int | None:
        """The term of the entry containing offset ``index`` (None outside the log)."""
        return self._log.term(index)

    def has_lease(self) -> bool:
        """Whether this leader (with ``read_lease``) may serve reads without a heartbeat round.

        Followers ignore vote requests for ``election_timeout_ticks`` after hearing from their
        leader (CheckQuorum), so no other leader can be elected before that window closes on a
        quorum. The leader holds the lease while a quorum of voters (itself included) answered
        within the last ``election_timeout_ticks - lease_margin_ticks`` of its ticks; the margin
        covers clock drift and the delay of those answers. Leader transfer ends the lease for
        the term (the transferee's election ignores the window).
        """
        if self._role is not Role.LEADER or not self._config.read_lease or self._lease_revoked:
            return False
        now = self._ticks
        acks = sorted(
            (now if v == self._id else self._last_ack.get(v, -(1 << 62))) for v in self._conf.voters
        )
        if not acks:
            return False
        quorum_ack = acks[(len(acks) - 1) // 2]
        config = self._config
        return now - quorum_ack < config.election_timeout_ticks - config.lease_margin_ticks

    def can_quiesce(self) -> bool:
        """Whether this leader's group is idle: every member's log matches the leader's, all of
        it is committed and applied, and no transfer, read or configuration change is under
        way. A caller may then stop ticking the group (and sending its heartbeats) until the
        next input, as etcd's and Redpanda's quiescing do; reading this changes nothing."""
        if self._role is not Role.LEADER or self._transferee != NO_NODE:
            return False
        log = self._log
        last = log.last_index()
        if log.committed != last or log.applied != last or log.has_unstable():
            return False
        if self._uncommitted_conf or len(self._read_only) or self._pending_reads:
            return False
        if self._msgs or self._heartbeats or self._bcast_pending:
            return False
        return all(pr.match == last for pr in self._progress.values())

    # --- role changes -------------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if self._term != term:
            assert term > self._term, f"term going back from {self._term} to {term}"
            self._term = term
            self._vote = NO_NODE
        self._leader = NO_NODE
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        timeout = self._config.election_timeout_ticks
        self._randomized_election_timeout = timeout + self._rng.randrange(timeout)
        self._votes = {}
        self._transferee = NO_NODE
        self._progress = {}
        self._heartbeats = {}  # a leader's unsent heartbeats mean nothing once it is not one
        self._last_ack = {}
        self._lease_revoked = False
        self._read_only.reset()
        self._pending_reads = []
        self._uncommitted_bytes = 0

    def _become_follower(self, term: int, leader: int) -> None:
        self._reset(term)
        self._leader = leader
        self._role = Role.FOLLOWER
        logger.debug("raft node %d: follower at term %d (leader %d)", self._id, term, leader)

    def _become_pre_candidate(self) -> None:
        assert self._role is not Role.LEADER, "leader cannot become pre-candidate"
        # PreVote changes neither term nor vote: a rejected pre-candidate disturbs nobody.
        self._votes = {}
        self._leader = NO_NODE
        self._role = Role.PRE_CANDIDATE
        logger.debug("raft node %d: pre-candidate at term %d", self._id, self._term)

    def _become_candidate(self) -> None:
        assert self._role is not Role.LEADER, "leader cannot become candidate"
        self._reset(self._term + 1)
        self._vote = self._id
        self._role = Role.CANDIDATE
        logger.debug("raft node %d: candidate at term %d", self._id, self._term)

    def _become_leader(self) -> None:
        assert self._role is not Role.FOLLOWER, "follower cannot become leader"
        self._reset(self._term)
        self._leader = self._id
        self._role = Role.LEADER
        last = self._log.last_index()
        for node in self._conf.voters | self._conf.learners:
            self._progress[node] = self._new_progress(node, last + 1)
        own = self._progress.get(self._id)
        if own is not None:
            own.maybe_update(self._log.stable_last_index())
            own.become_replicate()
        # An older configuration change may still be uncommitted: wait for it (it commits with
        # the no-op below) before accepting another.
        self._pending_conf_index = last
        self._append_entries([Entry(self._term, last + 1, b"", EntryKind.NO_OP)])
        logger.info("raft node %d: leader at term %d", self._id, self._term)

    def _new_progress(self, node: int, next_index: int) -> Progress:
        inflights = Inflights(self._config.max_inflight_msgs, self._config.max_inflight_bytes)
        pr = Progress(next_index, inflights, is_learner=node in self._conf.learners)
        pr.recent_active = node == self._id
        return pr

    def _promotable(self) -> bool:
        return self._id in self._conf.voters and not self._recovering

    # --- inputs: time ---------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, CheckQuorum)."""
        self._ticks += 1
        if self._role is Role.LEADER:
            self._tick_heartbeat()
        else:
            self._election_elapsed += 1
            if self._promotable() and self._election_elapsed >= self._randomized_election_timeout:
                self._election_elapsed = 0
                self.campaign()

    def _tick_heartbeat(self) -> None:
        config = self._config
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= config.election_timeout_ticks:
            self._election_elapsed = 0
            if config.check_quorum and not self._quorum_active():
                logger.info("raft node %d: no quorum active, stepping down", self._id)
                self._become_follower(self._term, NO_NODE)
                return
            if self._transferee != NO_NODE:
                logger.info(
                    "raft node %d: leader transfer to %d timed out", self._id, self._transferee
                )
                self._transferee = NO_NODE
        for node, pr in self._progress.items():
            if pr.state is ProgressState.SNAPSHOT:
                pr.snapshot_ticks += 1
                if pr.snapshot_ticks >= config.election_timeout_ticks:
                    # The snapshot (or its answer) was probably lost: probe again.
                    pr.become_probe()
                    self._maybe_send_append(node, send_if_empty=True)
        if self._heartbeat_elapsed >= config.heartbeat_timeout_ticks:
            self._heartbeat_elapsed = 0
            self._bcast_heartbeat(self._read_only.last_context() or b"")

    def _quorum_active(self) -> bool:
        active = 0
        for node in self._conf.voters:
            pr = self._progress.get(node)
            if pr is not None and (pr.recent_active or node == self._id):
                active += 1
        for node, pr in self._progress.items():
            pr.recent_active = node == self._id
        return active >= quorum_size(len(self._conf.voters))

    # --- inputs: elections ----------------------------------------------------------------------

    def campaign(self) -> None:
        """Start an election now (a PreVote round first when ``pre_vote``), as if the election
        timeout had fired. Does nothing on a leader or on a node that cannot vote."""
        if self._role is Role.LEADER or not self._promotable():
            return
        self._campaign(_Campaign.PRE_ELECTION if self._config.pre_vote else _Campaign.ELECTION)

    def _campaign(self, kind: _Campaign) -> None:
        if kind is _Campaign.PRE_ELECTION:
            self._become_pre_candidate()
            vote_type = _MT.PRE_VOTE
            term = self._term + 1
        else:
            self._become_candidate()
            vote_type = _MT.VOTE
            term = self._term
        self._votes[self._id] = True
        result = vote_result(self._conf.voters, self._votes)
        if result is VoteResult.WON:
            if kind is _Campaign.PRE_ELECTION:
                self._campaign(_Campaign.ELECTION)
            else:
                self._become_leader()
                self._bcast_append()
            return
        context = CAMPAIGN_TRANSFER if kind is _Campaign.TRANSFER else b""
        last_index = self._log.last_index()
        last_term = self._log.last_term()
        for node in sorted(self._conf.voters):
            if node != self._id:
                self._msgs.append(
                    Message(
                        vote_type,
                        node,
                        self._id,
                        term,
                        log_term=last_term,
                        index=last_index,
                        context=context,
                    )
                )

    # --- inputs: messages ---------------------------------------------------------------------

    def step(self, msg: Message) -> None:
        """Handle a message from a peer (``msg.to`` must be this node). Stale, duplicated and
        reordered messages are handled or ignored as Raft says; never raises for a well-formed
        message."""
        assert msg.to == self._id, f"message for {msg.to} stepped into {self._id}"
        mtype = msg.type
        if msg.term == self._term:
            # The common case, first. Only the leader of this term sends it APPENDs.
            if mtype is _MT.APPEND_RESP and self._role is Role.LEADER:
                self._handle_append_response(msg)
                return
        elif msg.term == 0:
            pass  # forwarded requests (read index, transfer) are not bound to a term
        elif msg.term > self._term:
            if msg.type in (_MT.PRE_VOTE, _MT.VOTE):
                in_lease = (
                    self._config.check_quorum
                    and self._leader != NO_NODE
                    and self._election_elapsed < self._config.election_timeout_ticks
                )
                if in_lease and msg.context != CAMPAIGN_TRANSFER:
                    # CheckQuorum: we heard from a live leader recently, so this candidate is
                    # probably one that was cut off; do not let it disturb the group.
                    return
            if msg.type is _MT.PRE_VOTE:
                pass  # never change term for a PreVote
            elif msg.type is _MT.PRE_VOTE_RESP and not msg.reject:
                pass  # our own future term, granted; the term moves when we win
            elif msg.type in (_MT.APPEND, _MT.HEARTBEAT, _MT.SNAPSHOT):
                self._become_follower(msg.term, msg.frm)
            else:
                self._become_follower(msg.term, NO_NODE)
        elif msg.term < self._term:
            if msg.type in (_MT.APPEND, _MT.HEARTBEAT) and (
                self._config.check_quorum or self._config.pre_vote
            ):
                # A stale leader, perhaps cut off while we moved on; with PreVote it would
                # never learn our term otherwise. This answer has our term: it steps down.
                self._msgs.append(Message(_MT.APPEND_RESP, msg.frm, self._id, self._term))
            elif msg.type is _MT.PRE_VOTE:
                self._msgs.append(
                    Message(_MT.PRE_VOTE_RESP, msg.frm, self._id, self._term, reject=True)
                )
            return

        if msg.type in (_MT.PRE_VOTE, _MT.VOTE):
            self._handle_vote_request(msg)
        elif self._role is Role.LEADER:
            self._step_leader(msg)
        elif self._role is Role.FOLLOWER:
            self._step_follower(msg)
        else:
            self._step_candidate(msg)

    def _handle_vote_request(self, msg: Message) -> None:
        can_vote = (
            self._vote == msg.frm
            or (self._vote == NO_NODE and self._leader == NO_NODE)
            or (msg.type is _MT.PRE_VOTE and msg.term > self._term)
        )
        resp_type = _MT.VOTE_RESP if msg.type is _MT.VOTE else _MT.PRE_VOTE_RESP
        if self._recovering:
            # It may have voted in this term before its state was lost, and its log may lack
            # entries it acknowledged: granting could elect a second leader, or one without
            # committed entries (Config.storage_lost).
            can_vote = False
        if can_vote and self._log.is_up_to_date(msg.index, msg.log_term):
            # The granted answer carries the request's term so a pre-candidate can count it.
            self._msgs.append(Message(resp_type, msg.frm, self._id, msg.term))
            if msg.type is _MT.VOTE:
                assert self._vote in (NO_NODE, msg.frm), "a second vote in one term"
                self._election_elapsed = 0
                self._vote = msg.frm
        else:
            self._msgs.append(Message(resp_type, msg.frm, self._id, self._term, reject=True))

    def _step_leader(self, msg: Message) -> None:
        mtype = msg.type
        if mtype is _MT.APPEND_RESP:
            self._handle_append_response(msg)
        elif mtype is _MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(msg)
        elif mtype is _MT.TRANSFER_LEADER:
            self._handle_transfer(msg.index)
        elif mtype is _MT.READ_INDEX:
            self._handle_read_index(msg.frm, msg.context)
        # Other types (stale vote answers, ...) need nothing from a leader.

    def _step_candidate(self, msg: Message) -> None:
        mtype = msg.type
        if mtype in (_MT.APPEND, _MT.HEARTBEAT, _MT.SNAPSHOT):
            # Someone won this term: follow it.
            self._become_follower(msg.term, msg.frm)
            self._step_follower(msg)
            return
        expected = _MT.PRE_VOTE_RESP if self._role is Role.PRE_CANDIDATE else _MT.VOTE_RESP
        if mtype is not expected:
            return
        if mtype is _MT.PRE_VOTE_RESP and not msg.reject and msg.term != self._term + 1:
            return  # a grant from an earlier round
        self._votes.setdefault(msg.frm, not msg.reject)
        result = vote_result(self._conf.voters, self._votes)
        if result is VoteResult.WON:
            if self._role is Role.PRE_CANDIDATE:
                self._campaign(_Campaign.ELECTION)
            else:
                self._become_leader()
                self._bcast_append()
        elif result is VoteResult.LOST:
            self._become_follower(self._term, NO_NODE)

    def _step_follower(self, msg: Message) -> None:
        mtype = msg.type
        if mtype is _MT.APPEND:
            self._election_elapsed = 0
            self._leader = msg.frm
            self._handle_append(msg)
            self._maybe_end_recovery()
        elif mtype is _MT.HEARTBEAT:
            self._election_elapsed = 0
            self._leader = msg.frm
            self._handle_heartbeat(msg)
            self._maybe_end_recovery()
        elif mtype is _MT.SNAPSHOT:
            self._election_elapsed = 0
            self._leader = msg.frm
            self._handle_snapshot(msg)
            self._maybe_end_recovery()
        elif mtype is _MT.TIMEOUT_NOW:
            if self._promotable():
                logger.info("raft node %d: campaigning at once for leader transfer", self._id)
                self._campaign(_Campaign.TRANSFER)
        elif mtype in (_MT.TRANSFER_LEADER, _MT.READ_INDEX):
            if self._leader != NO_NODE:
                self._msgs.append(
                    Message(mtype, self._leader, msg.frm, 0, index=msg.index, context=msg.context)
                )
        elif mtype is _MT.READ_INDEX_RESP and not msg.reject:
            self._read_states.append(ReadState(msg.index, msg.context))

    def _maybe_end_recovery(self) -> bool:
        """A recovering follower whose commit index (learnt from the leader of its term, and
        held in its log) is at an entry of that term has every entry committed before the
        term: it records the leader as its vote for the term (it must not vote in it again)
        and votes as usual from then on. Whether it ended the recovery."""
        if not self._recovering or self._leader == NO_NODE:
            return False
        committed = self._log.committed
        if committed == 0 or self._log.term(committed) != self._term:
            return False
        assert self._vote in (NO_NODE, self._leader), "a recovering node voted"
        self._recovering = False
        self._vote = self._leader
        logger.info(
            "raft node %d: recovered: caught up with leader %d of term %d at %d",
            self._id,
            self._leader,
            self._term,
            committed,
        )
        return True

    # --- the follower's side of replication ----------------------------------------------------

    def _handle_append(self, msg: Message) -> None:
        log = self._log
        if msg.index < log.committed:
            self._msgs.append(
                Message(_MT.APPEND_RESP, msg.frm, self._id, self._term, index=log.committed)
            )
            return
        committed_before = log.committed
        last_new = log.maybe_append(msg.index, msg.log_term, msg.commit, msg.entries)
        if last_new is not None:
            self._track_conf(msg.entries, committed_before)
            self._msgs.append(
                Message(_MT.APPEND_RESP, msg.frm, self._id, self._term, index=last_new)
            )
            self._apply_committed_conf()
            return
        hint_index, hint_term = log.find_conflict_by_term(
            min(msg.index, log.last_index()), msg.log_term
        )
        self._msgs.append(
            Message(
                _MT.APPEND_RESP,
                msg.frm,
                self._id,
                self._term,
                index=msg.index,
                reject=True,
                reject_hint=hint_index,
                hint_term=hint_term,
            )
        )

    def _track_conf(self, entries: Sequence[Entry], committed_before: int) -> None:
        """Keep ``_uncommitted_conf`` in step with the log after a follower's append, which may
        have replaced a suffix holding CONFIG entries."""
        log = self._log
        conf = self._uncommitted_conf
        if conf:
            last = log.last_index()
            conf[:] = [
                i
                for i in conf
                if i <= last and log.is_boundary(i) and log.entry_at(i).kind is EntryKind.CONFIG
            ]
        added = False
        for entry in entries:
            if (
                entry.kind is EntryKind.CONFIG
                and entry.index > committed_before
                and entry.index not in conf
            ):
                conf.append(entry.index)
                added = True
        if added:
            conf.sort()

    def _handle_heartbeat(self, msg: Message) -> None:
        log = self._log
        if msg.commit > log.last_index() and log.pending_snapshot is None:
            # The leader counts entries this node no longer has (a wiped data dir): say so,
            # so that it sends them (or its log start) again.
            logger.warning(
                "raft node %d: leader %d counts entries up to %d, this log ends at %d",
                self._id,
                msg.frm,
                msg.commit,
                log.last_index(),
            )
            self._msgs.append(
                Message(
                    _MT.APPEND_RESP,
                    msg.frm,
                    self._id,
                    self._term,
                    index=msg.commit,
                    reject=True,
                    reject_hint=log.last_index(),
                    hint_term=log.last_term(),
                    context=LOG_LOST,
                )
            )
            return
        self._log.commit_to(msg.commit)
        self._apply_committed_conf()
        self._send_heartbeat_resp(msg)

    def _send_heartbeat_resp(self, msg: Message) -> None:
        self._msgs.append(
            Message(_MT.HEARTBEAT_RESP, msg.frm, self._id, self._term, context=msg.context)
        )

    def _handle_snapshot(self, msg: Message) -> None:
        snap = msg.snapshot
        assert snap is not None, "SNAPSHOT message without a snapshot"
        log = self._log
        if snap.index <= log.committed:
            index = log.committed
        elif log.match_term(snap.index, snap.term):
            # We already hold the snapshot's last entry: just fast-forward the commit index.
            log.commit_to(snap.index)
            self._apply_committed_conf()
            index = log.committed
        else:
            logger.info(
                "raft node %d: restoring snapshot at %d (term %d)", self._id, snap.index, snap.term
            )
            log.restore(snap)
            self._conf = snap.conf
            self._uncommitted_conf = []
            index = log.last_index()
        self._msgs.append(Message(_MT.APPEND_RESP, msg.frm, self._id, self._term, index=index))

    # --- the leader's side of replication ------------------------------------------------------

    def _append_entries(self, entries: list[Entry]) -> None:
        """Leader: append to its own log (durable after the next Ready) and track config."""
        self._log.append(entries)
        for entry in entries:
            if entry.kind is EntryKind.CONFIG:
                self._uncommitted_conf.append(entry.index)

    def _maybe_send_append(self, to: int, *, send_if_empty: bool) -> bool:
        """Send ``to`` what it lacks (entries, or the snapshot if they are gone), unless its
        progress is paused. Returns whether a message was sent."""
        pr = self._progress[to]
        state = pr.state
        if state is _REPLICATE:
            if pr.inflights.full():
                return False
        elif state is not ProgressState.PROBE or pr.probe_sent:
            return False  # a probe is out, or a snapshot is on its way
        log = self._log
        last = log.last_index()
        if pr.next > last and not send_if_empty:
            return False  # the common "nothing new" answer, cheaply
        prev_index = pr.next - 1
        # None when prev_index lies before the log start: the follower needs the snapshot.
        prev_term = log.term(prev_index)
        if prev_term is None:
            if not pr.recent_active:
                return False  # do not ship a snapshot to a peer that may be down
            snap = log.snapshot()
            pr.become_snapshot(snap.index)
            self._msgs.append(Message(_MT.SNAPSHOT, to, self._id, self._term, snapshot=snap))
            logger.info("raft node %d: sending snapshot at %d to %d", self._id, snap.index, to)
            return True
        entries = log.slice(pr.next, last, self._config.max_size_per_msg) if pr.next <= last else []
        size = 0
        for entry in entries:
            size += len(entry.data)
        self._msgs.append(
            Message(
                _MT.APPEND,
                to,
                self._id,
                self._term,
                log_term=prev_term,
                index=prev_index,
                entries=entries,
                commit=log.committed,
            )
        )
        pr.sent_entries(entries[-1].index if entries else 0, size)
        return True

    def _send_empty_append(self, to: int, pr: Progress) -> None:
        prev_index = pr.next - 1
        prev_term = self._log.term(prev_index)
        if prev_term is None:
            # The window's end is gone from our log (retention): whatever the follower lacks
            # must come from the snapshot. Probe from its match, which sends it.
            pr.become_probe()
            self._maybe_send_append(to, send_if_empty=True)
            return
        self._msgs.append(
            Message(
                _MT.APPEND,
                to,
                self._id,
                self._term,
                log_term=prev_term,
                index=prev_index,
                commit=self._log.committed,
            )
        )

    def _bcast_append(self) -> None:
        log = self._log
        for node, pr in self._progress.items():
            if node != self._id and self._maybe_send_append(node, send_if_empty=True):
                # In replicate state, keep the pipe full up to the in-flight window.
                while (
                    pr.state is _REPLICATE
                    and pr.next <= log.last_index()
                    and self._maybe_send_append(node, send_if_empty=False)
                ):
                    pass

    def _bcast_heartbeat(self, context: bytes) -> None:
        committed = self._log.committed
        for node, pr in self._progress.items():
            if node != self._id:
                self._heartbeats[node, context] = Message(
                    _MT.HEARTBEAT,
                    node,
                    self._id,
                    self._term,
                    commit=min(pr.match, committed),
                    context=context,
                )

    def _handle_append_response(self, msg: Message) -> None:
        pr = self._progress.get(msg.frm)
        if pr is None:
            return
        pr.recent_active = True
        self._last_ack[msg.frm] = self._ticks
        log = self._log
        if msg.reject and msg.context == LOG_LOST:
            if msg.reject_hint < pr.match:
                logger.warning(
                    "raft node %d: node %d lost its log after %d (match was %d)",
                    self._id,
                    msg.frm,
                    msg.reject_hint,
                    pr.match,
                )
                # Where its log still matches ours: a boundary of ours at or before its end.
                match_hint, _ = log.find_conflict_by_term(msg.reject_hint, msg.hint_term)
                pr.match = max(0, min(match_hint, msg.reject_hint))
                pr.become_probe()
                self._maybe_send_append(msg.frm, send_if_empty=True)
            return
        if msg.reject:
            # Fast back-off: the follower's hint names a (index, term) where the logs may
            # match; probe at the last boundary of ours at or before it with term <= hint_term.
            match_hint, _ = log.find_conflict_by_term(msg.reject_hint, msg.hint_term)
            below = msg.index
            if log.first_index() <= below <= log.last_index():
                below = log.entry_at(below).first_index - 1
            else:
                below -= 1
            if pr.maybe_decr_to(msg.index, min(below, match_hint) + 1):
                if pr.state is _REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(msg.frm, send_if_empty=True)
            return
        state = pr.state
        was_paused = (
            pr.inflights.full()
            if state is _REPLICATE
            else (pr.probe_sent if state is ProgressState.PROBE else True)
        )
        if pr.maybe_update(msg.index):
            if pr.state is ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state is ProgressState.SNAPSHOT and pr.match + 1 >= log.first_index():
                pr.become_probe()
                pr.become_replicate()
            elif pr.state is _REPLICATE:
                pr.inflights.free_le(msg.index)
            # Only a match beyond the commit index can move it.
            if pr.match > log.committed and self._maybe_commit() and self._config.broadcast_commit:
                self._bcast_pending = True
            # With a broadcast pending (new proposals or a new commit index), the next Ready
            # sends this peer everything at once; otherwise send what it lacks now.
            if (
                not self._bcast_pending
                and self._role is Role.LEADER
                and (was_paused or pr.next <= log.last_index())
            ):
                # The follower may not know the commit index yet: tell it even if empty.
                sent = self._maybe_send_append(msg.frm, send_if_empty=was_paused)
                # Fill the window: the follower may be far behind.
                while sent and pr.state is _REPLICATE:
                    sent = self._maybe_send_append(msg.frm, send_if_empty=False)
            if (
                self._role is Role.LEADER
                and msg.frm == self._transferee
                and pr.match == log.last_index()
            ):
                logger.info("raft node %d: %d caught up, sending timeout-now", self._id, msg.frm)
                self._send_timeout_now(msg.frm)

    def _handle_heartbeat_response(self, msg: Message) -> None:
        pr = self._progress.get(msg.frm)
        if pr is None:
            return
        pr.recent_active = True
        self._last_ack[msg.frm] = self._ticks
        pr.probe_sent = False
        if (
            pr.match < self._log.last_index()
            and not self._maybe_send_append(msg.frm, send_if_empty=True)
            and pr.state is _REPLICATE
        ):
            # Replicate state with a full window: the appends that filled it may all have been
            # lost. An empty append at the window's end (outside the window) finds out: the
            # follower rejects it if it lacks the entries, and the leader probes again.
            self._send_empty_append(msg.frm, pr)
        if not msg.context:
            return
        acks = self._read_only.recv_ack(msg.frm, msg.context)
        if acks is None:
            return
        voters = self._conf.voters
        if sum(1 for node in acks if node in voters) >= quorum_size(len(voters)):
            for status in self._read_only.advance(msg.context):
                self._respond_read(status.requester, status.context, status.index)

    def _maybe_commit(self) -> bool:
        """Commit what a majority of voters hold, if of this term; apply committed config
        changes. Returns whether the commit index moved."""
        progress = self._progress
        matches = sorted([progress[v].match if v in progress else 0 for v in self._conf.voters])
        if not matches:
            return False
        # The largest index a majority holds (quorum.committed_index, inlined: hot path).
        index = matches[(len(matches) - 1) // 2]
        if not self._log.maybe_commit(index, self._term):
            return False
        self._apply_committed_conf()
        if self._pending_reads and self._role is Role.LEADER:
            pending, self._pending_reads = self._pending_reads, []
            for requester, context in pending:
                self._handle_read_index(requester, context)
        return True

    # --- membership -----------------------------------------------------------------------------

    def _apply_committed_conf(self) -> None:
        """Apply CONFIG entries that are now committed (on every node, in log order)."""
        conf_list = self._uncommitted_conf
        committed = self._log.committed
        changed = False
        while conf_list and conf_list[0] <= committed:
            index = conf_list.pop(0)
            entry = self._log.entry_at(index)
            assert entry.kind is EntryKind.CONFIG and entry.index == index
            change = ConfChange.decode(entry.data)
            self._conf = change.apply_to(self._conf)
            changed = True
            logger.info(
                "raft node %d: configuration %s at %d: voters %s learners %s",
                self._id,
                change.encode().decode(),
                index,
                sorted(self._conf.voters),
                sorted(self._conf.learners),
            )
        if changed and self._role is Role.LEADER:
            self._leader_conf_changed()

    def _leader_conf_changed(self) -> None:
        members = self._conf.voters | self._conf.learners
        if self._id not in self._conf.voters:
            logger.info("raft node %d: removed or demoted, stepping down", self._id)
            self._become_follower(self._term, NO_NODE)
            return
        for node in list(self._progress):
            if node not in members:
                del self._progress[node]
                if node == self._transferee:
                    self._transferee = NO_NODE
        last = self._log.last_index()
        for node in sorted(members):
            pr = self._progress.get(node)
            if pr is None:
                pr = self._new_progress(node, last + 1)
                self._progress[node] = pr
            pr.is_learner = node in self._conf.learners
        # The quorum changed: more may be committed now, and new members need entries.
        self._maybe_commit()
        self._bcast_pending = True

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append a CONFIG entry changing one member; returns its index. The change takes effect
        on every node when the entry commits. Raises NotLeaderError off the leader;
        ProposalDroppedError (retriable) while another change is uncommitted, before the leader
        has committed an entry of its own term, during a transfer, or when promoting a learner
        that has not caught up (match < commit); InvalidRequestError for a change that makes no
        sense (promoting a node that is not a learner, adding a member twice, removing a
        stranger, removing or demoting the leader itself: transfer leadership first)."""
        self._require_leader()
        log = self._log
        if self._transferee != NO_NODE:
            raise ProposalDroppedError("a leader transfer is in progress")
        if self._pending_conf_index > log.committed or self._uncommitted_conf:
            raise ProposalDroppedError("another configuration change is not yet committed")
        if log.term(log.committed) != self._term:
            raise ProposalDroppedError("the leader has not yet committed an entry of its term")
        node = change.node_id
        conf = self._conf
        if node < 1:
            raise InvalidRequestError(f"invalid node id {node}")
        if change.type is ConfChangeType.ADD_VOTER:
            if node not in conf.learners:
                raise InvalidRequestError(f"node {node} must be a learner before it can vote")
            pr = self._progress.get(node)
            if pr is None or pr.match < log.committed:
                raise ProposalDroppedError(f"learner {node} has not caught up yet")
        elif change.type is ConfChangeType.ADD_LEARNER:
            if node in conf.learners:
                raise InvalidRequestError(f"node {node} is already a learner")
            if node == self._id:
                raise InvalidRequestError("the leader cannot demote itself")
        else:
            if node not in conf.voters and node not in conf.learners:
                raise InvalidRequestError(f"node {node} is not a member")
            if node == self._id:
                raise InvalidRequestError("the leader cannot remove itself")
            if node in conf.voters and len(conf.voters) == 1:
                raise InvalidRequestError("cannot remove the last voter")
        index = log.last_index() + 1
        self._append_entries([Entry(self._term, index, change.encode(), EntryKind.CONFIG)])
        self._pending_conf_index = index
        self._bcast_pending = True
        return index

    # --- proposals -------------------------------------------------------------------------------

    def _require_leader(self) -> None:
        if self._role is not Role.LEADER:
            raise NotLeaderError(
                f"node {self._id} is not the leader (leader: {self._leader or 'unknown'})"
            )

    def propose(self, data: bytes | Sequence[bytes], offset_count: int | Sequence[int] = 1) -> int:
        """Append one entry (``bytes``) or several (a sequence) to the leader's log.

        ``offset_count`` is how many offsets each entry spans (one int for all, or one per
        entry). Returns the index (last offset) of the last appended entry; each entry's
        offsets follow the previous one's. Raises NotLeaderError when this node is not the
        leader, ProposalDroppedError (retriable) during a leader transfer or when the
        uncommitted bytes would exceed ``max_uncommitted_bytes``; InvalidRequestError for an
        empty sequence, an offset count < 1 or a count list of the wrong length. Nothing
        changes on error.
        """
        self._require_leader()
        if self._transferee != NO_NODE:
            raise ProposalDroppedError("a leader transfer is in progress")
        items: Sequence[bytes] = [data] if isinstance(data, bytes) else data
        if not items:
            raise InvalidRequestError("nothing to propose")
        if isinstance(offset_count, int):
            counts: Sequence[int] = [offset_count] * len(items)
        else:
            counts = offset_count
            if len(counts) != len(items):
                raise InvalidRequestError("one offset count per entry")
        size = 0
        for item in items:
            size += len(item)
        uncommitted = self._uncommitted_bytes
        if uncommitted and uncommitted + size > self._config.max_uncommitted_bytes:
            raise ProposalDroppedError(
                f"{uncommitted} uncommitted bytes at the leader (max "
                f"{self._config.max_uncommitted_bytes})"
            )
        index = self._log.last_index()
        term = self._term
        entries: list[Entry] = []
        for item, count in zip(items, counts, strict=True):
            if count < 1:
                raise InvalidRequestError("offset_count must be >= 1")
            index += count
            entries.append(Entry(term, index, item, _NORMAL, count))
        self._uncommitted_bytes = uncommitted + size
        self._log.append(entries)
        self._bcast_pending = True
        return index

    # --- leader transfer -------------------------------------------------------------------------

    def transfer_leadership(self, to: int) -> None:
        """Ask the leadership to move to voter ``to``: the leader stops taking proposals, brings
        ``to`` up to date, then sends it TIMEOUT_NOW. Forwarded to the leader from a follower.
        The transfer is abandoned after an election timeout. Raises NotLeaderError when no
        leader is known, InvalidRequestError when ``to`` is not a voter."""
        if to not in self._conf.voters:
            raise InvalidRequestError(f"node {to} is not a voter")
        if self._role is Role.LEADER:
            self._handle_transfer(to)
        elif self._leader != NO_NODE:
            self._msgs.append(Message(_MT.TRANSFER_LEADER, self._leader, self._id, 0, index=to))
        else:
            raise NotLeaderError("no leader known to transfer leadership from")

    def _send_timeout_now(self, to: int) -> None:
        # The target's election bypasses the followers' lease windows: no lease reads until
        # this term ends.
        self._lease_revoked = True
        self._msgs.append(Message(_MT.TIMEOUT_NOW, to, self._id, self._term))

    def _handle_transfer(self, to: int) -> None:
        if to == self._id or to not in self._conf.voters:
            return
        if self._transferee == to:
            return  # already under way
        logger.info("raft node %d: transferring leadership to %d", self._id, to)
        self._transferee = to
        # The transfer must finish within one election timeout, or it is abandoned.
        self._election_elapsed = 0
        pr = self._progress[to]
        if pr.match == self._log.last_index():
            self._send_timeout_now(to)
        else:
            self._maybe_send_append(to, send_if_empty=True)

    # --- reads --------------------------------------------------------------------------------------

    def read_index(self, context: bytes) -> None:
        """Request a linearizable read point. A ReadState(index, context) appears in a later
        Ready once the leader confirmed its leadership; serve the read after applying up to
        ``index``. ``context`` must be non-empty and unique among the GROUP's outstanding
        requests (the leader keys forwarded requests by it: prefix it with the node id).
        Requests are lost when leadership changes (wait with a deadline). Raises
        NotLeaderError when no leader is known; ProposalDroppedError when too many reads are
        pending; InvalidRequestError for an empty context."""
        if not context:
            raise InvalidRequestError("read_index needs a non-empty context")
        if self._role is Role.LEADER:
            if len(self._read_only) + len(self._pending_reads) >= self._config.max_pending_reads:
                raise ProposalDroppedError("too many pending reads")
            self._handle_read_index(self._id, context)
        elif self._leader != NO_NODE:
            self._msgs.append(Message(_MT.READ_INDEX, self._leader, self._id, 0, context=context))
        else:
            raise NotLeaderError("no leader known to serve a read")

    def _handle_read_index(self, requester: int, context: bytes) -> None:
        log = self._log
        if log.term(log.committed) != self._term:
            # Until an entry of this term commits, the leader does not know the commit index
            # of the group (thesis 6.4): hold the request. This holds for a single voter too:
            # a commit index written without fsync may have been lost in a crash, and only
            # committing the new term's no-op teaches it back.
            if len(self._pending_reads) < self._config.max_pending_reads:
                self._pending_reads.append((requester, context))
            return
        if self._conf.voters == frozenset({self._id}):
            self._respond_read(requester, context, log.committed)
            return
        if self.has_lease():
            self._respond_read(requester, context, log.committed)
            return
        if self._read_only.add_request(log.committed, requester, context):
            self._read_only.recv_ack(self._id, context)
            self._bcast_heartbeat(context)

    def _respond_read(self, requester: int, context: bytes, index: int) -> None:
        if requester == self._id:
            self._read_states.append(ReadState(index, context))
        else:
            self._msgs.append(
                Message(
                    _MT.READ_INDEX_RESP,
                    requester,
                    self._id,
                    self._term,
                    index=index,
                    context=context,
                )
            )

    def report_unreachable(self, to: int) -> None:
        """Optional: the transport could not deliver a message to ``to`` (a full send queue, a
        broken stream). A follower in replicate state falls back to probing, so the leader
        stops pipelining into a queue that drops (etcd's ReportUnreachable)."""
        pr = self._progress.get(to)
        if self._role is Role.LEADER and pr is not None and pr.state is _REPLICATE:
            pr.become_probe()

    def report_snapshot(self, to: int, success: bool) -> None:
        """Optional: the transport reports whether a SNAPSHOT to ``to`` was delivered. Either
        way the peer goes back to probing; a success is confirmed by the follower's answer."""
        pr = self._progress.get(to)
        if self._role is not Role.LEADER or pr is None or pr.state is not ProgressState.SNAPSHOT:
            return
        if not success:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the follower's answer or a heartbeat response

    # --- output -------------------------------------------------------------------------------

    def _hard_state(self) -> HardState:
        return HardState(self._term, self._vote, self._log.committed, self._recovering)

    def has_ready(self) -> bool:
        """Whether :meth:`ready` would return a non-empty Ready."""
        log = self._log
        prev = self._prev_hard_state
        return bool(
            self._bcast_pending
            or self._msgs
            or self._heartbeats
            or self._read_states
            or log.has_unstable()
            or log.has_next_committed()
            or prev.term != self._term
            or prev.vote != self._vote
            or prev.recovering != self._recovering
            or prev.commit != log.committed
            or self._prev_soft_state.leader_id != self._leader
            or self._prev_soft_state.role is not self._role
        )

    def ready(self) -> Ready:
        """Everything to persist, send and apply now. Call :meth:`advance` with it before the
        next ``ready()``."""
        assert not self._ready_outstanding, "ready() called again before advance()"
        self._ready_outstanding = True
        if self._bcast_pending:
            self._bcast_pending = False
            if self._role is Role.LEADER:
                self._bcast_append()
        log = self._log
        rd = Ready()
        prev = self._prev_hard_state
        if (
            prev.term != self._term
            or prev.vote != self._vote
            or prev.recovering != self._recovering
        ):
            rd.hard_state = self._hard_state()
            rd.must_sync = True
        elif prev.commit != log.committed:
            rd.hard_state = self._hard_state()
        soft = self._prev_soft_state
        if soft.leader_id != self._leader or soft.role is not self._role:
            soft = SoftState(self._leader, self._role)
            self._prev_soft_state = soft
            rd.soft_state = soft
        rd.snapshot = log.pending_snapshot
        if log.has_unstable():
            rd.truncate_from = log.truncation_point()
            rd.entries = log.unstable_entries()
            rd.must_sync = True
        if self._msgs:
            rd.messages, self._msgs = self._msgs, []
        if self._heartbeats:
            rd.heartbeats = list(self._heartbeats.values())
            self._heartbeats = {}
        if log.has_next_committed():
            committed = log.next_committed_entries(self._config.max_committed_bytes_per_ready)
            rd.committed_entries = committed
            if self._role is Role.LEADER and self._uncommitted_bytes:
                size = 0
                for entry in committed:
                    size += len(entry.data)
                self._uncommitted_bytes = max(0, self._uncommitted_bytes - size)
        if self._read_states:
            rd.read_states, self._read_states = self._read_states, []
        return rd

    def advance(self, ready: Ready) -> None:
        """Acknowledge that ``ready`` was persisted, sent and applied (the I/O order)."""
        assert self._ready_outstanding, "advance() without ready()"
        self._ready_outstanding = False
        log = self._log
        if ready.hard_state is not None:
            self._prev_hard_state = ready.hard_state
        if ready.snapshot is not None:
            log.stable_snapshot_to(ready.snapshot.index)
            log.applied = max(log.applied, ready.snapshot.index)
        if ready.entries:
            last = ready.entries[-1]
            log.stable_to(last.index, last.term)
        if ready.committed_entries:
            log.applied_to(ready.committed_entries[-1].index)
        if self._role is Role.LEADER and ready.entries:
            own = self._progress.get(self._id)
            if (
                own is not None
                and own.maybe_update(log.stable_last_index())
                and self._maybe_commit()
                and self._config.broadcast_commit
            ):
                self._bcast_pending = True
