"""The metadata state machine: the cluster as the metadata log's records make it.

:class:`MetadataState` applies :mod:`records` in log order. The same records in the same order
give the same state on every node (voter or learner): a record that does not fit the state it
reaches (an unknown topic, a stale leader epoch, a producer-id block that is not the next one)
is rejected with :class:`InvalidMetadataRecordError` on every node alike, and a batch (one Raft
entry) is applied whole or not at all.

Pure: no I/O, no clock. Not thread-safe: one applier owns a state. The values it hands out
(:class:`BrokerInfo`, :class:`TopicMeta`, :class:`PartitionInfo`) are frozen and replaced on
change, never mutated, so a view may keep them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from rilke.errors import InvalidMetadataRecordError
from rilke.replication.controller.records import (
    NO_LEADER,
    BrokerDecommissioned,
    BrokerFenced,
    BrokerRegistered,
    BrokerUnfenced,
    ClusterCreated,
    MetadataRecord,
    PartitionChanged,
    PartitionsAdded,
    ProducerIdsAllocated,
    ReassignmentCompleted,
    ReassignmentStarted,
    TopicConfigsChanged,
    TopicCreated,
    TopicDeleted,
    VotersChanged,
)

MAX_PORT = 65535


class BrokerState(enum.Enum):
    ALIVE = "alive"
    """Registered and heartbeating: may lead partitions and gets new replicas."""
    FENCED = "fenced"
    """Registered but not heartbeating (or not yet): leads nothing, gets no new replicas."""
    DECOMMISSIONING = "decommissioning"
    """Being removed: gets no new replicas, leads nothing once its leaderships moved."""


@dataclass(frozen=True, slots=True)
class BrokerInfo:
    broker_id: int
    host: str
    port: int
    rack: str | None
    state: BrokerState
    epoch: int
    """The offset of the broker's latest registration record (Kafka's broker epoch)."""
    kafka_host: str | None = None
    """The broker's advertised Kafka listener (None: it serves no Kafka clients)."""
    kafka_port: int = 0


@dataclass(frozen=True, slots=True)
class PartitionInfo:
    """Invariants: ``isr`` is a non-empty subset of ``members``; ``leader`` is NO_LEADER or in
    ``isr``; ``leader_epoch`` (the partition's Raft term) never goes back, and one leader
    holds it within an epoch. ``target`` is empty, or the replicas a running reassignment
    moves the partition to (distinct brokers, not equal to ``replicas``)."""

    replicas: tuple[int, ...]
    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    target: tuple[int, ...] = ()

    @property
    def members(self) -> tuple[int, ...]:
        """Every broker that holds or is getting a replica: the replicas, then the target's
        new ones (a node hosts the partition's Raft group while it is one of them)."""
        if not self.target:
            return self.replicas
        return self.replicas + tuple(b for b in self.target if b not in self.replicas)

    @property
    def adding(self) -> tuple[int, ...]:
        """The target's brokers that are not replicas yet."""
        return tuple(b for b in self.target if b not in self.replicas)

    @property
    def removing(self) -> tuple[int, ...]:
        """The replicas the target leaves out (empty when no move runs)."""
        if not self.target:
            return ()
        return tuple(b for b in self.replicas if b not in self.target)


@dataclass(frozen=True, slots=True)
class TopicMeta:
    name: str
    topic_id: str
    configs: Mapping[str, str]
    partitions: tuple[PartitionInfo, ...]


_MISSING = object()


