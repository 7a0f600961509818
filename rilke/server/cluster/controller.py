"""This node's part in the metadata controller: the Raft group "__cluster_metadata".

Every node runs the group over its own internal log (``<data dir>/__cluster_metadata``, a
folder the LogManager does not take for a partition) and applies each committed entry to its
:class:`MetadataApplier`, so any node answers Metadata from its own applied view. The initial
voters vote; every node that joins later is a learner (it replays, it does not vote) until
`rilke cluster add-voter` promotes it.

On the Raft leader (the controller leader) a :class:`ControllerDecider` decides. One decision
is in flight at a time (``_decide_lock``): the decider validates against the state with every
earlier decision applied, proposes its records, and waits until they are committed and
applied here, so the answer says what the cluster now holds. Before the first decision of a
term the leader waits until it has applied everything up to its own no-op (its state is then
the whole committed state). The first leader of a new cluster writes the bootstrap records
(cluster id, voters). A timer fences brokers whose heartbeats stopped.

Snapshots and trimming (as KRaft's): once ``snapshot_bytes`` of entries were applied since
the last snapshot, every node (voter or learner, each on its own) encodes its applied state,
saves it as a snapshot file on a worker thread, and trims its metadata log below it
(:meth:`PartitionRaftStorage.compact`). Restart is the newest snapshot, then the tail; a
member whose next entry the leader trimmed gets the leader's snapshot (Raft's
InstallSnapshot; the transport splits it into chunks) and restores its state from it.

Runs on the event loop; not thread-safe. Every wait has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rilke.errors import (
    ControllerError,
    CorruptMetadataRecordError,
    NotControllerError,
    NotLeaderError,
)
from rilke.records.header import read_header
from rilke.replication.controller import MetadataApplier, MetadataView
from rilke.replication.controller.decider import ControllerDecider, DeciderSettings
from rilke.replication.controller.records import MetadataRecord, encode_batches
from rilke.replication.raft.types import NO_NODE, Config, ConfState, Entry, Snapshot
from rilke.replication.raft_storage import PartitionRaftStorage
from rilke.replication.runtime import RaftRuntime
from rilke.replication.snapshot_files import SnapshotFiles
from rilke.storage.config import LogConfig
from rilke.storage.handles import FileCache
from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

METADATA_GROUP = "__cluster_metadata"
METADATA_DIR = "__cluster_metadata"
FENCE_CHECK_INTERVAL_S = 1.0
"""How often the leader looks for brokers whose session expired (Kafka checks about as often:
a session is 9 s, so a dead broker is fenced 9-10 s after its last heartbeat)."""
DEFAULT_WRITE_TIMEOUT_S = 15.0
MAX_REJECTIONS_KEPT = 1024
DEFAULT_SNAPSHOT_BYTES = 16 << 20
"""Bytes of metadata entries applied between two snapshots (Kafka's
metadata.log.max.record.bytes.between.snapshots is 20 MB)."""
METADATA_SEGMENT_BYTES = 8 << 20
"""Segments of the metadata log: small enough that trimming below a snapshot frees disk."""
SNAPSHOT_SAVE_TIMEOUT_S = 60.0
DEFAULT_READ_TIMEOUT_S = 5.0

Decision = Callable[[ControllerDecider], list[MetadataRecord]]


def open_metadata_log(data_dir: Path) -> tuple[PartitionLog, PartitionRaftStorage]:
    """The metadata group's log and its Raft storage in ``data_dir`` (made if missing)."""
    folder = Path(data_dir) / METADATA_DIR
    folder.mkdir(parents=True, exist_ok=True)
    plog = PartitionLog.open(
        folder,
        LogConfig(segment_bytes=METADATA_SEGMENT_BYTES, retention_ms=-1),
        now_ms=int(time.time() * 1000),
        recover=True,
        cache=FileCache(16),
    )
    try:
        return plog, PartitionRaftStorage.open(plog, snapshots=SnapshotFiles(folder))
    except BaseException:
        plog.close()
        raise


