"""RaftRuntime: drives every Raft core of a node on the broker's asyncio loop.

One ticker for all groups (every ``tick_s``); a group with input (a tick, a message, a
proposal) is marked and handled in the next round. A round takes the Ready of every marked
group and handles them in the core's order, for all groups together:

1. persist: each group's snapshot, truncation, entries and hard state go to its storage, then
   ONE worker-thread job fsyncs every log and writes every changed ``raft.state`` (one group
   commit window for the node);
2. send: every group's messages and heartbeats go to the transport, which sends whatever one
   peer gets in one round as one payload (heartbeats of all groups coalesced); a leader's go
   out before the window's fsyncs instead (Raft thesis 10.2.1: it syncs while its followers
   do; its own entries count toward a commit only once synced), a follower's after them;
3. apply: committed entries to each group's ``apply``, snapshots to ``on_snapshot``,
   proposals' futures resolved, leadership changes to ``on_leader``;
4. advance every core.

A group whose persist or flush fails (ENOSPC, an I/O error) STALLS, as a Raft core should: its
Ready is kept and nothing more of it is sent (a leader's appends went out before its fsync,
which is safe: its followers' syncs may commit those entries, and its own retry rewrites the
same ones), applied or acknowledged (the core is not advanced, so it does not count the
entries as its own either: no vote, no append answer, no commit goes out), proposals are
refused with KafkaStorageError (retriable, naming the path), and the same Ready is persisted
again with backoff (``STALL_RETRY_*``) after :meth:`PartitionRaftStorage.rewind` cut back what
the failed attempt left in the log, until the disk takes it; then the group carries on with
no entry lost and no gap. Logged once when it stalls and once when it recovers.

Quiescence (as etcd's and Redpanda's): a leader whose group is idle (``can_quiesce``: every
member caught up, all committed and applied, nothing pending) for ``QUIESCE_AFTER_TICKS``
ticks while every member's node is alive sends its followers one last heartbeat flagged
"quiesce" and stops ticking the group, so an idle group sends nothing of its own. A follower
that gets that heartbeat from its leader stops ticking too. The node-level heartbeat of the
transport (one empty frame per peer per tick) stands in for all of them: while the leader's
node is heard from, its quiet followers do not start elections. A quiet group wakes (ticks
again) on any proposal or campaign, on any message of the group other than a heartbeat
answer, and when a member's node is no longer heard from within the liveness timeout (so
followers elect a new leader, and an isolated leader's CheckQuorum steps it down).

What the node wiring and the replicated partition use, besides proposals: membership changes
one server at a time (:meth:`RaftRuntime.add_learner`, :meth:`RaftRuntime.promote_learner`,
:meth:`RaftRuntime.remove_member`), leader transfer, a linearizable read point
(:meth:`RaftRuntime.read_index`: a heartbeat round confirms the leadership, then the wait for
this node's apply), a status per group with the leader's view of every member (in-sync
replicas, :meth:`GroupStatus.in_sync`), and :meth:`RaftRuntime.remove_group`, which releases
everything the group holds on this node.

Runs on one event loop; not thread-safe. Every wait has a deadline (``timeout_s``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from rilke import timeline
from rilke.errors import KafkaStorageError, NotLeaderError, ReplicationError
from rilke.replication import offsets
from rilke.replication.raft.node import RaftNode
from rilke.replication.raft.types import (
    NO_NODE,
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    EntryKind,
    Message,
    MessageType,
    PeerStatus,
    Ready,
    Role,
    Snapshot,
)
from rilke.replication.raft_storage import PartitionRaftStorage, StorageFlush
from rilke.replication.transport import Transport
from rilke.replication.wire import WireItem

logger = logging.getLogger(__name__)

DEFAULT_TICK_S = 0.1
"""One Raft tick: with the core's defaults, heartbeats every 100 ms, elections after 1-2 s."""
QUIESCE_AFTER_TICKS = 3
"""Idle ticks before a leader quiets its group: enough heartbeats for followers to learn the
commit index of the last entry."""
DEFAULT_PROPOSE_TIMEOUT_S = 10.0
DEFAULT_READ_TIMEOUT_S = 5.0
STALL_RETRY_FIRST_S = 0.05
STALL_RETRY_MAX_S = 1.0
"""A stalled group's persist is retried after these, doubling (a disk freed is used within 1 s)."""