class MetadataState:
    """The metadata of one cluster. Read the attributes; change them only by applying.

    ``applied_offset`` is the last offset of the last batch applied (0 before any);
    ``version`` grows with every applied batch (a cached view is current while it matches).
    ``replica_counts`` / ``leader_counts`` are per broker (kept for placement).
    """

    def __init__(self) -> None:
        self.cluster_id: str | None = None
        self.brokers: dict[int, BrokerInfo] = {}
        self.topics: dict[str, TopicMeta] = {}
        self.topic_names: dict[str, str] = {}  # topic id -> name
        self.next_producer_id = 0
        self.producer_id_blocks: dict[int, tuple[int, int]] = {}  # broker -> (first, count)
        self.voters: tuple[int, ...] = ()
        self.replica_counts: dict[int, int] = {}
        self.leader_counts: dict[int, int] = {}
        self.applied_offset = 0
        self.version = 0
        self._undo: list[Callable[[], None]] = []
        # Partition lists being changed by the batch in progress (topic name -> list), frozen
        # back into their TopicMeta when the batch ends: a batch of N changes to a topic of P
        # partitions costs O(N + P), not O(N * P).
        self._editing: dict[str, list[PartitionInfo]] = {}

    # --- applying -----------------------------------------------------------------------

    def apply_batch(self, records: Sequence[MetadataRecord], last_offset: int) -> None:
        """Apply the records of one entry, whose last record has offset ``last_offset``
        (record ``i`` has offset ``last_offset - len(records) + 1 + i``). All or nothing:
        raises InvalidMetadataRecordError (naming the record) and leaves the state as it was
        if any record does not apply; ``applied_offset`` then still moves to ``last_offset``
        (the entry was consumed, by every node alike)."""
        if last_offset <= self.applied_offset:
            raise InvalidMetadataRecordError(
                f"offset {last_offset} is not after the last applied offset {self.applied_offset}"
            )
        first = last_offset - len(records) + 1
        self._undo = []
        try:
            for i, record in enumerate(records):
                self._apply(record, first + i)
            for name in list(self._editing):
                self._flush(name)
        except InvalidMetadataRecordError:
            self._editing.clear()
            for undo in reversed(self._undo):
                undo()
            raise
        finally:
            self._undo = []
            self.applied_offset = last_offset
        self.version += 1

    def skip_to(self, last_offset: int) -> None:
        """An entry with no records (Raft's no-op or configuration entry) was consumed."""
        assert last_offset > self.applied_offset
        self.applied_offset = last_offset

    def _apply(self, record: MetadataRecord, offset: int) -> None:
        if self.cluster_id is None and not isinstance(record, ClusterCreated):
            self._reject(record, "the metadata log must start with the cluster id")
        handler = _HANDLERS[type(record)]
        handler(self, record, offset)

    def _reject(self, record: MetadataRecord, why: str) -> None:
        raise InvalidMetadataRecordError(f"{record.TYPE} record rejected: {why} ({record})")

    def _set(self, table: dict[Any, Any], key: object, value: object) -> None:
        old = table.get(key, _MISSING)
        self._undo.append(lambda: _restore(table, key, old))
        table[key] = value

    def _delete(self, table: dict[Any, Any], key: object) -> None:
        old = table.pop(key)
        self._undo.append(lambda: table.__setitem__(key, old))

    def _set_attr(self, name: str, value: object) -> None:
        old = getattr(self, name)
        self._undo.append(lambda: setattr(self, name, old))
        setattr(self, name, value)

    def _partitions(self, topic: TopicMeta) -> Sequence[PartitionInfo]:
        editing = self._editing.get(topic.name)
        return topic.partitions if editing is None else editing

    def _flush(self, name: str) -> None:
        editing = self._editing.pop(name, None)
        if editing is not None:
            self._set(self.topics, name, replace(self.topics[name], partitions=tuple(editing)))

    def _count(self, table: dict[int, int], broker: int, delta: int) -> None:
        self._set(table, broker, table.get(broker, 0) + delta)

    def _count_partition(self, p: PartitionInfo, sign: int) -> None:
        for r in p.replicas:
            self._count(self.replica_counts, r, sign)
        if p.leader != NO_LEADER:
            self._count(self.leader_counts, p.leader, sign)

    # --- one handler per record type ----------------------------------------------------

    def _cluster(self, r: ClusterCreated, offset: int) -> None:
        if self.cluster_id is not None:
            self._reject(r, f"the cluster already has id {self.cluster_id!r}")
        if not r.cluster_id:
            self._reject(r, "empty cluster id")
        self._set_attr("cluster_id", r.cluster_id)

    def _register(self, r: BrokerRegistered, offset: int) -> None:
        if r.broker_id < 0:
            self._reject(r, "broker ids are >= 0")
        if not r.host or not 1 <= r.port <= MAX_PORT:
            self._reject(r, f"bad address {r.host!r}:{r.port}")
        if r.kafka_host is not None and (not r.kafka_host or not 1 <= r.kafka_port <= MAX_PORT):
            self._reject(r, f"bad Kafka address {r.kafka_host!r}:{r.kafka_port}")
        old = self.brokers.get(r.broker_id)
        state = BrokerState.FENCED
        if old is not None and old.state is BrokerState.DECOMMISSIONING:
            state = BrokerState.DECOMMISSIONING
        info = BrokerInfo(r.broker_id, r.host, r.port, r.rack, state, offset)
        if r.kafka_host is not None:
            info = replace(info, kafka_host=r.kafka_host, kafka_port=r.kafka_port)
        self._set(self.brokers, r.broker_id, info)

    def _broker(self, r: MetadataRecord, broker_id: int) -> BrokerInfo:
        info = self.brokers.get(broker_id)
        if info is None:
            self._reject(r, f"broker {broker_id} is not registered")
        assert info is not None
        return info

    def _fence(self, r: BrokerFenced, offset: int) -> None:
        info = self._broker(r, r.broker_id)
        if info.epoch != r.broker_epoch:
            self._reject(r, f"broker {r.broker_id}'s epoch is {info.epoch}")
        if info.state is not BrokerState.ALIVE:
            self._reject(r, f"broker {r.broker_id} is {info.state.value}, not alive")
        self._set(self.brokers, r.broker_id, replace(info, state=BrokerState.FENCED))

    def _unfence(self, r: BrokerUnfenced, offset: int) -> None:
        info = self._broker(r, r.broker_id)
        if info.epoch != r.broker_epoch:
            self._reject(r, f"broker {r.broker_id}'s epoch is {info.epoch}")
        if info.state is not BrokerState.FENCED:
            self._reject(r, f"broker {r.broker_id} is {info.state.value}, not fenced")
        self._set(self.brokers, r.broker_id, replace(info, state=BrokerState.ALIVE))

    def _decommission(self, r: BrokerDecommissioned, offset: int) -> None:
        info = self._broker(r, r.broker_id)
        if info.state is BrokerState.DECOMMISSIONING:
            self._reject(r, f"broker {r.broker_id} is already decommissioning")
        self._set(self.brokers, r.broker_id, replace(info, state=BrokerState.DECOMMISSIONING))

    def _topic(self, r: MetadataRecord, topic_id: str) -> TopicMeta:
        name = self.topic_names.get(topic_id)
        if name is None:
            self._reject(r, f"no topic has id {topic_id!r}")
        assert name is not None
        return self.topics[name]

    def _create_topic(self, r: TopicCreated, offset: int) -> None:
        if not r.name or not r.topic_id:
            self._reject(r, "empty topic name or id")
        if r.name in self.topics:
            self._reject(r, f"topic {r.name!r} exists")
        if r.topic_id in self.topic_names:
            self._reject(r, f"topic id {r.topic_id!r} is taken by {self.topic_names[r.topic_id]!r}")
        self._set(self.topics, r.name, TopicMeta(r.name, r.topic_id, dict(r.configs), ()))
        self._set(self.topic_names, r.topic_id, r.name)

    def _configs(self, r: TopicConfigsChanged, offset: int) -> None:
        topic = self._topic(r, r.topic_id)
        self._flush(topic.name)
        topic = self.topics[topic.name]
        self._set(self.topics, topic.name, replace(topic, configs=dict(r.configs)))

    def _add_partitions(self, r: PartitionsAdded, offset: int) -> None:
        topic = self._topic(r, r.topic_id)
        self._flush(topic.name)
        topic = self.topics[topic.name]
        if r.first_partition != len(topic.partitions):
            self._reject(
                r,
                f"topic {topic.name!r} has {len(topic.partitions)} partitions, not "
                f"{r.first_partition}",
            )
        if not r.replicas:
            self._reject(r, "no partitions")
        added = []
        replica_counts: dict[int, int] = {}
        leader_counts: dict[int, int] = {}
        brokers = self.brokers
        for replicas in r.replicas:
            if not replicas or len(set(replicas)) != len(replicas):
                self._reject(r, f"replicas {replicas} are empty or repeat a broker")
            for b in replicas:
                if b not in brokers:
                    self._reject(r, f"replica {b} is not a registered broker")
                replica_counts[b] = replica_counts.get(b, 0) + 1
            leader_counts[replicas[0]] = leader_counts.get(replicas[0], 0) + 1
            added.append(PartitionInfo(replicas, replicas[0], 0, replicas))
        # Counted per broker, not per partition: one undo step each.
        for b, n in replica_counts.items():
            self._count(self.replica_counts, b, n)
        for b, n in leader_counts.items():
            self._count(self.leader_counts, b, n)
        self._set(
            self.topics, topic.name, replace(topic, partitions=topic.partitions + tuple(added))
        )

    def _change_partition(self, r: PartitionChanged, offset: int) -> None:
        topic = self._topic(r, r.topic_id)
        partitions = self._partitions(topic)
        if not 0 <= r.partition < len(partitions):
            self._reject(r, f"topic {topic.name!r} has no partition {r.partition}")
        old = partitions[r.partition]
        # The leader epoch is the partition's Raft term: it never goes back, and within a
        # term there is one leader (recorded as unknown while it is fenced).
        same_term = r.leader_epoch == old.leader_epoch
        if r.leader_epoch < old.leader_epoch or (
            same_term and NO_LEADER not in (r.leader, old.leader) and r.leader != old.leader
        ):
            self._reject(
                r, f"the partition's leader epoch is {old.leader_epoch} (leader {old.leader})"
            )
        if not r.isr or len(set(r.isr)) != len(r.isr) or not set(r.isr) <= set(old.members):
            self._reject(r, f"isr {r.isr} is not a non-empty subset of replicas {old.members}")
        if r.leader != NO_LEADER and r.leader not in r.isr:
            self._reject(r, f"leader {r.leader} is not in the isr {r.isr}")
        new = PartitionInfo(old.replicas, r.leader, r.leader_epoch, r.isr, old.target)
        self._put_partition(topic, r.partition, old, new)

    def _put_partition(
        self, topic: TopicMeta, index: int, old: PartitionInfo, new: PartitionInfo
    ) -> None:
        """Replace partition ``index`` of ``topic`` (``old``) by ``new`` in the batch's edit."""
        self._count_partition(old, -1)
        self._count_partition(new, 1)
        editing = self._editing.get(topic.name)
        if editing is None:
            editing = self._editing[topic.name] = list(topic.partitions)
        editing[index] = new

    def _partition_of(
        self, r: ReassignmentStarted | ReassignmentCompleted
    ) -> tuple[TopicMeta, PartitionInfo]:
        topic = self._topic(r, r.topic_id)
        partitions = self._partitions(topic)
        if not 0 <= r.partition < len(partitions):
            self._reject(r, f"topic {topic.name!r} has no partition {r.partition}")
        return topic, partitions[r.partition]

    def _start_reassignment(self, r: ReassignmentStarted, offset: int) -> None:
        topic, old = self._partition_of(r)
        if old.target and r.target == old.replicas:
            # A cancel: the move goes back to the replicas; the partition's leader removes
            # what it added (a learner, or a promoted voter) one step at a time.
            self._put_partition(topic, r.partition, old, replace(old, target=r.target))
            return
        if old.target:
            self._reject(r, f"a move to {list(old.target)} is running")
        if not r.target or len(set(r.target)) != len(r.target):
            self._reject(r, f"target {list(r.target)} is empty or repeats a broker")
        for b in r.target:
            if b not in self.brokers:
                self._reject(r, f"broker {b} is not registered")
        if r.target == old.replicas:
            self._reject(r, f"the replicas are {list(old.replicas)} already")
        self._put_partition(topic, r.partition, old, replace(old, target=r.target))

    def _complete_reassignment(self, r: ReassignmentCompleted, offset: int) -> None:
        topic, old = self._partition_of(r)
        if not old.target or old.target != r.target:
            self._reject(r, f"the running move is to {list(old.target)}, not to {list(r.target)}")
        if r.reporter not in r.target:
            self._reject(r, f"the reporter {r.reporter} is not one of the target's brokers")
        # New replicas were promoted to voters only once caught up: they are in sync.
        isr = tuple(b for b in r.target if b in old.isr or b not in old.replicas)
        leader = old.leader if old.leader in r.target else NO_LEADER
        if leader != NO_LEADER and leader not in isr:
            isr = (*isr, leader)
        new = PartitionInfo(r.target, leader, old.leader_epoch, isr)
        self._put_partition(topic, r.partition, old, new)

    def _delete_topic(self, r: TopicDeleted, offset: int) -> None:
        topic = self._topic(r, r.topic_id)
        self._flush(topic.name)
        topic = self.topics[topic.name]
        for p in topic.partitions:
            self._count_partition(p, -1)
        self._delete(self.topics, topic.name)
        self._delete(self.topic_names, topic.topic_id)

    def _producer_ids(self, r: ProducerIdsAllocated, offset: int) -> None:
        self._broker(r, r.broker_id)
        if r.first_producer_id != self.next_producer_id or r.count < 1:
            self._reject(
                r, f"the next free producer id is {self.next_producer_id} (count must be >= 1)"
            )
        self._set_attr("next_producer_id", r.first_producer_id + r.count)
        self._set(self.producer_id_blocks, r.broker_id, (r.first_producer_id, r.count))

    def _voters(self, r: VotersChanged, offset: int) -> None:
        if not r.voters or len(set(r.voters)) != len(r.voters) or min(r.voters) < 0:
            self._reject(r, "voters must be distinct node ids >= 0, at least one")
        self._set_attr("voters", tuple(sorted(r.voters)))

    # --- reading ------------------------------------------------------------------------

    def live_brokers(self) -> list[BrokerInfo]:
        """The brokers that may take new replicas and leaderships (alive), by id."""
        return sorted(
            (b for b in self.brokers.values() if b.state is BrokerState.ALIVE),
            key=lambda b: b.broker_id,
        )

    def topic_by_id(self, topic_id: str) -> TopicMeta | None:
        name = self.topic_names.get(topic_id)
        return None if name is None else self.topics[name]


def _restore(table: dict[Any, Any], key: object, old: object) -> None:
    if old is _MISSING:
        del table[key]
    else:
        table[key] = old


_HANDLERS: dict[type[Any], Callable[[MetadataState, Any, int], None]] = {
    ClusterCreated: MetadataState._cluster,
    BrokerRegistered: MetadataState._register,
    BrokerFenced: MetadataState._fence,
    BrokerUnfenced: MetadataState._unfence,
    BrokerDecommissioned: MetadataState._decommission,
    TopicCreated: MetadataState._create_topic,
    TopicConfigsChanged: MetadataState._configs,
    PartitionsAdded: MetadataState._add_partitions,
    PartitionChanged: MetadataState._change_partition,
    TopicDeleted: MetadataState._delete_topic,
    ProducerIdsAllocated: MetadataState._producer_ids,
    VotersChanged: MetadataState._voters,
    ReassignmentStarted: MetadataState._start_reassignment,
    ReassignmentCompleted: MetadataState._complete_reassignment,
}
