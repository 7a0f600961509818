"""TopicMirror: the local broker's topics follow the applied metadata.

Every node's :class:`~rilke.server.broker.Broker` holds the topics of the cluster's
metadata: after every change of the applied state the mirror creates what the metadata has
and the broker lacks (with the controller's topic id: a topic deleted and created again
under the same name while this node was away is replaced, not mistaken for the old one),
grows partition counts, applies configs and deletes what the metadata no longer has. The
broker's partition factory decides which partitions are served here
(:mod:`rilke.server.cluster.partitions`). Internal topics the node keeps for itself (a name
starting with ``__`` that the metadata does not hold) are left alone.

Each pass also rebuilds (``Broker.rebuild_partition``) every partition whose kind is not what
the factory would build now (``changed_kind``): opened on restart before the replayed metadata
named it (so not yet replicated), or this node joined or left its replicas. A replicated
partition whose replicas changed is not rebuilt: its Raft group changes its own members.

A node never acts on a view older than what its broker already reflects: the metadata index
of the latest pass is kept in ``mirrored-index`` (the metadata folder, written atomically
before the pass acts), and after a restart passes wait until the replayed metadata reaches
it. (Otherwise a node killed before its Raft state file recorded the latest commit
index would, replaying a shorter log first, delete topics it holds and create them again
empty.)

One pass at a time, on the loop (creation's file work on worker threads).
:meth:`wait_synced` returns once a pass covered a given metadata index: admin answers wait
for it, so a topic created through this node is served by it when the call returns.
A topic the broker cannot hold is logged and retried at the next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from rilke.partition.interface import Partition
from rilke.replication.controller import MetadataView, TopicMeta
from rilke.server.broker import Broker
from rilke.server.topics import is_internal
from rilke.storage.files import atomic_write

log = logging.getLogger(__name__)

MIRRORED_INDEX_FILE = "mirrored-index"


def read_mirrored_index(path: Path | None) -> int:
    """The metadata index the broker's topics reflect (0: none recorded)."""
    if path is None:
        return 0
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        log.warning("%s is damaged: ignored", path)
        return 0


class TopicMirror:
    def __init__(
        self,
        broker: Broker,
        view: Callable[[], MetadataView],
        node_id: int,
        state_dir: Path | None = None,
        changed_kind: Callable[[Partition], str | None] | None = None,
    ) -> None:
        self._broker = broker
        self._changed_kind = changed_kind
        self._index_path = state_dir / MIRRORED_INDEX_FILE if state_dir is not None else None
        self.floor_index = read_mirrored_index(self._index_path)
        self._view = view
        self._node_id = node_id
        self.synced_index = -1
        self._wake = asyncio.Event()
        self._synced = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._changes = 0
        # Called after a pass deleted topics (the services wake their long polls).
        self.on_deleted: Callable[[], None] | None = None

    def changed(self) -> None:
        """The applied metadata changed (the applier's subscription)."""
        self._wake.set()

    def start(self) -> None:
        self._wake.set()
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def wait_synced(self, index: int, timeout_s: float) -> None:
        """Return once a pass covered metadata index ``index``; TimeoutError otherwise."""
        async with asyncio.timeout(timeout_s):
            while self.synced_index < index:
                await self._synced.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            view = self._view()
            if view.applied_offset < self.floor_index:
                continue  # replaying still: older than what the broker holds
            try:
                if view.applied_offset > self.floor_index:
                    # Recorded before acting: a crash mid-pass redoes the pass from this view.
                    self._record(view.applied_offset)
                await self.sync(view)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("node %d: mirroring the metadata's topics failed", self._node_id)
            self.synced_index = view.applied_offset
            event, self._synced = self._synced, asyncio.Event()
            event.set()

    def _record(self, index: int) -> None:
        if self._index_path is not None:
            atomic_write(self._index_path, f"{index}\n".encode())
        self.floor_index = index

    async def sync(self, view: MetadataView) -> bool:
        """One pass (see the module docstring); whether it changed anything."""
        broker = self._broker
        before = self._changes
        deleted = False
        for info in list(broker.topics):
            meta = view.topic(info.name)
            if meta is None and is_internal(info.name):
                continue
            if meta is None or meta.topic_id != info.topic_id:
                self._try(f"delete topic {info.name}", broker.delete_topic, info.name)
                self._changes += 1
                deleted = True
        if deleted and self.on_deleted is not None:
            self.on_deleted()
        for meta in view.topics.values():
            if not meta.partitions:
                continue
            found = broker.topics.get(meta.name)
            if found is None:
                await self._create(meta)
                self._changes += 1
                continue
            info = found
            if info.num_partitions < len(meta.partitions):
                self._changes += 1
                self._try(
                    f"grow topic {meta.name}",
                    broker.create_partitions,
                    meta.name,
                    len(meta.partitions),
                )
            if dict(info.configs) != dict(meta.configs):
                self._changes += 1
                reset = [k for k in info.configs if k not in meta.configs]
                self._try(
                    f"configs of {meta.name}",
                    broker.alter_configs,
                    meta.name,
                    dict(meta.configs),
                    reset,
                )
        if self._changed_kind is not None:
            self._rebuild_changed_kinds(self._changed_kind)
        return self._changes != before

    def _rebuild_changed_kinds(self, changed_kind: Callable[[Partition], str | None]) -> None:
        broker = self._broker
        for (topic, p), part in broker.partitions_by_key().items():
            want = changed_kind(part)
            if want is None:
                continue
            self._changes += 1
            log.info("node %d: %s-%d is now %s here", self._node_id, topic, p, want)
            self._try(f"rebuild {topic}-{p}", broker.rebuild_partition, topic, p)

    async def _create(self, meta: TopicMeta) -> None:
        try:
            await self._broker.create_topic_async(
                meta.name, len(meta.partitions), 1, dict(meta.configs), topic_id=meta.topic_id
            )
        except Exception as e:
            log.error("node %d: cannot hold topic %s here: %s", self._node_id, meta.name, e)

    def _try(self, what: str, action: Callable[..., object], *args: object) -> None:
        try:
            action(*args)
        except Exception as e:
            log.error("node %d: %s failed: %s", self._node_id, what, e)
