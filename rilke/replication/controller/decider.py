"""The controller leader's logic: requests in, records to propose out.

:class:`ControllerDecider` validates a request against the applied :class:`MetadataState` and
returns the records that carry it out (an empty list: nothing to change), or raises the
request's specific error, changing nothing. The caller proposes the records as one batch
(:func:`records.encode_batch`), and answers the request once that entry is committed and
applied. A record that was valid when decided but is not when applied (two requests decided
against the same state) is rejected by the state machine on every node alike; the applier
reports that error for the entry.

Heartbeats are the decider's own soft state, as in Kafka's KRaft: the time of each broker's
last heartbeat, kept only on the leader and never logged. A new leader calls
:meth:`become_leader` with the time, which gives every broker a full session before it can
be fenced. Only what heartbeats change (fence, unfence) becomes records.

Pure: no I/O; time is passed in (``now_ms``). Not thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from rilke.errors import (
    BrokerNotRegisteredError,
    DuplicateBrokerRegistrationError,
    InvalidPartitionsError,
    InvalidRequestError,
    InvalidTopicError,
    StaleBrokerEpochError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from rilke.replication.controller.moves import (
    Move,
    check_target,
    plan_decommission,
    plan_rebalance,
)
from rilke.replication.controller.placement import place_partitions
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
from rilke.replication.controller.state import (
    BrokerInfo,
    BrokerState,
    MetadataState,
    PartitionInfo,
    TopicMeta,
)

DEFAULT_SESSION_TIMEOUT_MS = 9_000  # Kafka's broker.session.timeout.ms
DEFAULT_PRODUCER_ID_BLOCK_SIZE = 1_000  # Kafka's block size


def _check_name(name: str, num_partitions: int) -> None:
    if not name:
        raise InvalidTopicError("topic name is empty")


@dataclass(frozen=True, slots=True)
class LeadershipReport:
    """A partition the reporting broker leads, as its Raft group sees it: the leader epoch is
    the group's term, ``isr`` the replicas in sync with it (BrokerHeartbeat's
    PartitionLeadership)."""

    topic: str
    partition: int
    leader_epoch: int
    isr: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeciderSettings:
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    """A broker with no heartbeat for this long is fenced."""
    producer_id_block_size: int = DEFAULT_PRODUCER_ID_BLOCK_SIZE


class ControllerDecider:
    """Decides on the controller leader. ``validate_topic(name, num_partitions)`` raises the
    broker's own error for a name it cannot hold (the server passes its file-system rules;
    the default only refuses an empty name)."""

    def __init__(
        self,
        state: MetadataState,
        settings: DeciderSettings | None = None,
        validate_topic: Callable[[str, int], None] = _check_name,
    ) -> None:
        self.state = state
        self.settings = settings or DeciderSettings()
        self._validate_topic = validate_topic
        self._last_heartbeat_ms: dict[int, int] = {}

    # --- leadership and the cluster -----------------------------------------------------

    def become_leader(self, now_ms: int) -> None:
        """This node now leads the controller: every registered broker counts as heard from
        at ``now_ms`` (a full session before any is fenced)."""
        self._last_heartbeat_ms = dict.fromkeys(self.state.brokers, now_ms)

    def bootstrap(self, cluster_id: str, voters: Sequence[int]) -> list[MetadataRecord]:
        """The first records of a new cluster's log (none if it has its id already)."""
        if self.state.cluster_id is not None:
            return []
        if not cluster_id:
            raise InvalidRequestError("the cluster id is empty")
        return [ClusterCreated(cluster_id), VotersChanged(tuple(sorted(voters)))]

    def change_voters(self, voters: Sequence[int]) -> list[MetadataRecord]:
        if not voters or len(set(voters)) != len(voters):
            raise InvalidRequestError(f"voters {list(voters)} must be distinct, at least one")
        wanted = tuple(sorted(voters))
        return [] if wanted == self.state.voters else [VotersChanged(wanted)]

    # --- brokers ------------------------------------------------------------------------

    def register_broker(
        self,
        broker_id: int,
        host: str,
        port: int,
        rack: str | None,
        now_ms: int,
        *,
        kafka: tuple[str, int] | None = None,
    ) -> list[MetadataRecord]:
        """A broker starts. It is fenced until its first heartbeat with the epoch this
        registration gets (the record's offset). ``kafka``: its advertised Kafka listener
        (None: it has none). Raises DuplicateBrokerRegistrationError if a live broker holds
        the id at another address and heartbeats within the session."""
        if broker_id < 0:
            raise InvalidRequestError(f"broker id must be >= 0, got {broker_id}")
        if not host or not 1 <= port <= 65535:
            raise InvalidRequestError(f"bad broker address {host!r}:{port}")
        if kafka is not None and (not kafka[0] or not 1 <= kafka[1] <= 65535):
            raise InvalidRequestError(f"bad Kafka listener address {kafka[0]!r}:{kafka[1]}")
        old = self.state.brokers.get(broker_id)
        if (
            old is not None
            and old.state is BrokerState.ALIVE
            and (old.host, old.port) != (host, port)
            and not self._expired(broker_id, now_ms)
        ):
            raise DuplicateBrokerRegistrationError(
                f"broker id {broker_id} is held by the live broker at {old.host}:{old.port}; "
                f"{host}:{port} cannot register with it"
            )
        self._last_heartbeat_ms[broker_id] = now_ms
        records: list[MetadataRecord] = []
        if old is not None and old.state is BrokerState.ALIVE:
            # The old incarnation is gone: it leads nothing any more.
            records += self._fence_records(old)
        if kafka is None:
            records.append(BrokerRegistered(broker_id, host, port, rack))
        else:
            records.append(BrokerRegistered(broker_id, host, port, rack, kafka[0], kafka[1]))
        return records

    def heartbeat(
        self,
        broker_id: int,
        broker_epoch: int,
        now_ms: int,
        leaderships: Sequence[LeadershipReport] = (),
    ) -> list[MetadataRecord]:
        """A broker's heartbeat: records it, unfences a fenced broker, and records the
        leaderships it reports (:meth:`leadership_changes`). Leaders are elected by each
        partition's Raft group, never chosen here."""
        info = self._require_broker(broker_id)
        if broker_epoch != info.epoch:
            raise StaleBrokerEpochError(
                f"broker {broker_id} heartbeats with epoch {broker_epoch}, but its latest "
                f"registration has epoch {info.epoch}: register again"
            )
        self._last_heartbeat_ms[broker_id] = now_ms
        records: list[MetadataRecord] = []
        if info.state is BrokerState.FENCED:
            records.append(BrokerUnfenced(broker_id, info.epoch))
        return records + self.leadership_changes(broker_id, leaderships)

    def leadership_changes(
        self, broker_id: int, reports: Sequence[LeadershipReport]
    ) -> list[MetadataRecord]:
        """PartitionChanged records for what ``broker_id`` reports leading: taken when the
        reported epoch (its Raft term) is above the recorded one, or equal to it with the
        same leader (or none recorded) and other in-sync replicas. A report of an older
        term, of a partition it is no replica of, or of an unknown one is ignored (the
        report is stale: Raft has moved on). The in-sync replicas recorded are the reported
        ones that are replicas and not fenced (the leader always), in replica order."""
        records: list[MetadataRecord] = []
        brokers = self.state.brokers
        for report in reports:
            topic = self.state.topics.get(report.topic)
            if topic is None or not 0 <= report.partition < len(topic.partitions):
                continue
            part = topic.partitions[report.partition]
            if broker_id not in part.replicas or report.leader_epoch < part.leader_epoch:
                continue
            if report.leader_epoch == part.leader_epoch and part.leader not in (
                NO_LEADER,
                broker_id,
            ):
                continue  # one leader per term: that term's is recorded already
            reported = set(report.isr)
            isr = tuple(
                r
                for r in part.replicas
                if r == broker_id
                or (r in reported and r in brokers and brokers[r].state is not BrokerState.FENCED)
            )
            if (broker_id, report.leader_epoch, isr) == (part.leader, part.leader_epoch, part.isr):
                continue
            records.append(
                PartitionChanged(
                    topic.topic_id, report.partition, broker_id, report.leader_epoch, isr
                )
            )
        return records

    def fence_expired(self, now_ms: int) -> list[MetadataRecord]:
        """Fence every alive broker whose last heartbeat is older than the session: its
        leaderships are recorded as unknown (Raft elects the next leader, which reports) and
        it leaves the in-sync replicas."""
        records: list[MetadataRecord] = []
        expired = [b for b in self.state.live_brokers() if self._expired(b.broker_id, now_ms)]
        if expired:
            records += self._fence_records(*expired)
        return records

    def decommission_broker(self, broker_id: int) -> list[MetadataRecord]:
        """Mark a broker decommissioning: no new replicas, and a reassignment of every
        partition with a replica on it (``moves.plan_decommission``). Its leaderships stay
        until its partitions' Raft groups hand them over (leader transfer), as leaders
        report. Asked again while it drains, it starts the moves still missing. Raises
        BrokerNotRegisteredError, and the plan's errors (nothing changes)."""
        info = self._require_broker(broker_id)
        moves = self._starts(plan_decommission(self.state, broker_id))
        if info.state is BrokerState.DECOMMISSIONING:
            return moves
        return [BrokerDecommissioned(broker_id), *moves]

    # --- moving partitions --------------------------------------------------------------

    def reassign_partition(
        self, name: str, partition: int, replicas: Sequence[int], *, force: bool = False
    ) -> list[MetadataRecord]:
        """Start moving a partition to ``replicas`` (nothing when it has them, in that
        order, already). Raises what ``moves.check_target`` raises."""
        part = check_target(self.state, name, partition, replicas, force=force)
        if tuple(replicas) == part.replicas:
            return []
        return self._starts([(name, partition, tuple(replicas))])

    def cancel_reassignment(self, name: str, partition: int) -> list[MetadataRecord]:
        """Cancel the move of a partition: its target becomes its replicas again, so the
        leader removes the new replicas it added and the old ones stay (nothing when it is
        cancelled already). Raises UnknownTopicOrPartitionError, InvalidRequestError (no move
        runs)."""
        topic = self._require_topic(name)
        if not 0 <= partition < len(topic.partitions):
            raise UnknownTopicOrPartitionError(f"topic {name!r} has no partition {partition}")
        part = topic.partitions[partition]
        if not part.target:
            raise InvalidRequestError(f"{name}-{partition}: no move runs, nothing to cancel")
        if part.target == part.replicas:
            return []
        return self._starts([(name, partition, part.replicas)])

    def rebalance(self) -> list[MetadataRecord]:
        """Start the moves of ``moves.plan_rebalance`` (none when balanced)."""
        return self._starts(plan_rebalance(self.state))

    def complete_reassignment(
        self, name: str, partition: int, target: Sequence[int], reporter: int
    ) -> list[MetadataRecord]:
        """The partition's leader ``reporter`` reports its Raft group's voters are the
        target's: the replicas become the target. Nothing when that is done already (a
        retried report). Raises UnknownTopicOrPartitionError, InvalidRequestError (no such
        move runs)."""
        topic = self._require_topic(name)
        if not 0 <= partition < len(topic.partitions):
            raise UnknownTopicOrPartitionError(f"topic {name!r} has no partition {partition}")
        part = topic.partitions[partition]
        wanted = tuple(target)
        if not part.target and part.replicas == wanted:
            return []
        if part.target != wanted:
            raise InvalidRequestError(
                f"{name}-{partition}: no move to {list(wanted)} runs (target: "
                f"{list(part.target) or 'none'})"
            )
        return [ReassignmentCompleted(topic.topic_id, partition, wanted, reporter)]

    def _starts(self, moves: Sequence[Move]) -> list[MetadataRecord]:
        topics = self.state.topics
        return [ReassignmentStarted(topics[n].topic_id, p, target) for n, p, target in moves]

    def _expired(self, broker_id: int, now_ms: int) -> bool:
        last = self._last_heartbeat_ms.get(broker_id)
        if last is None:
            # Not heard of since this leader started (become_leader not called for it).
            self._last_heartbeat_ms[broker_id] = now_ms
            return False
        return now_ms - last >= self.settings.session_timeout_ms

    def _fence_records(self, *brokers: BrokerInfo) -> list[MetadataRecord]:
        fenced: list[MetadataRecord] = [BrokerFenced(b.broker_id, b.epoch) for b in brokers]
        return fenced + self._move_off({b.broker_id for b in brokers})

    def _move_off(self, gone: set[int]) -> list[MetadataRecord]:
        """Partition changes taking the ``gone`` brokers out of leadership (leader unknown,
        same epoch: the Raft group elects the next, which reports a higher term) and the
        isr (the last in-sync replica stays in it, as Kafka keeps it)."""
        records: list[MetadataRecord] = []
        for topic, p, part in self._partitions():
            if part.leader not in gone and not gone & set(part.isr):
                continue
            isr = tuple(r for r in part.isr if r not in gone) or part.isr
            leader = NO_LEADER if part.leader in gone else part.leader
            if leader != NO_LEADER and leader not in isr:
                leader = NO_LEADER
            if (leader, isr) != (part.leader, part.isr):
                records.append(PartitionChanged(topic.topic_id, p, leader, part.leader_epoch, isr))
        return records

    # --- topics -------------------------------------------------------------------------

    def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        topic_id: str,
    ) -> list[MetadataRecord]:
        """A new topic with its partitions placed over the live brokers. Raises
        TopicAlreadyExistsError, InvalidTopicError, InvalidPartitionsError,
        InvalidReplicationFactorError (R above the live brokers) with what is wrong."""
        if name in self.state.topics:
            raise TopicAlreadyExistsError(f"topic {name!r} already exists")
        self._validate_topic(name, num_partitions)
        if not topic_id or topic_id in self.state.topic_names:
            raise InvalidRequestError(f"topic id {topic_id!r} is empty or taken")
        replicas = self._place(num_partitions, replication_factor)
        return [
            TopicCreated(name, topic_id, dict(configs)),
            PartitionsAdded(topic_id, 0, tuple(replicas)),
        ]

    def create_partitions(self, name: str, total: int) -> list[MetadataRecord]:
        """Grow a topic to ``total`` partitions (Kafka's CreatePartitions), with the topic's
        replication factor (that of its partition 0)."""
        topic = self._require_topic(name)
        have = len(topic.partitions)
        if total <= have:
            raise InvalidPartitionsError(
                f"topic {name!r} has {have} partitions; the new count must be larger, got {total}"
            )
        self._validate_topic(name, total)
        factor = len(topic.partitions[0].replicas) if topic.partitions else 1
        replicas = self._place(total - have, factor)
        return [PartitionsAdded(topic.topic_id, have, tuple(replicas))]

    def delete_topic(self, name: str) -> list[MetadataRecord]:
        return [TopicDeleted(self._require_topic(name).topic_id)]

    def alter_configs(self, name: str, configs: Mapping[str, str]) -> list[MetadataRecord]:
        """Replace the configs set on a topic (the caller validated their values)."""
        topic = self._require_topic(name)
        if dict(configs) == dict(topic.configs):
            return []
        return [TopicConfigsChanged(topic.topic_id, dict(configs))]

    # --- producer ids -------------------------------------------------------------------

    def allocate_producer_ids(self, broker_id: int, count: int = 0) -> list[MetadataRecord]:
        """The next block of producer ids for a broker (``count`` 0: the default size)."""
        self._require_broker(broker_id)
        count = count or self.settings.producer_id_block_size
        if count < 1:
            raise InvalidRequestError(f"producer id block size must be >= 1, got {count}")
        return [ProducerIdsAllocated(broker_id, self.state.next_producer_id, count)]

    # --- helpers ------------------------------------------------------------------------

    def _place(self, num_partitions: int, replication_factor: int) -> list[tuple[int, ...]]:
        s = self.state
        return place_partitions(
            s.live_brokers(), num_partitions, replication_factor, s.replica_counts, s.leader_counts
        )

    def _require_broker(self, broker_id: int) -> BrokerInfo:
        info = self.state.brokers.get(broker_id)
        if info is None:
            raise BrokerNotRegisteredError(f"broker {broker_id} is not registered")
        return info

    def _require_topic(self, name: str) -> TopicMeta:
        topic = self.state.topics.get(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        return topic

    def _partitions(self) -> Iterator[tuple[TopicMeta, int, PartitionInfo]]:
        for topic in self.state.topics.values():
            for p, part in enumerate(topic.partitions):
                yield topic, p, part