Apply = Callable[[Sequence[Entry]], None]
OnLeader = Callable[[int, int], None]
"""(leader id or NO_NODE, term), when this node's view of the group's leader changes."""
OnSnapshot = Callable[[Snapshot], None]
RunFlushes = Callable[[list[StorageFlush]], Awaitable[None]]
"""Runs one window's flushes off the loop and returns once all ran; raises the first OSError
(after all ran). The default runs them on worker threads; the simulation injects its own."""


class GroupRemovedError(ReplicationError):
    """The group was removed (or the runtime closed) before the proposal committed."""

    retriable = True


@dataclass(frozen=True)
class GroupStatus:
    """A snapshot of one group's state on this node."""

    role: Role
    term: int
    leader_id: int
    commit_index: int
    applied_index: int
    last_index: int
    quiesced: bool
    voters: frozenset[int] = frozenset()
    learners: frozenset[int] = frozenset()
    progress: Mapping[int, PeerStatus] = field(default_factory=dict)
    """The leader's view of every member, itself included (``match`` is how far that
    member's log is known to match the leader's); empty off the leader."""
    storage_error: str = ""
    """Non-empty while the group is stalled: why its storage refused the last persist."""
    present: bool = True
    """False for a group this node does not hold (every other field then says nothing)."""

    def in_sync(self, max_lag: int) -> frozenset[int]:
        """The voters in sync as the leader sees them: itself, and every voter heard from
        within the last election timeout whose match is at most ``max_lag`` offsets behind
        the leader's last index. Empty off the leader (a follower does not know)."""
        if self.role is not Role.LEADER:
            return frozenset()
        out = set()
        for node, pr in self.progress.items():
            if node not in self.voters:
                continue
            if node == self.leader_id or (
                pr.recent_active and pr.match >= self.last_index - max_lag
            ):
                out.add(node)
        return frozenset(out)


@dataclass
class _Group:
    name: str
    node: RaftNode
    storage: PartitionRaftStorage
    config: Config
    apply: Apply
    on_leader: OnLeader | None
    on_snapshot: OnSnapshot | None
    members: frozenset[int] = frozenset()
    quiesced: bool = False
    idle_ticks: int = 0
    proposals: dict[int, tuple[int, asyncio.Future[int]]] = field(default_factory=dict)
    """Raft index -> (term, future) of this node's proposals not yet committed."""
    reads: dict[bytes, asyncio.Future[int]] = field(default_factory=dict)
    """read_index context -> future, until the group hands out its ReadState."""
    read_waits: list[tuple[int, asyncio.Future[int]]] = field(default_factory=list)
    """(read index, future) of confirmed reads waiting for this node to apply that far."""
    stall: _Stall | None = None
    """Set while the group's storage refuses its Ready (see the module docstring)."""


@dataclass
class _Stall:
    ready: Ready
    """The Ready that failed to persist: persisted again (the core is not advanced past it)."""
    error: str
    since: float
    retry_at: float
    delay_s: float = STALL_RETRY_FIRST_S
    attempts: int = 1


