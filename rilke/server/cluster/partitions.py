"""Which partitions a node of a cluster serves, and how.

The broker builds every partition of every topic in the applied metadata through its
partition factory (so topic listing, configs and Metadata work on every node alike).
:class:`ClusterPartitionFactory` decides per partition, from the metadata view:

- this node is one of the partition's replicas: a Raft-replicated partition
  (:class:`~rilke.replication.partition.ReplicatedPartition`) over the partition's log, its
  group named ``"<topic_id>/<partition>"`` (the controller's topic id), its voters the
  replicas (the preferred leader first). Raft elects its leader; a follower answers
  NotLeaderError with the leader its group knows.
- this node is not a replica (or the topic is not yet in the metadata this node replayed): a
  :class:`RemotePartition`, which serves nothing and answers NotLeaderError naming the leader
  the metadata records (none while it is not known). Its log stays empty.
- an internal topic the node keeps for itself (a ``__`` name the metadata does not hold,
  e.g. its group offsets): the local partition, served here. :meth:`ClusterPartitionFactory.
  internal` is the hook: a topic moved into the metadata (a replicated ``__consumer_offsets``)
  is no longer "the node's own" and gets the rules above.

:meth:`ClusterPartitionFactory.kind_of` says which of the three a partition should be now,
:meth:`ClusterPartitionFactory.changed_kind` whether one built here is that; the topic mirror
rebuilds a partition whose kind changed (its metadata arrived after it was
opened on restart, or this node left or joined its replicas).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace

from rilke.errors import NotLeaderError
from rilke.partition.interface import (
    AppendResult,
    FetchedData,
    Leadership,
    Partition,
    PartitionFactory,
    PartitionOffsets,
    PartitionSpec,
)
from rilke.replication.controller import NO_LEADER, MetadataView, PartitionInfo
from rilke.replication.partition import group_name
from rilke.server.topics import is_internal
from rilke.storage.config import LogConfig

UNKNOWN_OFFSET = -1

KIND_LOCAL = "local"
KIND_REMOTE = "remote"
KIND_REPLICATED = "replicated"


class RemotePartition:
    """A partition this node does not replicate: every produce, fetch and lookup is answered
    with NotLeaderError naming the leader from the metadata. It holds the (empty) local
    partition the broker opened, only for the broker's lifecycle calls."""

    def __init__(self, local: Partition, node_id: int, view: Callable[[], MetadataView]) -> None:
        self.topic = local.topic
        self.partition = local.partition
        self._local = local
        self._node_id = node_id
        self._view = view

    def _refuse(self) -> NotLeaderError:
        leader = self.leadership.leader_id
        where = f"node {leader} leads it" if leader is not None else "its leader is not known"
        return NotLeaderError(
            f"node {self._node_id} holds no replica of {self.topic}-{self.partition}: {where}",
            leader_id=leader,
        )

    @property
    def leadership(self) -> Leadership:
        part = self._view().partition(self.topic, self.partition)
        if part is None:
            return Leadership(None, 0, (), ())
        leader = None if part.leader == NO_LEADER else part.leader
        return Leadership(leader, part.leader_epoch, part.replicas, part.isr)

    @property
    def leader_epoch(self) -> int:
        return self.leadership.leader_epoch

    def subscribe_leadership(self, callback: Callable[[Leadership], None]) -> Callable[[], None]:
        return self._local.subscribe_leadership(callback)

    def append(self, records: bytes, acks: int) -> asyncio.Future[AppendResult]:
        raise self._refuse()

    def read(self, offset: int, max_bytes: int) -> FetchedData:
        raise self._refuse()

    def offsets(self) -> PartitionOffsets:
        """-1 each: the replicas have them."""
        return PartitionOffsets(UNKNOWN_OFFSET, UNKNOWN_OFFSET, UNKNOWN_OFFSET)

    def offset_for_timestamp(self, timestamp_ms: int) -> tuple[int, int] | None:
        raise self._refuse()

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        return self._local.subscribe(callback)

    def size_bytes(self) -> int:
        return self._local.size_bytes()

    def update_config(self, config: LogConfig) -> None:
        self._local.update_config(config)

    async def maintain(self, now_ms: int) -> None:
        await self._local.maintain(now_ms)

    def close(self) -> None:
        self._local.close()

    def forget_state(self) -> None:
        self._local.forget_state()


