"""ReplicatedPartition: a partition replicated by its own Raft group, whose Raft log IS its log.

It implements :class:`rilke.partition.interface.Partition`, so the Produce, Fetch and
ListOffsets handlers treat it as they treat a LocalPartition. One Raft group per partition
(named ``"<topic_id>/<partition>"``), driven by the node's one :class:`RaftRuntime` over a
:class:`~rilke.replication.partition_storage.ReplicatedStorage` (the PartitionLog itself):

- The leader checks each produced batch (header, CRC, the rules of a produced batch, producer
  sequence) and proposes the same bytes as one entry per batch. The storage writes them with
  base offset and partition leader epoch = Raft term stamped (outside the CRC, so every
  replica stores the same bytes); followers get those bytes through the runtime and check
  them again (CRC, length, record count, offset continuity) before they write them, and cut
  their log back where Raft says it conflicts.
- acks=0 answers at once, acks=1 once the leader wrote the entry, acks=-1 once it is committed:
  on a quorum of replicas, each of which fsynced it before acknowledging (the runtime syncs
  every group's writes of a round in one group-commit window before sending anything).
- The high watermark is the commit index as applied here (:mod:`rilke.replication.offsets`):
  reads never go past it, on the leader or a follower, and it never goes backwards.
- Not the leader: :class:`NotLeaderError` with ``leader_id``. Losing leadership fails every
  acknowledgement still waiting (the write may or may not commit: a retry of an idempotent
  producer is then answered with its original offset, never written twice).
- Producer state is fed from every batch written to the log, on every replica (a leader's at
  proposal, so pipelined batches of one producer follow each other), and rebuilt from the log
  when Raft cuts the log or resets it to a snapshot.
- Retention and compaction run on every replica by the same rules, through the one
  maintenance path; the log start they leave is the Raft snapshot, so a follower behind it (or
  a replica whose data dir was wiped) is reset to start its log there.

Threading: on the broker's event loop thread only (the runtime's loop), as LocalPartition.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path

from rilke.errors import (
    InvalidRequestError,
    LogClosedError,
    NotLeaderError,
    OffsetOutOfRangeError,
)
from rilke.partition.group_flush import FlushSlots, GroupFlush
from rilke.partition.interface import (
    ACKS_ALL,
    ACKS_LEADER,
    ACKS_NONE,
    VALID_ACKS,
    AppendResult,
    FetchedData,
    Leadership,
    Partition,
    PartitionOffsets,
    PartitionSpec,
)
from rilke.partition.maintenance import Maintenance
from rilke.partition.producer_state import ProducerState
from rilke.partition.subscribers import Subscribers
from rilke.partition.validation import check_leader_epoch, validate_batches
from rilke.records.header import read_header
from rilke.replication import offsets
from rilke.replication.held_groups import HeldGroups
from rilke.replication.host import ReplicationHost
from rilke.replication.partition_storage import ReplicatedStorage
from rilke.replication.raft.types import NO_NODE, Config, Entry, EntryKind, Ready, Role, Snapshot
from rilke.replication.runtime import GroupRemovedError, RaftRuntime
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

__all__ = ["REPLICA_LAG_MAX_OFFSETS", "ReplicatedPartition", "ReplicatedPartitionFactory"]

log = logging.getLogger(__name__)

REPLICA_LAG_MAX_OFFSETS = 4000
"""A follower is in sync while the leader heard from it within an election timeout (or from
its node within the transport's liveness timeout) and its match is at most this many
offsets behind the leader's log end (Kafka's old ``replica.lag.max.messages`` default)."""


def group_name(topic_id: str, partition: int) -> str:
    """The Raft group of a partition: ``"<topic_id>/<partition>"``."""
    return f"{topic_id}/{partition}"


class ReplicatedPartition:
    """One partition replicated by its Raft group (see the module docstring).

    ``runtime`` drives the group, which this partition adds on construction and removes on
    :meth:`close`; ``replicas`` are its voters. ``raft_config`` gives the core's settings
    (its node id, voters and applied index are set here).

    A node that is not one of ``replicas`` is joining through a reassignment: its group
    starts as no member (it cannot campaign) until the leader adds it as a learner, and the
    CONFIG entries it replicates turn ``replicas`` (the group's voters when the move began)
    into the group's configuration. The same holds on restart: every membership change is
    in the log, and each one sets a node's role outright, so replaying them over the
    replicas the metadata holds gives the configuration (a member no change names was there
    from the start).
    """

    def __init__(
        self,
        topic: str,
        partition: int,
        log_: PartitionLog,
        config: LogConfig,
        *,
        runtime: RaftRuntime,
        group: str,
        replicas: tuple[int, ...],
        state_dir: Path | None = None,
        flush_slots: FlushSlots | None = None,
        raft_config: Config | None = None,
        known_epoch: int = 0,
        held: HeldGroups | None = None,
    ) -> None:
        """``known_epoch``: the group's leader epoch (Raft term) as the metadata records it;
        when > 0 and this replica finds no Raft state, its state was lost (a wiped data dir)
        and it recovers before it votes (``Config.storage_lost``). ``held``: the node's
        record of the groups whose state it held; a group recorded there without Raft state
        lost it too, whatever the metadata view says (it may not be caught up yet)."""
        node_id = runtime.node_id
        if not replicas:
            raise ValueError(f"{topic}-{partition} has no replicas")
        if node_id not in replicas:
            log.info(
                "node %d %s-%d: joining the group of replicas %s (a reassignment)",
                node_id,
                topic,
                partition,
                list(replicas),
            )
        self.topic = topic
        self.partition = partition
        self.group = group
        self.replicas = replicas
        self._node_id = node_id
        self._log = log_
        self._runtime = runtime
        self._name = f"{topic}-{partition}"
        self._closed = False
        self._config = config
        # Snapshots only of a committed log: an uncommitted tail may be cut (FINDINGS 3).
        self._producers = ProducerState(
            log_, state_dir, snapshot_limit=lambda: self._high_watermark
        )
        # The log end producer state covers: batches below it are in the table (a leader
        # records its proposals at once, before the storage writes them).
        self._producers_end = log_.log_end_offset
        # Entries the table holds ahead of the written log: base offset -> term. A write at
        # such an offset of another term means they were replaced before being written (no
        # truncation is reported for entries never written): the table follows the log again.
        self._ahead: dict[int, int] = {}
        # Flushes of maintenance (rolled segments, flush.ms); the runtime syncs every write.
        self._flusher: GroupFlush[AppendResult] = GroupFlush(self._name, log_, flush_slots)
        # Retention and compaction on every replica by the same rules, below this replica's
        # high watermark; compaction keeps emptied batches, so every Raft entry keeps its
        # index and term and a follower is sent the compacted batches as they are.
        self._maintenance = Maintenance(
            self._name,
            log_,
            self._flusher,
            self._producers,
            lambda: self._closed,
            high_watermark=lambda: self._high_watermark,
        )
        storage = ReplicatedStorage.open(log_, state_dir=state_dir)
        assert isinstance(storage, ReplicatedStorage)  # open builds its own class
        self._storage = storage
        # The replicas as the log start's configuration (see the class docstring): what a
        # member behind retention's log start is sent holds every voter.
        storage.seed_conf(replicas)
        self.update_config(config)
        self._storage.observer = self._written
        # What this replica's log holds committed (retention may have moved the log start past
        # a commit index the state file had not caught up with: that start is committed).
        commit = max(self._storage.hard_state.commit, self._storage.first_index() - 1)
        # High watermark: the log end offset of the commit index applied here; only grows.
        self._high_watermark = max(
            log_.log_start_offset, min(offsets.log_end_offset(commit), log_.log_end_offset)
        )
        # acks=1 waiters: (log end offset that covers it, future, result), ascending.
        self._written_waiters: deque[tuple[int, asyncio.Future[AppendResult], AppendResult]] = (
            deque()
        )
        # acks=-1 waiters: (high watermark that covers it, future, result), ascending.
        self._commit_waiters: deque[tuple[int, asyncio.Future[AppendResult], AppendResult]] = (
            deque()
        )
        self._subscribers: Subscribers[()] = Subscribers()
        self._leadership_subscribers: Subscribers[Leadership] = Subscribers()
        self._leader_id = NO_NODE
        self._term = self._storage.hard_state.term
        self._isr: tuple[int, ...] = ()
        base = raft_config or Config(node_id)
        # No state file for a group that already had a leader: this replica may have voted in
        # a term it no longer remembers, and lost entries it acknowledged.
        self._held = held
        recorded = held is not None and held.holds(group)
        if held is not None and not storage.fresh and not recorded:
            held.record(group)  # a state file from before the record (a crash between)
        lost = storage.fresh and (known_epoch > 0 or recorded)
        if lost:
            log.warning(
                "node %d %s-%d: no Raft state for a group %s (data dir wiped?):"
                " not voting until a leader has caught this replica up",
                node_id,
                topic,
                partition,
                f"at leader epoch {known_epoch}"
                if known_epoch > 0
                else "this node recorded as held",
            )
        elif held is not None and storage.fresh:
            storage.on_first_state = lambda: held.record(group)
        core_config = replace(
            base, node_id=node_id, voters=replicas, applied=commit, storage_lost=lost
        )
        runtime.add_group(
            group,
            self._storage,
            core_config,
            self._apply,
            on_leader=self._on_leader,
            on_snapshot=self._on_snapshot,
        )
        if replicas[0] == node_id and self._term == 0 and self._log.log_end_offset == 0:
            # A new group: its preferred leader (the first replica) stands at once, so new
            # partitions are led where placement spread them rather than where the election
            # timeouts happen to fire first (leader balancing would move them there later,
            # a leader change each). If the others are not up yet, Raft's timeouts take over.
            runtime.campaign(group)

    # --- leadership ----------------------------------------------------------------------------

    @property
    def leadership(self) -> Leadership:
        leader = self._leader_id if self._leader_id != NO_NODE else None
        return Leadership(leader, self._term, self.replicas, self._in_sync())

    @property
    def leader_epoch(self) -> int:
        return self._term

    @property
    def is_leader(self) -> bool:
        return not self._closed and self._role() is Role.LEADER

    @property
    def known_leadership(self) -> Leadership:
        """:attr:`leadership` as last told to the leadership subscribers, without asking the
        runtime: the in-sync replicas as of the last leader change or maintenance pass."""
        leader = self._leader_id if self._leader_id != NO_NODE else None
        return Leadership(leader, self._term, self.replicas, self._isr)

    @property
    def believes_leader(self) -> bool:
        """Whether this replica leads as far as its leadership callbacks said (no runtime
        lookup: cheap enough to ask of every partition at every broker heartbeat)."""
        return not self._closed and self._leader_id == self._node_id

    def _role(self) -> Role | None:
        try:
            return self._runtime.node(self.group).role
        except KeyError:  # the runtime closed (or removed the group)
            return None

    def _in_sync(self) -> tuple[int, ...]:
        """The replicas in sync as this node sees them. Only a leader knows its followers: a
        follower names the leader alone (nobody while there is none)."""
        node = None
        if self._leader_id == self._node_id:
            try:
                node = self._runtime.node(self.group)
            except KeyError:  # the runtime closed (or removed the group)
                node = None
        if node is None or node.role is not Role.LEADER:
            return (self._leader_id,) if self._leader_id != NO_NODE else ()
        last = node.last_index
        transport = self._runtime.transport
        # Heard by the group since its last CheckQuorum, or its node heard within the
        # transport's liveness timeout: the group's own flag alone is cleared at every
        # CheckQuorum, and an in-sync set read just then would shrink and grow back.
        return tuple(
            replica
            for replica, status in node.peer_status().items()
            if replica == self._node_id
            or (
                (status.recent_active or transport.is_alive(replica))
                and last - status.match <= REPLICA_LAG_MAX_OFFSETS
            )
        )

    def subscribe_leadership(self, callback: Callable[[Leadership], None]) -> Callable[[], None]:
        return self._leadership_subscribers.add(callback)

    def _notify_leadership(self) -> None:
        value = self.leadership
        self._isr = value.in_sync_replicas
        self._leadership_subscribers.notify(value)

    def check_leader_epoch(self, epoch: int | None) -> None:
        """KIP-320 (:func:`rilke.partition.validation.check_leader_epoch`) against this
        replica's epoch."""
        check_leader_epoch(self._name, self._term, epoch)

    def _on_leader(self, leader: int, term: int) -> None:
        was_leader = self._leader_id == self._node_id
        old_term = self._term
        self._leader_id, self._term = leader, term
        if was_leader and (leader != self._node_id or term != old_term):
            # Deposed (even if elected again since: its log may have been cut meanwhile).
            self._deposed()
        log.info(
            "node %d %s (group %s): leader %s at epoch %d",
            self._node_id,
            self._name,
            self.group,
            leader if leader != NO_NODE else "unknown",
            term,
        )
        self._notify_leadership()

    def _deposed(self) -> None:
        """This node lost the leadership: nothing waiting may be acknowledged by it now."""
        error = NotLeaderError(
            f"{self._name}: node {self._node_id} is no longer the leader",
            leader_id=self._leader_id if self._leader_id != NO_NODE else None,
        )
        self._fail_waiting(error)
        if self._producers_end > self._log.log_end_offset:
            # Proposals not yet written may never be: producer state follows the log again.
            self._rebuild_producers()

    def _not_leader(self) -> NotLeaderError:
        leader = self._leader_id if self._leader_id not in (NO_NODE, self._node_id) else None
        return NotLeaderError(
            f"{self._name}: node {self._node_id} is not the leader (leader: "
            f"{leader if leader is not None else 'unknown'})",
            leader_id=leader,
        )

    def _closing(self) -> NotLeaderError:
        """For appends still waiting when this replica stops: retriable, at another replica."""
        return NotLeaderError(
            f"{self._name}: node {self._node_id} stopped before the write was acknowledged"
        )

    # --- writes --------------------------------------------------------------------------------

    def update_config(self, config: LogConfig) -> None:
        """Apply a topic's new config. Durability is Raft's (every write is fsynced before it
        is acknowledged to the leader, unless ``write.caching``), so the log is given no
        flush.messages of its own."""
        self._config = config
        self._log.update_config(replace(config, flush_messages=None))
        self._storage.write_caching = config.write_caching

    def append(self, records: bytes, acks: int) -> asyncio.Future[AppendResult]:
        if self._closed:
            raise LogClosedError(f"partition {self._name} is closed")
        if acks not in VALID_ACKS:
            raise InvalidRequestError(f"acks must be 0, 1 or -1, got {acks}")
        if self._role() is not Role.LEADER:
            raise self._not_leader()
        checked = validate_batches(records, self._config.max_message_bytes)
        headers = checked.headers
        self._record_unwritten()
        duplicate = self._producers.check(headers)
        future: asyncio.Future[AppendResult] = asyncio.get_running_loop().create_future()
        if duplicate is not None:
            # A retry of batches written here before: answered with the original offset once
            # that is as far as the retry asks (the original may still be on its way).
            result = AppendResult(duplicate, -1, -1, self._log.log_start_offset, duplicate=True)
            self._wait(acks, duplicate + 1, future, result)
            return future
        data = checked.data
        if len(headers) == 1:
            batches = [data]
        else:
            batches = []
            pos = 0
            for header in headers:
                batches.append(data[pos : pos + header.size])
                pos += header.size
        counts = [header.last_offset_delta + 1 for header in headers]
        try:
            committed = self._runtime.propose(self.group, batches, counts)
        except NotLeaderError:
            raise self._not_leader() from None  # nothing appended
        node = self._runtime.node(self.group)
        end = offsets.log_end_offset(node.last_index)
        first = end - sum(counts)
        self._producers.apply(headers, first)
        base, term = first, node.term
        for count in counts:
            self._ahead[base] = term
            base += count
        self._producers_end = end
        result = AppendResult(first, end - 1, -1, self._log.log_start_offset)
        committed.add_done_callback(partial(self._proposal_done, future))
        self._wait(acks, end, future, result)
        return future

    def _proposal_done(
        self, future: asyncio.Future[AppendResult], committed: asyncio.Future[int]
    ) -> None:
        """The runtime's outcome of a proposal. Success is read from the high watermark (in
        :meth:`_advance_high_watermark`); a failure (its entry replaced by another leader's,
        the runtime's deadline, the group removed) fails the append's future if it waits."""
        error = None if committed.cancelled() else committed.exception()
        if error is None or future.done():
            return
        if isinstance(error, NotLeaderError):
            error = self._not_leader()
        elif isinstance(error, GroupRemovedError):
            error = self._closing()
        future.set_exception(error)

    def _wait(
        self, acks: int, end: int, future: asyncio.Future[AppendResult], result: AppendResult
    ) -> None:
        """Resolve ``future`` with ``result`` once offsets below ``end`` are as ``acks`` asks."""
        if acks == ACKS_NONE:
            future.set_result(result)
        elif acks == ACKS_LEADER:
            if self._log.log_end_offset >= end:
                future.set_result(result)
            else:
                self._written_waiters.append((end, future, result))
        else:
            assert acks == ACKS_ALL
            if self._high_watermark >= end:
                future.set_result(result)
            else:
                self._commit_waiters.append((end, future, result))

    def _fail_waiting(self, error: BaseException) -> None:
        for waiters in (self._written_waiters, self._commit_waiters):
            while waiters:
                _, future, _ = waiters.popleft()
                if not future.done():
                    future.set_exception(error)

    @staticmethod
    def _release(
        waiters: deque[tuple[int, asyncio.Future[AppendResult], AppendResult]], reached: int
    ) -> None:
        while waiters and waiters[0][0] <= reached:
            _, future, result = waiters.popleft()
            if not future.done():
                future.set_result(result)

    # --- what the runtime hands back -------------------------------------------------------------

    def _written(self, ready: Ready) -> None:
        """The storage wrote ``ready`` (before its fsync): follow it with producer state and
        release acks=1 waiters whose entries it holds now."""
        plog = self._log
        if ready.snapshot is not None:
            self._rebuild_producers(-1)  # a new log: no snapshot of the old one holds
        elif ready.truncate_from is not None:
            self._rebuild_producers(offsets.truncation_offset(ready.truncate_from))
        elif ready.entries:
            table = self._producers.table
            ahead = self._ahead
            replaced = -1
            for entry in ready.entries:
                base = offsets.base_offset(entry.first_index)
                if base >= self._producers_end:
                    if entry.kind is EntryKind.NORMAL:
                        table.record(read_header(entry.data), base)
                elif ahead.pop(base, entry.term) != entry.term and replaced < 0:
                    replaced = base
            if replaced >= 0:
                # What the table held from ``replaced`` on was replaced by another leader's
                # entries before it was written: follow the log as it is now.
                self._rebuild_producers(replaced)
            else:
                self._producers_end = max(self._producers_end, plog.log_end_offset)
        if self._written_waiters:
            self._release(self._written_waiters, plog.log_end_offset)

    def _record_unwritten(self) -> None:
        """Leader, before it checks a new append: the core's entries beyond what the table
        covers (proposed before a rebuild of the table, not yet written) go into it first, so
        that a retry of one of them is answered as a duplicate, and they are not skipped
        when written. Nothing to do (one comparison) in the common case."""
        node = self._runtime.node(self.group)
        end = offsets.log_end_offset(node.last_index)
        if self._producers_end >= end:
            return
        table = self._producers.table
        for entry in node.log_entries(offsets.raft_index(self._producers_end), node.last_index):
            base = offsets.base_offset(entry.first_index)
            if base < self._producers_end:
                continue
            if entry.kind is EntryKind.NORMAL:
                table.record(read_header(entry.data), base)
            self._ahead[base] = entry.term
        self._producers_end = end

    def _rebuild_producers(self, truncated_to: int | None = None) -> None:
        """Producer state from the log as it is (cut back to ``truncated_to``, if given)."""
        self._producers.rebuild(truncated_to)
        self._producers_end = self._log.log_end_offset
        self._ahead.clear()

    def _apply(self, entries: Sequence[Entry]) -> None:
        """Committed entries, in order (written and fsynced on a quorum): the high watermark
        moves to the log end after the last."""
        self._advance_high_watermark(offsets.log_end_offset(entries[-1].index))

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        """The log was reset to start after ``snapshot``: everything before it is committed."""
        log.info(
            "node %d %s: log reset to start at offset %d (term %d)",
            self._node_id,
            self._name,
            offsets.log_end_offset(snapshot.index),
            snapshot.term,
        )
        self._advance_high_watermark(offsets.log_end_offset(snapshot.index))

    def _advance_high_watermark(self, high_watermark: int) -> None:
        high_watermark = min(high_watermark, self._log.log_end_offset)
        if high_watermark <= self._high_watermark:
            return
        self._high_watermark = high_watermark
        if self._commit_waiters:
            self._release(self._commit_waiters, high_watermark)
        self._subscribers.notify()

    # --- reads ---------------------------------------------------------------------------------

    def read(self, offset: int, max_bytes: int) -> FetchedData:
        """Whole batches from ``offset``, never past the high watermark (on any replica): none
        for an offset at or past it within the log. OffsetOutOfRangeError outside [log start,
        log end]."""
        if self._closed:
            raise LogClosedError(f"partition {self._name} is closed")
        if offset < 0:
            raise OffsetOutOfRangeError(f"fetch offset {offset} is negative")
        high_watermark = self._high_watermark
        if high_watermark <= offset <= self._log.log_end_offset:
            # Not committed yet (as far as this replica knows): nothing to read, not an error.
            return FetchedData(b"", high_watermark, high_watermark, self._log.log_start_offset)
        result = self._log.read(offset, max_bytes, max_offset=high_watermark)
        return FetchedData(
            result.records,
            high_watermark,
            high_watermark,
            result.log_start_offset,
            result.next_offset,
        )

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    @property
    def log(self) -> PartitionLog:
        return self._log

    def offsets(self) -> PartitionOffsets:
        return PartitionOffsets(
            self._log.log_start_offset, self._high_watermark, self._log.log_end_offset
        )

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        found: tuple[int, int] | None = self._log.offset_for_timestamp(timestamp_ms)
        if found is not None and found[0] >= self._high_watermark:
            return None
        return found

    def size_bytes(self) -> int:
        size: int = self._log.size_bytes()
        return size

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    # --- lifecycle -----------------------------------------------------------------------------

    async def maintain(self, now_ms: int) -> None:
        """One pass of the node's maintenance path (retention on every replica by the same
        rules); the log start it leaves becomes the Raft log start. Tells the leadership's
        subscribers when the in-sync replicas changed."""
        await self._maintenance.run(now_ms)
        if not self._closed:
            self._storage.follow_log_start()
            if self._in_sync() != self._isr:
                self._notify_leadership()

    def close(self) -> None:
        """Stop the group (its state file written, the log flushed), snapshot producer state,
        fail every acknowledgement still waiting. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._runtime.remove_group(self.group)
            if not self._log.closed:
                self._flusher.flush()
                self._producers.write_snapshot()
        finally:
            self._flusher.close()
            self._fail_waiting(self._closing())

    def forget_state(self) -> None:
        """Remove the producer state snapshot and this node's record of the group (the
        topic is being deleted)."""
        self._producers.forget()
        if self._held is not None:
            self._held.forget(self.group)


class ReplicatedPartitionFactory:
    """A :data:`~rilke.partition.interface.PartitionFactory` of replicated partitions on
    ``host``: each spec's ``replicas`` are its group's voters, ``group`` its Raft group's name
    (default ``"<topic>/<partition>"``). Raises ValueError for a spec without replicas or
    one that does not name this node."""

    def __init__(
        self,
        host: ReplicationHost,
        node_id: int,
        *,
        flush_slots: FlushSlots | None = None,
        raft_config: Config | None = None,
        held: HeldGroups | None = None,
    ) -> None:
        if host.runtime.node_id != node_id:
            raise ValueError(f"the host is node {host.runtime.node_id}, not {node_id}")
        self.host = host
        self.node_id = node_id
        self._flush_slots = flush_slots
        self._raft_config = raft_config
        self._held = held

    def __call__(self, spec: PartitionSpec) -> Partition:
        if not spec.replicas:
            raise ValueError(
                f"{spec.topic}-{spec.partition}: a replicated partition needs replicas"
            )
        return ReplicatedPartition(
            spec.topic,
            spec.partition,
            spec.log,
            spec.config,
            runtime=self.host.runtime,
            group=spec.group or group_name(spec.topic, spec.partition),
            replicas=spec.replicas,
            state_dir=spec.state_dir,
            flush_slots=self._flush_slots,
            raft_config=self._raft_config,
            known_epoch=spec.leader_epoch,
            held=self._held,
        )