class RaftRuntime:
    """Many Raft groups of one node over one transport (see the module docstring)."""

    def __init__(
        self,
        node_id: int,
        transport: Transport,
        *,
        tick_s: float = DEFAULT_TICK_S,
        rng: random.Random | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        monotonic: Callable[[], float] = time.monotonic,
        run_flushes: RunFlushes | None = None,
    ) -> None:
        """``clock_ms`` (wall clock, for timestamps), ``monotonic`` (liveness and stall
        retries) and ``run_flushes`` (the fsyncs of a window) default to the real ones; the
        deterministic simulation (tests/sim/replication) passes virtual ones."""
        self.node_id = node_id
        self.transport = transport
        self.tick_s = tick_s
        self._rng = rng or random.Random()
        self._clock_ms = clock_ms
        self._monotonic = monotonic
        self._run_flushes = run_flushes or _flush_on_threads
        self._groups: dict[str, _Group] = {}
        self._active: set[str] = set()  # groups that tick
        self._quiet_by_peer: defaultdict[int, set[str]] = defaultdict(set)
        self._marked: set[str] = set()
        self._stalled: set[str] = set()
        self._notices: defaultdict[int, list[WireItem]] = defaultdict(list)
        """Quiesce notices of this tick, per peer: sent as one payload each."""
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self._read_seq = 0
        self.rounds = 0
        self.windows = 0

    # --- groups -------------------------------------------------------------------------------

    def add_group(
        self,
        name: str,
        storage: PartitionRaftStorage,
        config: Config,
        apply: Apply,
        *,
        on_leader: OnLeader | None = None,
        on_snapshot: OnSnapshot | None = None,
    ) -> None:
        """Start driving group ``name`` (a restart replays from ``storage``). ``config.node_id``
        must be this node's id. ``apply`` gets committed entries in order (data entries and
        Raft's own), on the loop; it must not block. Raises ValueError for a name in use."""
        if name in self._groups:
            raise ValueError(f"raft group {name!r} is already running on node {self.node_id}")
        if config.node_id != self.node_id:
            raise ValueError(f"config.node_id {config.node_id} is not node {self.node_id}")
        node = RaftNode(config, storage, random.Random(self._rng.getrandbits(64)))
        group = _Group(name, node, storage, config, apply, on_leader, on_snapshot)
        group.members = node.conf.voters | node.conf.learners
        self._groups[name] = group
        self._active.add(name)
        self._mark(name)

    def remove_group(self, name: str) -> None:
        """Stop driving ``name`` and release all it holds here: its pending proposals,
        membership changes and reads fail with GroupRemovedError, it leaves the tick, quiet
        and notice sets, a round under way neither sends nor applies for it any more, and its
        storage writes its state file (``storage.close``). The caller closes the log. Unknown
        names are ignored (idempotent)."""
        group = self._groups.pop(name, None)
        if group is None:
            return
        self._forget(group, GroupRemovedError(f"raft group {name!r} was removed"))
        group.storage.close()

    def _forget(self, group: _Group, exc: Exception) -> None:
        name = group.name
        self._groups.pop(name, None)
        self._active.discard(name)
        self._marked.discard(name)
        self._stalled.discard(name)
        for names in self._quiet_by_peer.values():
            names.discard(name)
        for peer, items in self._notices.items():
            self._notices[peer] = [item for item in items if item.group != name]
        futures = [future for _term, future in group.proposals.values()]
        futures += group.reads.values()
        futures += [future for _index, future in group.read_waits]
        group.proposals, group.reads, group.read_waits = {}, {}, []
        for future in futures:
            if not future.done():
                future.set_exception(exc)

    def has_group(self, name: str) -> bool:
        return name in self._groups

    def status(self, name: str) -> GroupStatus:
        """The group's state here; ``present`` is False for a group this node does not hold,
        ``storage_error`` non-empty while it is stalled."""
        group = self._groups.get(name)
        if group is None:
            return GroupStatus(Role.FOLLOWER, 0, NO_NODE, 0, 0, 0, False, present=False)
        node = group.node
        conf = node.conf
        return GroupStatus(
            node.role,
            node.term,
            node.leader_id,
            node.commit_index,
            node.applied_index,
            node.last_index,
            group.quiesced,
            conf.voters,
            conf.learners,
            node.peer_status() if node.role is Role.LEADER else {},
            group.stall.error if group.stall is not None else "",
        )

    def node(self, name: str) -> RaftNode:
        """The core of ``name`` (read-only use: peer status, conf)."""
        return self._groups[name].node

    @property
    def groups(self) -> list[str]:
        return list(self._groups)

    @property
    def quiesced_count(self) -> int:
        return sum(1 for group in self._groups.values() if group.quiesced)

    # --- inputs -------------------------------------------------------------------------------

    def propose(
        self,
        name: str,
        batches: Sequence[bytes],
        offset_counts: Sequence[int],
        *,
        timeout_s: float = DEFAULT_PROPOSE_TIMEOUT_S,
    ) -> asyncio.Future[int]:
        """Append record batches (``offset_counts[i]`` records each) on the leader of ``name``.

        Returns a future of the Raft index of the last batch, resolved once it commits (the
        storage offsets below ``offsets.log_end_offset(index)`` are then committed). It fails
        with NotLeaderError if another leader's entry commits at that index, with
        TimeoutError after ``timeout_s``, and with GroupRemovedError. Raises at once (nothing
        appended) NotLeaderError, ProposalDroppedError, InvalidRequestError, KeyError, and
        KafkaStorageError (retriable) while the group is stalled."""
        group = self._groups[name]
        self._refuse_if_stalled(group)
        index = group.node.propose(list(batches), list(offset_counts))
        return self._track(group, index, timeout_s)

    def _refuse_if_stalled(self, group: _Group) -> None:
        if group.stall is not None:
            raise KafkaStorageError(
                f"raft group {group.name} on node {self.node_id}: its storage at "
                f"{group.storage.log.directory} refused the last write ({group.stall.error}); "
                "writes are refused until it takes writes again"
            )

    def _track(self, group: _Group, index: int, timeout_s: float) -> asyncio.Future[int]:
        """A future of the entry at ``index`` (just appended by this leader) committing."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        group.proposals[index] = (group.node.term, future)
        self._wake(group)
        self._mark(group.name)
        handle = loop.call_later(timeout_s, _expire, future, group.name, index, timeout_s)
        future.add_done_callback(lambda _f: handle.cancel())
        return future

    # --- membership (one server at a time) ---------------------------------------------------

    def propose_conf_change(
        self, name: str, change: ConfChange, *, timeout_s: float = DEFAULT_PROPOSE_TIMEOUT_S
    ) -> asyncio.Future[int]:
        """Append a CONFIG entry on the leader of ``name``; a future of its index, resolved
        once it commits (the change is then in force on the leader; every member applies it
        when it learns the commit). Fails as :meth:`propose`'s future does. Raises at once
        NotLeaderError, ProposalDroppedError (retriable: another change is uncommitted, the
        leader has not committed an entry of its term, a transfer is under way, the learner
        to promote has not caught up), InvalidRequestError (a change that makes no sense),
        KeyError. The transport must know the node's address first (``add_peer``)."""
        group = self._groups[name]
        self._refuse_if_stalled(group)
        index = group.node.propose_conf_change(change)
        return self._track(group, index, timeout_s)

    def add_learner(
        self, name: str, node_id: int, *, timeout_s: float = DEFAULT_PROPOSE_TIMEOUT_S
    ) -> asyncio.Future[int]:
        """Add ``node_id`` as a non-voting member (it gets the log, it does not vote)."""
        change = ConfChange(ConfChangeType.ADD_LEARNER, node_id)
        return self.propose_conf_change(name, change, timeout_s=timeout_s)

    def promote_learner(
        self, name: str, node_id: int, *, timeout_s: float = DEFAULT_PROPOSE_TIMEOUT_S
    ) -> asyncio.Future[int]:
        """Make learner ``node_id`` a voter (refused, retriable, until it caught up)."""
        change = ConfChange(ConfChangeType.ADD_VOTER, node_id)
        return self.propose_conf_change(name, change, timeout_s=timeout_s)

    def remove_member(
        self, name: str, node_id: int, *, timeout_s: float = DEFAULT_PROPOSE_TIMEOUT_S
    ) -> asyncio.Future[int]:
        """Remove voter or learner ``node_id`` (not the leader: transfer leadership first)."""
        change = ConfChange(ConfChangeType.REMOVE_NODE, node_id)
        return self.propose_conf_change(name, change, timeout_s=timeout_s)

    # --- reads --------------------------------------------------------------------------------

    async def read_index(self, name: str, *, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> int:
        """A linearizable read point of ``name``, on any member: the leader confirms it still
        leads with a heartbeat round (a follower asks the leader), and this returns once THIS
        node has applied up to the returned index, so what its state machine holds now is at
        least as new as every write committed before the call. Raises NotLeaderError when no
        leader is known or the leader changed while the read waited (retriable),
        TimeoutError after ``timeout_s``, GroupRemovedError, ProposalDroppedError (too many
        reads pending), KeyError for an unknown group."""
        group = self._groups[name]
        self._read_seq += 1
        context = f"{self.node_id}:{self._read_seq}".encode()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._wake(group)
        group.node.read_index(context)  # raises before anything is registered
        group.reads[context] = future
        self._mark(name)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"raft group {name}: no read index within {timeout_s} s") from None
        finally:
            group.reads.pop(context, None)
            group.read_waits = [(i, f) for i, f in group.read_waits if f is not future]
            if not future.done():
                future.cancel()

    def campaign(self, name: str) -> None:
        group = self._groups[name]
        self._wake(group)
        group.node.campaign()
        self._mark(name)

    def transfer_leadership(self, name: str, to: int) -> None:
        group = self._groups[name]
        self._wake(group)
        group.node.transfer_leadership(to)
        self._mark(name)

    def receive(self, peer: int, items: list[WireItem]) -> None:
        """What the transport delivers from ``peer`` (on the loop)."""
        for name, msg, quiesce in items:
            group = self._groups.get(name)
            if group is None:
                continue  # a group this node does not (yet, or any more) hold
            if timeline.ENABLED:
                _mark_received(name, msg)
            node = group.node
            if quiesce:
                self._step(group, msg)
                if node.role is Role.FOLLOWER and node.leader_id == peer and node.term == msg.term:
                    self._quiet(group, (peer,))
                continue
            if group.quiesced and msg.type is not MessageType.HEARTBEAT_RESP:
                self._wake(group)
            self._step(group, msg)

    def _step(self, group: _Group, msg: Message) -> None:
        try:
            group.node.step(msg)
        except (ReplicationError, AssertionError, ValueError) as exc:
            logger.warning(
                "raft node %d group %s: dropped %s from node %d: %s",
                self.node_id,
                group.name,
                msg.type.value,
                msg.frm,
                exc,
            )
            return
        self._mark(group.name)

    # --- quiescence -----------------------------------------------------------------------------

    def _quiet(self, group: _Group, peers: Sequence[int]) -> None:
        group.quiesced = True
        group.idle_ticks = 0
        self._active.discard(group.name)
        for peer in peers:
            self._quiet_by_peer[peer].add(group.name)

    def _wake(self, group: _Group) -> None:
        if not group.quiesced:
            return
        group.quiesced = False
        group.idle_ticks = 0
        self._active.add(group.name)
        for names in self._quiet_by_peer.values():
            names.discard(group.name)

    def _maybe_quiet_leader(self, group: _Group, now: float) -> bool:
        """Quiet an idle leader's group (see the module docstring); whether it did."""
        node = group.node
        peers = [m for m in group.members if m != self.node_id]
        if not node.can_quiesce() or not all(self.transport.is_alive(p, now) for p in peers):
            group.idle_ticks = 0
            return False
        group.idle_ticks += 1
        if group.idle_ticks < QUIESCE_AFTER_TICKS:
            return False
        for peer in peers:
            notice = Message(
                MessageType.HEARTBEAT, peer, self.node_id, node.term, commit=node.commit_index
            )
            self._notices[peer].append(WireItem(group.name, notice, True))
        self._quiet(group, peers)
        return True

    # --- the loop -------------------------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._tick_loop()), loop.create_task(self._run_loop())]

    async def close(self) -> None:
        """Stop ticking and handling; fail pending proposals; write every state file."""
        self._closed = True
        self._wakeup.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for name in list(self._groups):
            self.remove_group(name)

    def _mark(self, name: str) -> None:
        self._marked.add(name)
        self._wakeup.set()

    async def _tick_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.tick_s)
            self.tick()

    def tick(self) -> None:
        """One tick of every active group, quiescence decisions, the node heartbeat."""
        now = self._monotonic()
        transport = self.transport
        for peer, names in self._quiet_by_peer.items():
            if names and not transport.is_alive(peer, now):
                for name in list(names):
                    group = self._groups.get(name)
                    if group is not None:
                        logger.debug("raft group %s: node %d not heard, waking", name, peer)
                        self._wake(group)
        groups = self._groups
        for name in list(self._active):
            group = groups[name]
            # Decided before the tick, which queues the next heartbeats (pending sends).
            if group.node.role is Role.LEADER and self._maybe_quiet_leader(group, now):
                continue
            group.node.tick()
            self._marked.add(name)
        self._marked |= self._stalled  # their retries are due by time, not input
        self._wakeup.set()
        for peer, items in self._notices.items():
            transport.send(peer, items)  # a lost notice only leaves the follower ticking
        self._notices.clear()
        transport.heartbeat()

    async def _run_loop(self) -> None:
        while not self._closed:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self.run_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("raft node %d: a round failed", self.node_id)

    async def run_round(self) -> None:
        """Handle the Ready of every marked group (see the module docstring)."""
        marked, self._marked = self._marked, set()
        readies: list[tuple[_Group, Ready]] = []
        now_ms = self._clock_ms()
        now = self._monotonic()
        for name in marked:
            group = self._groups.get(name)
            if group is None:
                continue
            stall = group.stall
            if stall is not None:
                if now < stall.retry_at:
                    continue
                rd = stall.ready
                try:
                    group.storage.rewind(rd)  # what the failed attempt left in the log
                    group.storage.persist(rd, now_ms=now_ms)
                except Exception as exc:
                    # Nothing of this Ready may be sent or acknowledged; the core must not
                    # think it durable: it stays un-advanced, the Ready kept for the retry.
                    self._stall(group, rd, exc, now)
                    continue
            elif not group.node.has_ready():
                continue
            else:
                rd = group.node.ready()
                try:
                    group.storage.persist(rd, now_ms=now_ms)
                except Exception as exc:
                    self._stall(group, rd, exc, now)
                    continue
            readies.append((group, rd))
        if not readies:
            return
        if timeline.ENABLED:
            _mark_readies(readies, "written")
        self.rounds += 1
        flushes: list[tuple[_Group, StorageFlush]] = []
        kept: list[tuple[_Group, Ready]] = []
        for group, rd in readies:
            try:
                flush = group.storage.begin_flush()
            except OSError as exc:
                self._stall(group, rd, exc, now)
                continue
            if flush is not None:
                flushes.append((group, flush))
            kept.append((group, rd))
        readies = kept
        sent_early: set[int] = set()
        if flushes:
            # A leader's messages go out before its own fsync (Raft thesis 10.2.1): its
            # followers write and sync the entries while it syncs them. Safe: the core counts
            # the leader's own entries only at advance(), after this window, so a commit
            # before then needs a quorum of followers that synced them; and a leader's term and
            # vote were synced when it became a candidate. A follower's answers wait for the
            # window: an append answer says the entries are durable.
            early = [(g, rd) for g, rd in readies if g.node.role is Role.LEADER]
            if early:
                self._send(early)
                sent_early = {id(rd) for _g, rd in early}
                if timeline.ENABLED:
                    _mark_sent(early)
            self.windows += 1
            try:
                await self._run_flushes([f for _g, f in flushes])
            except OSError as exc:
                # Which group's files failed is not known: every group of the window stalls
                # (persisted again, synced again); the others of the round go on.
                failed = {id(g) for g, _f in flushes}
                for group, flush in flushes:
                    group.storage.abort_flush(flush)
                for group, rd in readies:
                    if id(group) in failed and self._groups.get(group.name) is group:
                        self._stall(group, rd, exc, now)
                readies = [(g, rd) for g, rd in readies if id(g) not in failed]
            else:
                for group, flush in flushes:
                    group.storage.end_flush(flush)
        # A group removed while its flush ran neither sends nor applies any more.
        readies = [(g, rd) for g, rd in readies if self._groups.get(g.name) is g]
        for group, _rd in readies:
            if group.stall is not None:
                self._recovered(group, now)
        if timeline.ENABLED:
            _mark_readies(readies, "synced")
        unsent = [(g, rd) for g, rd in readies if id(rd) not in sent_early]
        self._send(unsent)
        if timeline.ENABLED:
            _mark_sent(unsent)
        for group, rd in readies:
            if self._groups.get(group.name) is not group:
                continue  # removed by a callback of this round
            self._apply(group, rd)
            if self._groups.get(group.name) is group:
                group.node.advance(rd)
                if group.node.has_ready():
                    self._mark(group.name)

    def _stall(self, group: _Group, rd: Ready, exc: Exception, now: float) -> None:
        """``rd`` failed to persist or sync: keep it for a retry with backoff (see the module
        docstring). Logged once per episode."""
        stall = group.stall
        error = f"{type(exc).__name__}: {exc}"
        if stall is None:
            logger.error(
                "raft node %d group %s: persisting failed (%s); the group stalls (sends, "
                "acknowledges and applies nothing, refuses writes) and retries until its "
                "storage at %s takes the writes",
                self.node_id,
                group.name,
                error,
                group.storage.log.directory,
            )
            group.stall = _Stall(rd, error, now, now + STALL_RETRY_FIRST_S)
            self._stalled.add(group.name)
            self._wake(group)  # a quiet group does not tick: keep it ticking for the retries
            return
        stall.error = error
        stall.attempts += 1
        stall.delay_s = min(stall.delay_s * 2, STALL_RETRY_MAX_S)
        stall.retry_at = now + stall.delay_s
        logger.debug(
            "raft group %s: persist attempt %d failed: %s", group.name, stall.attempts, error
        )

    def _recovered(self, group: _Group, now: float) -> None:
        stall = group.stall
        assert stall is not None
        logger.warning(
            "raft node %d group %s: its storage takes writes again after %.1f s (%d failed "
            "attempts); the group carries on",
            self.node_id,
            group.name,
            now - stall.since,
            stall.attempts,
        )
        group.stall = None
        self._stalled.discard(group.name)

    def _send(self, readies: list[tuple[_Group, Ready]]) -> None:
        per_peer: defaultdict[int, list[WireItem]] = defaultdict(list)
        for group, rd in readies:
            for msg in rd.messages:
                per_peer[msg.to].append(WireItem(group.name, msg))
            for msg in rd.heartbeats:
                per_peer[msg.to].append(WireItem(group.name, msg))
        for peer, items in per_peer.items():
            if not self.transport.send(peer, items):
                for name in {item.group for item in items}:
                    target = self._groups.get(name)
                    if target is not None:
                        target.node.report_unreachable(peer)

    def _apply(self, group: _Group, rd: Ready) -> None:
        if rd.snapshot is not None and group.on_snapshot is not None:
            group.on_snapshot(rd.snapshot)
        if rd.committed_entries:
            if timeline.ENABLED and group.node.role is Role.LEADER:
                _mark(group.name, "leader_committed", [e.index for e in rd.committed_entries])
            group.apply(rd.committed_entries)
            if any(e.kind is EntryKind.CONFIG for e in rd.committed_entries):
                group.members = group.node.conf.voters | group.node.conf.learners
            proposals = group.proposals
            if proposals:
                for entry in rd.committed_entries:
                    pending = proposals.pop(entry.index, None)
                    if pending is None:
                        continue
                    term, future = pending
                    if future.done():
                        continue
                    if entry.term == term:
                        future.set_result(entry.index)
                    else:
                        future.set_exception(
                            NotLeaderError(
                                f"raft group {group.name}: entry {entry.index} was replaced by "
                                f"a leader of term {entry.term}"
                            )
                        )
        self._serve_reads(group, rd)
        if rd.soft_state is not None:
            group.members = group.node.conf.voters | group.node.conf.learners
            if group.reads:
                # A read asked of the old leader (or forwarded to it) is lost with it.
                reads, group.reads = group.reads, {}
                for future in reads.values():
                    if not future.done():
                        future.set_exception(
                            NotLeaderError(f"raft group {group.name}: the leader changed")
                        )
            leader = rd.soft_state.leader_id
            if leader != NO_NODE:
                logger.info(
                    "raft node %d group %s: leader %d at term %d",
                    self.node_id,
                    group.name,
                    leader,
                    group.node.term,
                )
            if group.on_leader is not None:
                group.on_leader(leader, group.node.term)

    def _serve_reads(self, group: _Group, rd: Ready) -> None:
        """Confirmed read points wait for this node's apply; resolve those it reached."""
        for rs in rd.read_states:
            future = group.reads.pop(rs.context, None)
            if future is not None and not future.done():
                group.read_waits.append((rs.index, future))
        if not group.read_waits:
            return
        applied = group.node.applied_index
        if rd.committed_entries:
            applied = max(applied, rd.committed_entries[-1].index)
        waiting = []
        for index, future in group.read_waits:
            if future.done():
                continue
            if index <= applied:
                future.set_result(index)
            else:
                waiting.append((index, future))
        group.read_waits = waiting


