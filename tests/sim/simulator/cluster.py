"""N Raft cores in one process on the simulated clock and network.

Each node is a :class:`rilke.replication.raft.RaftNode` over a :class:`MemoryStorage` that
stands for its disk. The harness drives every node by the core's I/O contract (types.py):
take a Ready, make its snapshot, truncation, entries and hard state durable (after a simulated
fsync delay; none when ``Ready.must_sync`` is False), THEN send its messages, apply its
committed entries, serve its read states, and ``advance()``. Inputs keep flowing to the node
while a Ready is being written. Disk faults:

- a crash drops the node object and the Ready still being written, so exactly what was not
  yet durable is lost; with ``torn_write_probability`` a prefix of that write survives
  (snapshot, truncation, some entries; never the hard state, written last); a commit-only hard
  state written without an fsync may be lost too; a restart builds a new RaftNode over the
  same storage;
- retention (``compact_every``) drops applied entries below the fsynced commit, so followers
  behind the log start need a snapshot, which carries a payload the follower must get intact.

Every change a node shows is reported to the :class:`SafetyChecker` as it happens:

- after every input (tick, step, propose, ...): the node's term and role (Election Safety; a
  new leader's log is checked against the committed entries through ``log_entries``);
- at every ``ready()``: the entries and truncation (Log Matching, no committed entry removed,
  leaders append-only), the role again (Leader Completeness on the whole log) and the commit
  index (monotonic, agrees with what was committed before); every ``audit_every`` Readies the
  checker's copy of the log is compared with the core's own log;
- when a Ready is durable: the durable hard state (term, vote once per term, durable commit);
  then what the state machine applies (State Machine Safety) and the reads it serves
  (linearizable: a read index covers every write applied anywhere, and every commit, before
  the read was asked).

Clients propose all the time (single entries or batches, spanning 1-3 offsets each) to the node
they believe leads, retry a proposal once the leader that took it is gone, and ask for reads.
Not thread-safe (there is one thread). Time is in simulated milliseconds.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from rilke.errors import RilkeError
from rilke.replication.raft import (
    ConfChange,
    Config,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    RaftNode,
    Ready,
    Role,
)

from .checker import EntryView, SafetyChecker, SafetyViolation
from .faults import FaultEvent, FaultKnobs
from .loop import EventLoop, TimerHandle
from .network import SimNetwork
from .trace import Trace

# A paused node keeps at most this many inputs waiting (a socket buffer); beyond it they drop.
MAX_PAUSED_INBOX = 4096


def describe_message(message: object) -> str:
    """A one-line summary of a core Message for traces."""
    if not isinstance(message, Message):
        return str(message)
    parts = [f"{message.type.value} {message.frm}->{message.to} t{message.term}"]
    if message.index or message.log_term:
        parts.append(f"i{message.index}/lt{message.log_term}")
    if message.entries:
        first, last = message.entries[0], message.entries[-1]
        parts.append(f"e[{first.first_index}..{last.index}]x{len(message.entries)}")
    if message.commit:
        parts.append(f"c{message.commit}")
    if message.reject:
        parts.append(f"REJECT hint={message.reject_hint}/{message.hint_term}")
    if message.snapshot is not None:
        parts.append(f"snap={message.snapshot.index}/{message.snapshot.term}")
    return " ".join(parts)


def snapshot_payload(index: int) -> bytes:
    """The state-machine payload the harness stores with a snapshot at ``index`` (what a
    metadata group would serialize); a follower must receive exactly this with it."""
    return b"state@%d" % index


def entry_view(entry: Entry) -> EntryView:
    """The checker's view of an entry: (index, term, digest of everything else)."""
    return (entry.index, entry.term, (entry.kind, entry.offset_count, entry.data))


@dataclass
class SimNode:
    """The harness's side of one node: its disk, the running core (None when down), and its
    process state. ``incarnation`` grows at every crash so callbacks of a dead incarnation
    (an fsync completing after the crash) are ignored."""

    node_id: int
    storage: MemoryStorage
    raft: RaftNode | None = None
    incarnation: int = 0
    persisting: bool = False
    paused: bool = False
    deferred: deque[Callable[[], None]] = field(default_factory=deque)
    slow_disk: bool = False
    started: bool = False
    tick_handle: TimerHandle | None = None
    seen_term: int = 0
    seen_role: Role | None = None
    applied_index: int = 0
    drift_ms: int = 0
    # The Ready whose writes are on their way to disk (lost, or torn, by a crash).
    writing: Ready | None = None
    # The hard state as of the last fsync: a commit-only hard state written without one
    # (Ready.must_sync False) may be lost by a crash.
    synced_hard: HardState = field(default_factory=HardState)

    @property
    def up(self) -> bool:
        return self.raft is not None