def metadata_state_lost(storage: PartitionRaftStorage, *, node_known: bool) -> bool:
    """Whether this node lost its metadata group's Raft state: its data dir had an identity
    before this start (``node_known``: it was a member) but no ``raft.state`` (wiped). Then
    it may have voted in a term it no longer remembers: start the group with
    ``storage_lost``. A new state file is written at once otherwise, so that a later wipe is
    told apart from a first start. Blocks on disk (that write)."""
    if not storage.fresh:
        return False
    if node_known:
        log.warning(
            "%s: no Raft state for the metadata group of a known node (wiped?): not voting "
            "until a leader has caught it up",
            storage.log.directory,
        )
        return True
    storage.write_state()
    return False


class ClusterController:
    """The metadata group on this node (see the module docstring)."""

    def __init__(
        self,
        node_id: int,
        runtime: RaftRuntime,
        storage: PartitionRaftStorage,
        *,
        cluster_id: str,
        bootstrap_voters: Sequence[int],
        validate_topic: Callable[[str, int], None],
        settings: DeciderSettings | None = None,
        clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        snapshot_bytes: int = DEFAULT_SNAPSHOT_BYTES,
        storage_lost: bool = False,
    ) -> None:
        """``storage_lost``: see :func:`metadata_state_lost` (``Config.storage_lost``)."""
        self.node_id = node_id
        self._storage_lost = storage_lost
        self.cluster_id = cluster_id
        self.bootstrap_voters = tuple(sorted(bootstrap_voters))
        self.applier = MetadataApplier(node_id=node_id)
        self._runtime = runtime
        self._storage = storage
        self._validate_topic = validate_topic
        self._settings = settings
        self._clock_ms = clock_ms
        self.leader_id = NO_NODE
        self._term = 0
        self._decider: ControllerDecider | None = None
        self._term_start = 0  # the leader's no-op: decisions wait until applied past it
        self._decide_lock = asyncio.Lock()
        self._applied = asyncio.Event()  # set (and replaced) whenever something applies
        self._rejections: dict[int, ControllerError] = {}  # index -> why, of own proposals
        self._leader_task: asyncio.Task[None] | None = None
        self._leader_listeners: list[Callable[[], None]] = []
        self.snapshot_bytes = snapshot_bytes
        self._bytes_since_snapshot = 0
        self._snapshot_task: asyncio.Task[int] | None = None
        self._stopped = False
        self.snapshots_taken = 0
        self.snapshots_installed = 0

    # --- the group ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the group. Restart is the newest snapshot (the log start), then the
        committed entries after it, applied again. Raises CorruptMetadataRecordError when
        the snapshot's state does not hold."""
        snap = self._storage.snapshot()
        if snap.index > 0:
            self._restore(snap)
        config = Config(
            self.node_id,
            voters=self.bootstrap_voters,
            applied=snap.index,
            storage_lost=self._storage_lost,
        )
        self._runtime.add_group(
            METADATA_GROUP,
            self._storage,
            config,
            self._apply,
            on_leader=self._on_leader,
            on_snapshot=self._install,
        )

    def _restore(self, snap: Snapshot) -> None:
        """The applier's state from ``snap`` (its payload is the state at ``snap.index``)."""
        if not snap.data:
            raise CorruptMetadataRecordError(
                f"node {self.node_id}: the metadata snapshot at {snap.index} has no state"
            )
        self.applier.restore(snap.data)
        if self.applier.applied_index != snap.index:
            raise CorruptMetadataRecordError(
                f"node {self.node_id}: the metadata snapshot at {snap.index} holds the state "
                f"at {self.applier.applied_index}"
            )
        self._bytes_since_snapshot = 0

    def _install(self, snap: Snapshot) -> None:
        """A snapshot from the leader (this node was behind its log start), already saved
        and made the log start by the storage."""
        if snap.index <= self.applier.applied_index:
            return
        try:
            self._restore(snap)
        except ControllerError as e:
            # Every node decodes the same bytes: a leader's snapshot that does not hold is a
            # bug. Carrying on would apply the tail to a stale state; stop the group instead.
            log.error(
                "node %d: the leader's metadata snapshot at %d does not hold (%s); stopping "
                "this node's metadata group",
                self.node_id,
                snap.index,
                e,
            )
            self._runtime.remove_group(METADATA_GROUP)
            return
        self.snapshots_installed += 1
        log.info(
            "node %d: metadata restored from the leader's snapshot at %d", self.node_id, snap.index
        )
        event, self._applied = self._applied, asyncio.Event()
        event.set()

    async def snapshot_now(self) -> int:
        """Snapshot the applied state and trim the log below it; returns the snapshot's
        index (the current log start when nothing was applied since). One at a time: a
        call during a snapshot waits for it. Raises OSError (the log stays untrimmed)."""
        task = self._snapshot_task
        if task is not None and not task.done():
            await asyncio.shield(task)
        task = self._snapshot_task = asyncio.ensure_future(self._take_snapshot())
        return await asyncio.shield(task)

    async def _take_snapshot(self) -> int:
        storage = self._storage
        index, data = self.applier.snapshot()
        start = storage.snapshot().index
        if index <= start:
            return start
        self._bytes_since_snapshot = 0
        snap = storage.snapshot_at(index, data, ConfState(frozenset(self.bootstrap_voters)))
        saver = storage.snapshots
        if saver is not None:
            loop = asyncio.get_running_loop()
            await asyncio.wait_for(
                loop.run_in_executor(None, saver.save, snap), SNAPSHOT_SAVE_TIMEOUT_S
            )
        if self._stopped or not self._runtime.has_group(METADATA_GROUP):
            return start
        if storage.compact(snap):
            self.snapshots_taken += 1
            log.info(
                "node %d: metadata snapshot at %d (%d bytes); log trimmed below it",
                self.node_id,
                index,
                len(data),
            )
        return index

    def _maybe_snapshot(self) -> None:
        if self._bytes_since_snapshot < self.snapshot_bytes or self._stopped:
            return
        task = self._snapshot_task
        if task is not None and not task.done():
            return
        self._snapshot_task = task = asyncio.ensure_future(self._take_snapshot())
        task.add_done_callback(self._snapshot_done)

    def _snapshot_done(self, task: asyncio.Task[int]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.warning("node %d: metadata snapshot failed: %s", self.node_id, error)

    async def stop(self) -> None:
        self._stopped = True
        task = self._snapshot_task
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task  # a save under way finishes (bounded by its timeout)
        if self._leader_task is not None:
            self._leader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leader_task
            self._leader_task = None

    def view(self) -> MetadataView:
        """This node's applied metadata, with the controller leader as this node knows it.
        The same object until something changes."""
        return self.applier.view(self.leader_id if self.leader_id != NO_NODE else -1)

    def now_ms(self) -> int:
        return self._clock_ms()

    @property
    def applied_index(self) -> int:
        return self.applier.applied_index

    @property
    def is_leader(self) -> bool:
        return self._decider is not None and self.leader_id == self.node_id

    def on_leader_change(self, callback: Callable[[], None]) -> None:
        self._leader_listeners.append(callback)

    def last_index(self) -> int:
        """The last entry of this node's metadata log (0: none was ever written here)."""
        return self._runtime.status(METADATA_GROUP).last_index

    def members(self) -> tuple[frozenset[int], frozenset[int]]:
        """(voters, learners) of the metadata group as this node's Raft core has them."""
        conf = self._runtime.node(METADATA_GROUP).conf
        return conf.voters, conf.learners

    def _apply(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            if entry.index <= self.applier.applied_index:
                continue  # in the snapshot restored at start (the commit was behind it)
            self._bytes_since_snapshot += len(entry.data)
            error = self.applier.apply_entry(entry)
            if error is not None:
                # Kept for the proposer (whose future resolves after this apply); rejections
                # are rare, and the oldest are dropped past the bound.
                self._rejections[entry.index] = error
                while len(self._rejections) > MAX_REJECTIONS_KEPT:
                    del self._rejections[min(self._rejections)]
        event, self._applied = self._applied, asyncio.Event()
        event.set()
        self._maybe_snapshot()

    def _on_leader(self, leader: int, term: int) -> None:
        self.leader_id = leader
        self._term = term
        if leader == self.node_id:
            self._term_start = self._runtime.status(METADATA_GROUP).last_index
            decider = ControllerDecider(
                self.applier.state, self._settings, validate_topic=self._validate_topic
            )
            self._decider = decider
            if self._leader_task is None or self._leader_task.done():
                self._leader_task = asyncio.ensure_future(self._lead())
            log.info("node %d: controller leader at term %d", self.node_id, term)
        else:
            self._decider = None
            if self._leader_task is not None:
                self._leader_task.cancel()
                self._leader_task = None
        for callback in list(self._leader_listeners):
            callback()

    # --- waiting ------------------------------------------------------------------------

    async def wait_applied(self, index: int, timeout_s: float) -> None:
        """Return once this node applied up to ``index``; TimeoutError after ``timeout_s``."""
        async with asyncio.timeout(timeout_s):
            while self.applier.applied_index < index:
                await self._applied.wait()

    async def read_index(self, timeout_s: float = DEFAULT_READ_TIMEOUT_S) -> int:
        """A linearizable read point of the metadata: returns once this node (voter or
        learner) applied every entry committed before the call (Raft's read index: the
        leader confirms its leadership with a heartbeat round). Retried while no leader is
        known or the leader changes, until ``timeout_s``; then raises the last NotLeaderError
        (retriable) or TimeoutError."""
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"node {self.node_id}: no metadata read index in {timeout_s} s")
            try:
                return await self._runtime.read_index(METADATA_GROUP, timeout_s=remaining)
            except NotLeaderError as e:
                if time.monotonic() + delay >= deadline:
                    raise NotLeaderError(f"node {self.node_id}: metadata read index: {e}") from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)

    async def _caught_up(self, timeout_s: float) -> ControllerDecider:
        """The decider, once this leader applied all it committed (its no-op included)."""
        async with asyncio.timeout(timeout_s):
            while True:
                decider = self._decider
                if decider is None or self.leader_id != self.node_id:
                    raise NotControllerError(self.not_leader_text())
                status = self._runtime.status(METADATA_GROUP)
                if (
                    status.commit_index >= self._term_start
                    and self.applier.applied_index >= status.commit_index
                ):
                    # The decider's state is the applier's (the one object): fresh after a
                    # snapshot restore too.
                    decider.state = self.applier.state
                    return decider
                await self._applied.wait()

    def not_leader_text(self) -> str:
        if self.leader_id in (NO_NODE, self.node_id):
            return f"node {self.node_id} is not the controller leader; no leader is known yet"
        return f"node {self.node_id} is not the controller leader; node {self.leader_id} is"

    # --- deciding -----------------------------------------------------------------------

    async def decide(
        self, decision: Decision, *, timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    ) -> int:
        """Decide on this leader and return the metadata index once the records are
        committed and applied here (the applied index when there is nothing to change).
        Raises NotControllerError (retriable) off the leader, the decision's own error
        (nothing changed), the state machine's rejection of the entry, TimeoutError."""
        async with asyncio.timeout(timeout_s), self._decide_lock:
            decider = await self._caught_up(timeout_s)
            records = decision(decider)
            if not records:
                return self.applier.applied_index
            batches = encode_batches(records, self._clock_ms())
            counts = [_record_count(b) for b in batches]
            futures = []
            for batch, count in zip(batches, counts, strict=True):
                future = self._runtime.propose(
                    METADATA_GROUP, [batch], [count], timeout_s=timeout_s
                )
                futures.append(future)
            indexes = [await f for f in futures]
            await self.wait_applied(indexes[-1], timeout_s)
            for index in indexes:
                error = self._rejections.pop(index, None)
                if error is not None:
                    raise error
            return indexes[-1]

    async def _lead(self) -> None:
        """The leader's own work: bootstrap a new cluster, then fence expired sessions."""
        try:
            decider = await self._caught_up(60.0)
            decider.become_leader(self._clock_ms())
            if self.applier.state.cluster_id is None:
                await self.decide(lambda d: d.bootstrap(self.cluster_id, self.bootstrap_voters))
                log.info("node %d: cluster %s bootstrapped", self.node_id, self.cluster_id)
            while True:
                await asyncio.sleep(FENCE_CHECK_INTERVAL_S)
                try:
                    await self.decide(self._fence_expired)
                except (ControllerError, TimeoutError) as e:
                    log.warning("node %d: fencing expired brokers failed: %s", self.node_id, e)
        except NotControllerError:
            return
        except TimeoutError:
            log.warning("node %d: controller leader did not catch up in time", self.node_id)

    def _fence_expired(self, decider: ControllerDecider) -> list[MetadataRecord]:
        return decider.fence_expired(self._clock_ms())


def _record_count(batch: bytes) -> int:
    """Offsets the batch spans (one per metadata record)."""
    return read_header(batch).records_count