def _mark(group: str, event: str, indexes: Sequence[int]) -> None:
    """Timeline marks (rilke.timeline) of a partition group's entries, keyed by each entry's
    last storage offset: the base offset of a one-record batch, as the timeline's benchmark
    sends. The metadata group and other internal groups (``__...``) are left out."""
    if group.startswith("__"):
        return
    now = timeline.now_ns()
    for index in indexes:
        if index >= 1:
            timeline.mark(event, offsets.last_offset(index), now)


def _role(group: _Group) -> str:
    return "leader" if group.node.role is Role.LEADER else "follower"


def _mark_readies(readies: list[tuple[_Group, Ready]], what: str) -> None:
    """``leader_<what>`` / ``follower_<what>`` for every entry the Readies write."""
    for group, rd in readies:
        if rd.entries:
            _mark(group.name, f"{_role(group)}_{what}", [e.index for e in rd.entries])


def _mark_sent(readies: list[tuple[_Group, Ready]]) -> None:
    """``leader_sent`` for entries sent to followers, ``follower_answered`` for the index a
    follower's accepting answer names."""
    for group, rd in readies:
        for msg in rd.messages:
            if msg.type is MessageType.APPEND and msg.entries:
                _mark(group.name, "leader_sent", [e.index for e in msg.entries])
            elif msg.type is MessageType.APPEND_RESP and not msg.reject:
                _mark(group.name, "follower_answered", [msg.index])