class ClusterPartitionFactory:
    """The broker's partition factory on a node of a cluster (see the module docstring).
    ``replicated`` builds a partition from a spec with ``replicas`` and ``group``."""

    def __init__(
        self,
        node_id: int,
        view: Callable[[], MetadataView],
        local: PartitionFactory,
        replicated: PartitionFactory,
    ) -> None:
        self._node_id = node_id
        self._view = view
        self._local = local
        self._replicated = replicated
        self._built: weakref.WeakKeyDictionary[Partition, str] = weakref.WeakKeyDictionary()
        # Grows whenever a replicated partition built here sees its leadership change (the
        # served view is recomputed only then, or when the metadata changes).
        self.leadership_generation = 0
        # Called with each such change (the broker agent reports a new leadership at once).
        self.leadership_listeners: list[Callable[[Leadership], None]] = []

    def internal(self, topic: str, view: MetadataView) -> bool:
        """A topic this node keeps for itself, served from its local log: a ``__`` name
        the metadata does not hold. (The hook for a replicated ``__consumer_offsets``: once
        the controller holds the topic it is a cluster topic like any other.)"""
        return is_internal(topic) and view.topic(topic) is None

    def changed_kind(self, part: Partition) -> str | None:
        """The kind ``part`` (built here) should be now, if not the kind it was built as."""
        want = self.kind_of(part.topic, part.partition)[0]
        return want if self._built.get(part, KIND_LOCAL) != want else None

    def kind_of(self, topic: str, partition: int) -> tuple[str, tuple[int, ...]]:
        """What this node should hold of a partition now: (KIND_REPLICATED, replicas),
        (KIND_REMOTE, ()) or (KIND_LOCAL, ())."""
        view = self._view()
        if self.internal(topic, view):
            return KIND_LOCAL, ()
        part = view.partition(topic, partition)
        # A reassignment's new replica holds the group too, joining with the replicas'
        # configuration (the leader adds it as a learner).
        if part is not None and self._node_id in part.members:
            return KIND_REPLICATED, part.replicas
        return KIND_REMOTE, ()

    def __call__(self, spec: PartitionSpec) -> Partition:
        kind, part = self._build(spec)
        self._built[part] = kind
        if kind == KIND_REPLICATED:
            part.subscribe_leadership(self._leadership_changed)
        return part

    def _leadership_changed(self, leadership: Leadership) -> None:
        self.leadership_generation += 1
        for listener in self.leadership_listeners:
            listener(leadership)

    def replicated(self, partitions: Iterable[Partition]) -> Iterator[Partition]:
        """Those of ``partitions`` built here as replicated."""
        built = self._built
        return (p for p in partitions if built.get(p) == KIND_REPLICATED)

    def _build(self, spec: PartitionSpec) -> tuple[str, Partition]:
        kind, replicas = self.kind_of(spec.topic, spec.partition)
        if kind == KIND_LOCAL:
            return kind, self._local(spec)
        meta = self._view().topic(spec.topic)
        # A log of another topic of that name (deleted and created again while this node
        # was away) is never taken for the new one's: the mirror replaces the topic.
        same = meta is not None and spec.topic_id in ("", meta.topic_id)
        if kind == KIND_REPLICATED and meta is not None and same:
            group = group_name(meta.topic_id, spec.partition)
            info = self._view().partition(spec.topic, spec.partition)
            epoch = info.leader_epoch if info is not None else 0
            built = replace(spec, replicas=replicas, group=group, leader_epoch=epoch)
            return kind, self._replicated(built)
        return KIND_REMOTE, RemotePartition(self._local(spec), self._node_id, self._view)


def fresher_view(view: MetadataView, replicated: Iterable[Partition], node_id: int) -> MetadataView:
    """``view`` with what this node's own Raft groups know that it does not yet: a leader at
    a newer term (or at its term while it records none) replaces the recorded one, with
    its own in-sync replicas when this node (``node_id``) leads. The controller records the same
    about a heartbeat later; meanwhile clients are sent to the real leader at once."""
    changed: dict[str, list[PartitionInfo]] = {}
    for part in replicated:
        now = part.leadership
        if now.leader_id is None:
            continue
        meta = view.partition(part.topic, part.partition)
        if meta is None:
            continue
        newer = now.leader_epoch > meta.leader_epoch or (
            now.leader_epoch == meta.leader_epoch and meta.leader == NO_LEADER
        )
        if not newer:
            continue
        members = set(meta.members)
        if now.leader_id == node_id and now.leader_id in now.in_sync_replicas:
            isr = tuple(r for r in now.in_sync_replicas if r in members)
        else:
            isr = meta.isr if now.leader_id in meta.isr else (*meta.isr, now.leader_id)
        if now.leader_id not in members or not isr:
            continue
        topic = view.topics[part.topic]
        edit = changed.setdefault(part.topic, list(topic.partitions))
        edit[part.partition] = replace(
            meta, leader=now.leader_id, leader_epoch=now.leader_epoch, isr=isr
        )
    if not changed:
        return view
    topics = dict(view.topics)
    for name, parts in changed.items():
        topics[name] = replace(topics[name], partitions=tuple(parts))
    return replace(view, topics=topics)
