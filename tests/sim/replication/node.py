"""One simulated broker process: the production RaftRuntime, Transport and ReplicatedPartitions
over PartitionLogs in the node's own directory, wired as the broker wires them, with the
virtual clock, the simulated network and the simulated disk injected through their seams.

A crash is a process death: every task the node started is cancelled (tasks are tagged with the
node that started them, :data:`NODE`), its connections reset, its descriptors closed without a
flush, and its files put back to what was synced (:meth:`SimDisk.crash`). A restart builds
everything again from the directory, as a broker starting after a power cut (``recover=True``).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import random
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rilke.replication.partition import ReplicatedPartition
from rilke.replication.raft.types import Config
from rilke.replication.raft_storage import StorageFlush
from rilke.replication.runtime import RaftRuntime
from rilke.replication.transport import Transport, TransportConfig
from rilke.server.cluster.controller import (
    ClusterController,
    metadata_state_lost,
    open_metadata_log,
)
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog

from .disk import SimDisk, close_fds_under
from .network import SimNetwork

NODE: contextvars.ContextVar[int] = contextvars.ContextVar("sim_node", default=0)
"""The node a task belongs to (0: the simulation's own: clients, nemesis, checks)."""

TOPIC = "t"
TOPIC_ID = "tid"
EPOCH_MS = 1_780_000_000_000
"""Wall-clock ms at virtual time 0 (record timestamps, segment ages)."""


class NodeTasks:
    """A task factory that files every task under the node whose context created it, in
    creation order (a set of tasks would iterate in address order: not a function of the
    seed)."""

    def __init__(self) -> None:
        self.by_node: dict[int, dict[asyncio.Task[Any], None]] = {}

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_task_factory(self._factory)  # type: ignore[arg-type]

    def _factory(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context | None = None,
        **kwargs: Any,
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, context=context, **kwargs)
        node = context.get(NODE, 0) if context is not None else NODE.get()
        if node:
            tasks = self.by_node.setdefault(node, {})
            tasks[task] = None
            task.add_done_callback(lambda t: tasks.pop(t, None))
        return task

    def cancel(self, node: int) -> None:
        for task in list(self.by_node.pop(node, {})):
            task.cancel()


def group_of(partition: int) -> str:
    return f"{TOPIC_ID}/{partition}"


@dataclass
class NodeKnobs:
    tick_s: float = 0.05
    election_timeout_ticks: int = 10
    fsync_min_s: float = 0.0005
    fsync_max_s: float = 0.004
    sync_error_probability: float = 0.0
    """Per window: the fsync fails (EIO); the runtime stalls the groups and retries."""
    segment_bytes: int = 16 << 10
    liveness_timeout_s: float = 0.5
    controller: bool = False
    """Run the metadata group (the production ClusterController) on every node too."""
    metadata_snapshot_bytes: int = 2048
    """Small, so that controllers snapshot and trim their logs within a run."""
    lying_fsync: bool = False
    """A disk that acknowledges fsyncs it never did (the state file is still written): for the
    test that shows the checks catch lost acknowledged writes."""


@dataclass
class Incarnation:
    """What one start of a node holds (dropped at its crash)."""

    runtime: RaftRuntime
    transport: Transport
    logs: dict[int, PartitionLog]
    partitions: dict[int, ReplicatedPartition]
    controller: ClusterController | None = None
    high_watermarks: dict[int, list[int]] = field(default_factory=dict)
    """Per partition, every high watermark its subscribers were told, in order."""


class SimNode:
    def __init__(
        self,
        node_id: int,
        root: Path,
        members: tuple[int, ...],
        partitions: int,
        *,
        net: SimNetwork,
        disk: SimDisk,
        tasks: NodeTasks,
        knobs: NodeKnobs,
        rng: random.Random,
    ) -> None:
        self.node_id = node_id
        self.directory = root / f"n{node_id}"
        self.members = members
        self.partition_count = partitions
        self.net = net
        self.disk = disk
        self.tasks = tasks
        self.knobs = knobs
        self.rng = rng
        self.live: Incarnation | None = None
        self.incarnations = 0
        self.slow_fsync_factor = 1.0
        self.crash_in_flush: Callable[[], None] | None = None
        """Set by the nemesis: called (it crashes this node) inside the next window's fsyncs,
        after a seeded prefix of the window's groups synced."""

    @property
    def up(self) -> bool:
        return self.live is not None

    # --- lifecycle ----------------------------------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        """``coro`` as a task of this node (cancelled by its crash); None when it is down."""
        live = self.live
        if live is None:
            coro.close()
            return None
        context = contextvars.copy_context()
        context.run(NODE.set, self.node_id)
        return asyncio.get_running_loop().create_task(coro, context=context)

    async def start(self) -> None:
        assert self.live is None
        self.incarnations += 1
        loop = asyncio.get_running_loop()
        knobs = self.knobs
        rng = random.Random(self.rng.getrandbits(64))
        peers = {m: SimNetwork.addr(m) for m in self.members if m != self.node_id}
        runtime: RaftRuntime | None = None

        def deliver(peer: int, items: list[Any]) -> None:
            assert runtime is not None
            runtime.receive(peer, items)

        transport = Transport(
            TransportConfig(
                "sim",
                self.node_id,
                SimNetwork.addr(self.node_id),
                incarnation=rng.getrandbits(63),
                liveness_timeout_s=knobs.liveness_timeout_s,
            ),
            peers,
            deliver,
            monotonic=loop.time,
            rng=random.Random(rng.getrandbits(64)),
            open_stream=self.net.opener(self.node_id),
        )
        runtime = RaftRuntime(
            self.node_id,
            transport,
            tick_s=knobs.tick_s,
            rng=random.Random(rng.getrandbits(64)),
            clock_ms=lambda: EPOCH_MS + int(loop.time() * 1000),
            monotonic=loop.time,
            run_flushes=self._run_flushes,
        )
        live = Incarnation(runtime, transport, {}, {})
        self.live = live
        now_ms = EPOCH_MS + int(loop.time() * 1000)
        config = LogConfig(segment_bytes=knobs.segment_bytes)
        raft_config = Config(self.node_id, election_timeout_ticks=knobs.election_timeout_ticks)
        for p in range(self.partition_count):
            log_dir = self.directory / f"{TOPIC}-{p}"
            plog = PartitionLog.open(log_dir, config, now_ms=now_ms, recover=True)
            live.logs[p] = plog
            part = ReplicatedPartition(
                TOPIC,
                p,
                plog,
                config,
                runtime=runtime,
                group=group_of(p),
                replicas=self.members,
                state_dir=log_dir,
                raft_config=raft_config,
            )
            live.partitions[p] = part
            hws = live.high_watermarks.setdefault(p, [part.high_watermark])
            part.subscribe(lambda part=part, hws=hws: hws.append(part.high_watermark))
        if knobs.controller:
            mlog, mstorage = open_metadata_log(self.directory)
            live.logs[-1] = mlog
            controller = ClusterController(
                self.node_id,
                runtime,
                mstorage,
                cluster_id="sim",
                bootstrap_voters=self.members,
                validate_topic=lambda _name, _partitions: None,
                clock_ms=lambda: EPOCH_MS + int(loop.time() * 1000),
                snapshot_bytes=knobs.metadata_snapshot_bytes,
                storage_lost=metadata_state_lost(mstorage, node_known=self.incarnations > 1),
            )
            controller.start()
            live.controller = controller
        self.net.listen(self.node_id, self._accept)
        await self._as_node(runtime.start())
        await self._as_node(transport.start())

    async def _as_node(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in this node's context (the tasks it creates are the node's)."""
        task = self.spawn(coro)
        assert task is not None
        await task

    async def _accept(self, context: Any) -> None:
        """The servicer's body. gRPC ends a handler whose stream broke (a write to a reset
        stream raises in the handshake, before the transport's session catches it) without
        anybody awaiting it; here the error is dropped the same way."""
        live = self.live
        if live is not None:
            with contextlib.suppress(ConnectionError):
                await live.transport.accept(context)

    async def _run_flushes(self, flushes: list[StorageFlush]) -> None:
        """The sim's RunFlushes: the window's fsyncs take a seeded virtual time, then run
        inline; a crash meanwhile (the task cancelled) loses them."""
        knobs = self.knobs
        await asyncio.sleep(
            self.rng.uniform(knobs.fsync_min_s, knobs.fsync_max_s) * self.slow_fsync_factor
        )
        if self.rng.random() < knobs.sync_error_probability:
            raise OSError(errno.EIO, "simulated fsync failure")
        crash, self.crash_in_flush = self.crash_in_flush, None
        if crash is not None:
            for flush in flushes[: self.rng.randrange(len(flushes) + 1)]:
                flush.run()
            crash()  # cancels this task: nothing after this point runs
            await asyncio.sleep(0)
            raise AssertionError("the node crashed; its flush task must not resume")
        for flush in flushes:
            if knobs.lying_fsync and flush.job is not None:
                flush.job = None  # the log's fsyncs "succeed" without syncing
            flush.run()

    def crash(self) -> None:
        """Power off (see the module docstring)."""
        live = self.live
        assert live is not None
        self.live = None
        self.net.down(self.node_id)
        self.tasks.cancel(self.node_id)
        close_fds_under(self.directory)
        self.disk.crash(self.directory)