def _mark_received(group: str, msg: Message) -> None:
    """``follower_received`` for entries that arrive, ``leader_heard`` for an accepting answer."""
    if msg.type is MessageType.APPEND and msg.entries:
        _mark(group, "follower_received", [e.index for e in msg.entries])
    elif msg.type is MessageType.APPEND_RESP and not msg.reject:
        _mark(group, "leader_heard", [msg.index])


FLUSH_THREADS = 8
"""Groups' flushes of one window run on up to this many threads: each is a few fsyncs (the
log, the state file and its directory) of its own files, independent of the others', and a
window of hundreds of groups (a topic's partitions electing at once) done one after the
other would hold every group's sends (the metadata group's heartbeats too) for seconds."""
PARALLEL_FLUSH_MIN = 4
_FLUSH_POOL = ThreadPoolExecutor(FLUSH_THREADS, thread_name_prefix="raft-flush")  # lazy threads


def _run_flushes(flushes: list[StorageFlush]) -> None:
    """On a worker thread: every flush of the window; raises the first OSError once all
    have run (an error aborts the whole window)."""
    if len(flushes) < PARALLEL_FLUSH_MIN:
        for flush in flushes:
            flush.run()
        return
    futures = [_FLUSH_POOL.submit(flush.run) for flush in flushes]
    for future in futures:
        future.exception()  # wait for all before raising any
    for future in futures:
        future.result()


async def _flush_on_threads(flushes: list[StorageFlush]) -> None:
    """The default :data:`RunFlushes`: the window on the loop's default executor."""
    await asyncio.get_running_loop().run_in_executor(None, _run_flushes, flushes)


def _expire(future: asyncio.Future[int], name: str, index: int, timeout_s: float) -> None:
    if not future.done():
        future.set_exception(
            TimeoutError(f"raft group {name}: entry {index} not committed within {timeout_s} s")
        )