@dataclass
class ClientStats:
    proposed: int = 0
    accepted: int = 0
    refused: int = 0
    committed: int = 0
    retried: int = 0
    max_commit_latency_ms: int = 0


@dataclass
class FaultStats:
    applied: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    conf_changes_committed: int = 0
    transfers: int = 0
    snapshots_sent: int = 0
    compactions: int = 0


class LivenessViolation(AssertionError):  # a failed check, like SafetyViolation
    def __init__(self, message: str) -> None:
        super().__init__(f"Liveness: {message}")
        self.prop = "Liveness"


class Cluster:
    """A simulated cluster of ``knobs.voters`` voters plus ``knobs.spares`` spare nodes.

    Spares start only when a fault adds one as a learner. ``rngs`` come from one seed: the
    caller hands a factory mapping a stream name to a ``random.Random``, so that changing one
    stream's use (removing a fault) leaves the other streams' draws alone.
    """

    def __init__(
        self,
        knobs: FaultKnobs,
        rng_for: Callable[[str], random.Random],
        trace: Trace | None = None,
        election_timeout_ticks: int = 10,
        heartbeat_timeout_ticks: int = 2,
        compact_every: int = 0,
        compact_keep: int = 20,
        config_overrides: dict[str, object] | None = None,
    ) -> None:
        self.knobs = knobs
        self._rng_for = rng_for
        self.trace = trace if trace is not None else Trace(enabled=False)
        self.loop = EventLoop()
        self.checker = SafetyChecker()
        self.network = SimNetwork(
            self.loop,
            rng_for("network"),
            self._deliver,
            knobs.link,
            self.trace,
            describe_message,
        )
        self._fsync_rng = rng_for("fsync")
        self._client_rng = rng_for("client")
        self.election_timeout_ticks = election_timeout_ticks
        self.heartbeat_timeout_ticks = heartbeat_timeout_ticks
        # Retention: every ``compact_every`` applied entries, drop the log up to
        # ``compact_keep`` entries behind the applied index (0 = never).
        self.compact_every = compact_every
        self.compact_keep = compact_keep
        # Core settings pinned by a test (e.g. pre_vote=False to show what PreVote prevents).
        self.config_overrides = dict(config_overrides or {})
        voter_ids = list(range(1, knobs.voters + 1))
        self.initial_conf = ConfState(frozenset(voter_ids))
        self.nodes: dict[int, SimNode] = {}
        for node_id in range(1, knobs.voters + knobs.spares + 1):
            self.nodes[node_id] = SimNode(node_id, MemoryStorage(self.initial_conf))
        self.retired: set[int] = set()  # removed from the group; never re-added
        self.client = ClientStats()
        self.faults = FaultStats()
        # Client bookkeeping: payload -> time first proposed; post-heal ones must commit.
        self._pending: dict[bytes, int] = {}
        self._pending_required: dict[bytes, None] = {}  # ordered, for deterministic reports
        self._retry_at: dict[bytes, int] = {}
        # Which node accepted a pending proposal, in which term (a retry is needed only once that
        # node no longer leads in that term).
        self._accepted: dict[bytes, tuple[int, int, int]] = {}
        # Linearizable reads: context -> (highest committed index, highest applied index, time)
        # when the read was asked. A ReadState's index must be >= both: >= the applied one is
        # linearizability itself (a write a client saw done must be seen); >= the committed
        # one is Raft's read-index guarantee (thesis 6.4), which implies it.
        self._reads: dict[bytes, tuple[int, int, int]] = {}
        self._next_read = 0
        self.max_pending_reads = 32
        self.reads_served = 0
        # Every this many Readies, compare the checker's copy of a node's log with the core's
        # own (so the checks run on what the node really holds).
        self.audit_every = 53
        self._readies = 0
        self._next_payload = 0
        self._client_target = voter_ids[0]
        self.max_pending = 64
        self.healed_at_ms: int | None = None
        self.clients_on = False
        for node_id in voter_ids:
            self.start(node_id)

    # --- node lifecycle --------------------------------------------------------------------

    def record(self, node: int, kind: str, detail: object = "") -> None:
        if self.trace.enabled:
            self.trace.record(self.loop.now_ms, self.loop.steps, node, kind, detail)

    def start(self, node_id: int) -> None:
        """Start (or restart) a node from its durable storage."""
        node = self.nodes[node_id]
        assert node.raft is None
        node.incarnation += 1
        config = Config(
            node_id=node_id,
            voters=tuple(sorted(self.initial_conf.voters)),
            election_timeout_ticks=self.election_timeout_ticks,
            heartbeat_timeout_ticks=self.heartbeat_timeout_ticks,
            max_inflight_msgs=16,
            max_size_per_msg=4096,
        )
        # A learner joining later is created with the group's bootstrap voters too (the core
        # derives its configuration from them plus the CONFIG entries it replays).
        for name, value in self.config_overrides.items():
            setattr(config, name, value)
        rng = self._rng_for(f"node{node_id}/{node.incarnation}")
        storage = node.storage
        if node.started:
            entries = [entry_view(e) for e in storage.all_entries()]
            snap = storage.snapshot()
            hard = storage.hard_state
            self.checker.on_restart(
                node_id, (snap.index, snap.term), entries, hard.term, hard.commit
            )
            self.record(node_id, "restart", f"term={hard.term} commit={hard.commit}")
        else:
            self.record(node_id, "start")
        node.started = True
        node.synced_hard = storage.hard_state
        node.raft = RaftNode(config, storage, rng)
        node.persisting = False
        node.paused = False
        node.deferred.clear()
        node.seen_term, node.seen_role = node.raft.term, node.raft.role
        node.applied_index = storage.snapshot().index
        # Ticks start at a random phase so nodes do not tick in lockstep.
        phase = rng.randint(0, self.knobs.tick_ms - 1)
        # Clock drift: this incarnation's ticks are this much longer (or shorter) than tick_ms.
        jitter = self.knobs.tick_jitter_ms
        node.drift_ms = rng.randint(-jitter, jitter) if jitter else 0
        incarnation = node.incarnation
        node.tick_handle = self.loop.call_later(phase, lambda: self._tick(node_id, incarnation))
        self._pump(node)

    def crash(self, node_id: int) -> None:
        """Kill the node: its in-memory state and any write not yet durable are lost."""
        node = self.nodes[node_id]
        if node.raft is None:
            return
        self.record(node_id, "crash", f"term={node.raft.term} role={node.raft.role.value}")
        if (
            node.writing is not None
            and self._fsync_rng.random() < self.knobs.torn_write_probability
        ):
            self._tear(node, node.writing)
        node.writing = None
        node.raft = None
        node.incarnation += 1
        node.persisting = False
        node.paused = False
        node.deferred.clear()
        if node.tick_handle is not None:
            node.tick_handle.cancel()

    def _tear(self, node: SimNode, rd: Ready) -> None:
        """A crash in the middle of writing ``rd``: a prefix of its writes, in the contract's
        order (snapshot, truncation, entries, hard state), reached the disk; the rest did not.
        The hard state, written last, never does here."""
        storage = node.storage
        steps = self._fsync_rng.randint(0, 3)
        kept = []
        if steps >= 1 and rd.snapshot is not None:
            storage.apply_snapshot(rd.snapshot)
            kept.append("snapshot")
        if steps >= 2 and rd.truncate_from is not None:
            storage.truncate_suffix(rd.truncate_from)
            kept.append(f"truncate {rd.truncate_from}")
        if steps >= 3 and rd.entries:
            count = self._fsync_rng.randint(0, len(rd.entries))
            if count and (rd.truncate_from is None or "truncate" in " ".join(kept)):
                storage.append(list(rd.entries[:count]))
                kept.append(f"{count} of {len(rd.entries)} entries")
        self.record(node.node_id, "torn-write", ", ".join(kept) or "nothing")

    def pause(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if node.raft is not None and not node.paused:
            self.record(node_id, "pause")
            node.paused = True

    def resume(self, node_id: int) -> None:
        node = self.nodes[node_id]
        if not node.paused:
            return
        self.record(node_id, "resume", f"{len(node.deferred)} inputs waiting")
        node.paused = False
        while node.deferred and not node.paused and node.raft is not None:
            node.deferred.popleft()()

    def _when_running(self, node: SimNode, incarnation: int, action: Callable[[], None]) -> None:
        """Run ``action`` on the node now, later if paused, never if it crashed meanwhile."""
        if node.incarnation != incarnation or node.raft is None:
            return
        if node.paused:
            if len(node.deferred) < MAX_PAUSED_INBOX:
                node.deferred.append(action)
            return
        action()

    # --- driving the cores -----------------------------------------------------------------

    def _tick(self, node_id: int, incarnation: int) -> None:
        node = self.nodes[node_id]
        if node.incarnation != incarnation or node.raft is None:
            return
        node.tick_handle = self.loop.call_later(
            self.knobs.tick_ms + node.drift_ms, lambda: self._tick(node_id, incarnation)
        )
        if node.paused:
            return  # a paused process's clock does not run: its ticks are simply missed
        node.raft.tick()
        self.after_input(node)

    def _deliver(self, src: int, dst: int, message: object) -> None:
        node = self.nodes[dst]
        if node.raft is None:
            return
        assert isinstance(message, Message)
        incarnation = node.incarnation

        def step() -> None:
            raft = node.raft
            assert raft is not None
            if self.trace.enabled:
                self.record(dst, "recv", describe_message(message))
            raft.step(message)
            self.after_input(node)

        self._when_running(node, incarnation, step)

    def after_input(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        term, role = raft.term, raft.role
        if term != node.seen_term or role != node.seen_role:
            node.seen_term, node.seen_role = term, role
            self.record(node.node_id, "role", f"{role.value} term={term} leader={raft.leader_id}")
            self.checker.observe_role(
                node.node_id, term, role.value, term_at=lambda index: self._term_at(node, index)
            )
        self._pump(node)

    def _term_at(self, node: SimNode, index: int) -> int | None:
        """The term of the node's entry ending at ``index`` as the core sees its log (persisted
        or not); the snapshot term at its log start; None if it has no entry ending there."""
        raft = node.raft
        assert raft is not None
        snap = node.storage.snapshot()
        if index <= snap.index:
            return snap.term if index == snap.index else -1  # -1: compacted, covered
        if index > raft.last_index:
            return None
        entries = raft.log_entries(index, index)
        if entries and entries[0].index == index:
            return entries[0].term
        return None

    def _pump(self, node: SimNode) -> None:
        """Take the node's next Ready if it has one and none is being persisted."""
        raft = node.raft
        if raft is None or node.persisting or node.paused or not raft.has_ready():
            return
        rd = raft.ready()
        node_id = node.node_id
        # The node's in-memory log now holds this Ready's entries: show them to the checker.
        if rd.snapshot is not None:
            self.checker.on_snapshot(
                node_id, rd.snapshot.index, rd.snapshot.term, keep_suffix=False
            )
            self.record(node_id, "snapshot", f"{rd.snapshot.index}/{rd.snapshot.term}")
        if rd.truncate_from is not None or rd.entries:
            if rd.truncate_from is not None:
                truncate_after = rd.truncate_from - 1
            else:
                truncate_after = rd.entries[0].first_index - 1
            self.checker.on_write(
                node_id, truncate_after, [entry_view(e) for e in rd.entries], raft.role.value
            )
            if rd.truncate_from is not None:
                self.record(node_id, "truncate", f"from {rd.truncate_from}")
        self.checker.observe_role(node_id, raft.term, raft.role.value)
        self.checker.observe_commit(node_id, raft.commit_index)
        self._readies += 1
        if self._readies % self.audit_every == 0:
            self.audit_log(node)
        node.persisting = True
        node.writing = rd
        incarnation = node.incarnation
        if rd.must_sync:
            delay = self._fsync_rng.randint(self.knobs.fsync_min_ms, self.knobs.fsync_max_ms)
            if node.slow_disk:
                delay += self.knobs.slow_fsync_ms
        else:
            delay = 0  # a commit-only hard state: written without an fsync
        self.loop.call_later(
            delay, lambda: self._when_running(node, incarnation, lambda: self._persisted(node, rd))
        )

    def _persisted(self, node: SimNode, rd: Ready) -> None:
        """The Ready's writes are durable now: keep them, send, apply, advance."""
        raft = node.raft
        assert raft is not None
        node_id = node.node_id
        storage = node.storage
        storage.persist_ready(rd)
        node.writing = None
        hard = storage.hard_state
        if rd.must_sync:
            # The fsync makes everything written before it durable too.
            node.synced_hard = hard
            self.checker.observe_durable(node_id, hard.term, hard.vote, hard.commit)
        for message in rd.messages:
            if message.snapshot is not None:
                self.faults.snapshots_sent += 1
            self.network.send(node_id, message.to, message)
        for message in rd.heartbeats:
            self.network.send(node_id, message.to, message)
        if rd.snapshot is not None:
            if rd.snapshot.data != self.snapshot_data(rd.snapshot.index):
                raise SafetyViolation(
                    "Snapshot payload",
                    f"n{node_id} installs snapshot {rd.snapshot.index} with payload "
                    f"{rd.snapshot.data!r}, not the one its leader's storage provided",
                )
            self.checker.observe_applied_snapshot(node_id, rd.snapshot.index)
            node.applied_index = rd.snapshot.index
        if rd.committed_entries:
            self.checker.observe_applied(node_id, [entry_view(e) for e in rd.committed_entries])
            for entry in rd.committed_entries:
                self._on_apply(node, entry)
        if rd.read_states:
            self._serve_reads(node, rd)
        raft.advance(rd)
        node.persisting = False
        self._maybe_compact(node)
        self.after_input(node)

    def _on_apply(self, node: SimNode, entry: Entry) -> None:
        node.applied_index = entry.index
        if entry.kind is EntryKind.CONFIG:
            self.record(node.node_id, "conf-applied", entry.data.decode())
            if node.raft is not None and node.raft.role is Role.LEADER:
                self.faults.conf_changes_committed += 1
        elif entry.kind is EntryKind.NORMAL:
            made = self._pending.pop(entry.data, None)
            self._retry_at.pop(entry.data, None)
            self._accepted.pop(entry.data, None)
            if made is not None:
                latency = self.loop.now_ms - made
                self.client.committed += 1
                self.client.max_commit_latency_ms = max(self.client.max_commit_latency_ms, latency)
                self._pending_required.pop(entry.data, None)

    def snapshot_data(self, index: int) -> bytes:
        """The state-machine payload of a snapshot at ``index`` (a subclass running a real
        state machine returns that machine's state as of ``index``)."""
        return snapshot_payload(index)

    def audit_log(self, node: SimNode) -> None:
        """Right after a ``ready()``, the checker's copy of the node's log must be the core's
        log exactly (every unstable entry was just handed out)."""
        raft = node.raft
        assert raft is not None
        start, model = self.checker.log_of(node.node_id)
        real = [entry_view(e) for e in raft.log_entries(start + 1, raft.last_index)]
        if model != real or (model[-1][0] if model else start) != raft.last_index:
            first_diff = next(
                (i for i, (a, b) in enumerate(zip(model, real, strict=False)) if a != b),
                min(len(model), len(real)),
            )
            raise SafetyViolation(
                "Ready contract",
                f"n{node.node_id}'s entries handed out in Readies differ from its log: from "
                f"position {first_diff}, Readies gave {model[first_diff : first_diff + 2]} "
                f"but its log holds {real[first_diff : first_diff + 2]} (last index "
                f"{raft.last_index}, log start {start})",
            )

    def _maybe_compact(self, node: SimNode) -> None:
        """Retention: drop old entries the state machine has applied (followers behind the
        new log start then need a snapshot)."""
        if not self.compact_every:
            return
        storage = node.storage
        # Only what a crash cannot take back: the fsynced commit, not a commit-only hard state
        # written without an fsync.
        target = min(node.applied_index, node.synced_hard.commit)
        entries = storage.all_entries()
        if len(entries) < self.compact_every + self.compact_keep:
            return
        conf = storage.snapshot().conf
        index = 0
        for entry in entries[: len(entries) - self.compact_keep]:
            if entry.index > target:
                break
            if entry.kind is EntryKind.CONFIG:
                conf = ConfChange.decode(entry.data).apply_to(conf)
            index = entry.index
        if index <= storage.snapshot().index:
            return
        storage.compact(index, conf, self.snapshot_data(index))
        self.faults.compactions += 1
        self.checker.on_snapshot(node.node_id, index, storage.snapshot().term, keep_suffix=True)
        self.record(node.node_id, "compact", f"log start -> {index}")

    # --- what the cluster looks like -------------------------------------------------------

    def up_nodes(self) -> list[SimNode]:
        return [n for n in self.nodes.values() if n.raft is not None]

    def leader(self) -> SimNode | None:
        """The running leader of the highest term, if any."""
        best: SimNode | None = None
        for node in self.up_nodes():
            raft = node.raft
            assert raft is not None
            if raft.role is Role.LEADER and (
                best is None or raft.term > (best.raft.term if best.raft else 0)
            ):
                best = node
        return best

    def member_conf(self) -> ConfState:
        """The configuration as the current leader (else the most advanced node) sees it."""
        leader = self.leader()
        if leader is not None and leader.raft is not None:
            return leader.raft.conf
        best = max(self.up_nodes(), key=lambda n: n.raft.commit_index if n.raft else 0)
        assert best.raft is not None
        return best.raft.conf

    # --- clients ---------------------------------------------------------------------------

    def start_clients(self) -> None:
        if not self.clients_on:
            self.clients_on = True
            self.loop.call_later(self.knobs.client_interval_ms, self._client_tick)

    def _client_tick(self) -> None:
        self.loop.call_later(self.knobs.client_interval_ms, self._client_tick)
        now = self.loop.now_ms
        if self.healed_at_ms is not None:
            for payload in self._pending_required:
                made = self._pending[payload]
                if now - made > self.knobs.commit_bound_ms:
                    raise LivenessViolation(
                        f"proposal {payload!r} made at {made}ms, after healing at "
                        f"{self.healed_at_ms}ms, is not committed at {now}ms"
                    )
        # Retry pending proposals whose retry time came (a client re-sending after a timeout),
        # a few per tick so a backlog drains without flooding the leader.
        retried = 0
        for payload, next_retry in self._retry_at.items():
            if retried >= 8:
                break
            if next_retry <= now:
                self._retry_at[payload] = now + self.knobs.client_retry_ms
                if self._still_in_progress(payload):
                    continue
                self.client.retried += 1
                retried += 1
                self._propose(payload)
        if self._next_payload % 4 == 0:
            self._read()
        if len(self._pending) < self.max_pending:
            count = 1
            if self.knobs.batch_probability and (
                self._client_rng.random() < self.knobs.batch_probability
            ):
                count = self._client_rng.randint(2, 4)
            payloads = []
            for _ in range(count):
                payload = b"p%d" % self._next_payload
                self._next_payload += 1
                self._pending[payload] = now
                self._retry_at[payload] = now + self.knobs.client_retry_ms
                if self.healed_at_ms is not None:
                    self._pending_required[payload] = None
                self.client.proposed += 1
                payloads.append(payload)
            self._propose(payloads[0] if count == 1 else payloads)

    def _propose(self, payload: bytes | list[bytes]) -> None:
        """Propose one entry, or several in one call, on the node the client believes leads."""
        node = self.nodes.get(self._client_target)
        if node is None or node.raft is None or node.paused:
            self._pick_client_target(None)
            self.client.refused += 1
            return
        raft = node.raft
        name = payload.decode() if isinstance(payload, bytes) else b",".join(payload).decode()
        try:
            if isinstance(payload, bytes):
                index = raft.propose(payload, 1 + self._client_rng.randrange(3))
            else:
                counts = [1 + self._client_rng.randrange(3) for _ in payload]
                index = raft.propose(payload, counts)
        except RilkeError as exc:
            self.client.refused += 1
            self._pick_client_target(raft.leader_id or None)
            self.record(node.node_id, "refused", f"{name} {type(exc).__name__}")
            self.after_input(node)
            return
        self.client.accepted += 1
        for one in [payload] if isinstance(payload, bytes) else payload:
            self._accepted[one] = (node.node_id, raft.term, node.incarnation)
        self.record(node.node_id, "propose", f"{name} -> index {index}")
        self.after_input(node)

    def _still_in_progress(self, payload: bytes) -> bool:
        """Whether the leader that accepted ``payload`` still leads in that term: then the entry
        is in its log for good (a leader only appends) and a retry would only duplicate it."""
        accepted = self._accepted.get(payload)
        if accepted is None:
            return False
        node_id, term, incarnation = accepted
        node = self.nodes[node_id]
        raft = node.raft
        # Same incarnation too: a single voter that crashed before its term was durable may
        # lead the same term again, without the entries it had accepted.
        return (
            raft is not None
            and node.incarnation == incarnation
            and raft.role is Role.LEADER
            and raft.term == term
        )

    def _read(self) -> None:
        """Ask the client's node for a linearizable read point."""
        now = self.loop.now_ms
        for context, (_, _, asked) in list(self._reads.items()):
            if now - asked > 10 * self.knobs.commit_bound_ms:
                del self._reads[context]  # the node crashed or dropped it: forget it
        node = self.nodes.get(self._client_target)
        if len(self._reads) >= self.max_pending_reads or node is None or node.raft is None:
            return
        if node.paused:
            return
        context = b"r%d" % self._next_read
        self._next_read += 1
        try:
            node.raft.read_index(context)
        except RilkeError:
            return
        self._reads[context] = (self.checker.max_committed(), self.checker.max_applied, now)
        self.after_input(node)

    def _serve_reads(self, node: SimNode, rd: Ready) -> None:
        for state in rd.read_states:
            asked = self._reads.pop(state.context, None)
            if asked is None:
                continue
            self.reads_served += 1
            self.record(node.node_id, "read", f"{state.context.decode()} at {state.index}")
            committed, applied, _ = asked
            if state.index < applied:
                raise SafetyViolation(
                    "Linearizable read",
                    f"n{node.node_id} serves read {state.context.decode()} at index "
                    f"{state.index}, but a state machine had applied {applied} (a write a "
                    "client saw done) before the read was asked",
                )
            if state.index < committed:
                raise SafetyViolation(
                    "Read index",
                    f"n{node.node_id} serves read {state.context.decode()} at index "
                    f"{state.index}, but {committed} was committed before the read was asked "
                    f"(applied then: {applied})",
                )

    def _pick_client_target(self, hint: int | None) -> None:
        if hint is not None and hint in self.nodes:
            self._client_target = hint
        else:
            self._client_target = self._client_rng.choice(sorted(self.nodes))

    # --- faults ----------------------------------------------------------------------------

    def apply_fault(self, event: FaultEvent) -> None:
        """Start ``event`` now and schedule its end (see :mod:`.nemesis`)."""
        from .nemesis import apply_fault

        apply_fault(self, event)

    def heal(self) -> None:
        """End every fault: links up, no loss, crashed nodes restarted, paused ones resumed."""
        self.record(-1, "heal")
        self.network.heal()
        self.network.calm()
        for node in self.nodes.values():
            node.slow_disk = False
            if node.started and node.raft is None:
                self.start(node.node_id)
            elif node.paused:
                self.resume(node.node_id)
        self.healed_at_ms = self.loop.now_ms
        # Proposals still pending from before the heal must commit too (the client retries).
        for payload in self._pending:
            self._pending[payload] = self.loop.now_ms
            self._retry_at[payload] = self.loop.now_ms
            self._pending_required[payload] = None

    # --- running ---------------------------------------------------------------------------

    def run_for(self, ms: int) -> None:
        self.loop.run_until(self.loop.now_ms + ms)

    def run_until(self, predicate: Callable[[], bool], timeout_ms: int) -> bool:
        """Run until ``predicate()`` holds (checked after every step) or ``timeout_ms`` passes."""
        if predicate():
            return True
        return self.loop.run_until(self.loop.now_ms + timeout_ms, predicate)

    def propose_on(self, node_id: int, payloads: Sequence[bytes]) -> list[int]:
        """Propose directly on one node (scripted tests); returns the indexes. Raises what the
        core raises."""
        node = self.nodes[node_id]
        assert node.raft is not None
        out = []
        for payload in payloads:
            self._pending[payload] = self.loop.now_ms
            out.append(node.raft.propose(payload))
        self.after_input(node)
        return out

    def committed_payloads(self) -> set[bytes]:
        """The data of every committed NORMAL entry known to the checker (via applied)."""
        return {
            data
            for node in self.up_nodes()
            if node.raft is not None
            for data in self._applied_data(node)
        }

    def _applied_data(self, node: SimNode) -> list[bytes]:
        raft = node.raft
        assert raft is not None
        snap = node.storage.snapshot().index
        hi = min(node.applied_index, raft.last_index)
        if hi <= snap:
            return []
        return [
            e.data
            for e in raft.log_entries(snap + 1, hi)
            if e.kind is EntryKind.NORMAL and e.index <= hi
        ]

    def is_pending(self, payload: bytes) -> bool:
        return payload in self._pending
