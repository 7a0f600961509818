"""ClusterNode: everything a node of a cluster runs beside its broker.

`rilke server --initial-voters ...` (or ``--join HOST:PORT``) builds one; without either,
nothing here runs and the broker is today's single node. The broker process calls, in order:

1. :meth:`open` (before the Broker exists): the cluster id (derived from the initial voters,
   or the answer of the node joined through), the data directory's identity checked, the
   node's one :class:`ReplicationHost` on the broker's gRPC server, the metadata group
   started and its committed log replayed (so the broker's partitions are built knowing the
   metadata);
2. :meth:`partition_factory` for the Broker, then :meth:`attach` with the Broker (the
   Cluster service on the server, the topic mirror, the admin the Admin service uses);
3. after the server started, :meth:`start` (broker registration and heartbeats, the mirror);
4. :meth:`close` before the server stops.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import grpc

from rilke.errors import InvalidRequestError, RilkeError, for_code
from rilke.partition.interface import Leadership, PartitionFactory
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc
from rilke.replication.controller import MetadataView
from rilke.replication.held_groups import HELD_DIR, HeldGroups
from rilke.replication.host import ReplicationHost
from rilke.replication.partition import ReplicatedPartition, ReplicatedPartitionFactory
from rilke.replication.raft.types import ConfChange, ConfChangeType, Config
from rilke.replication.transport import TransportConfig
from rilke.server.broker import Broker
from rilke.server.cluster.admin import ClusterAdmin, check_topic
from rilke.server.cluster.broker_agent import BrokerAgent
from rilke.server.cluster.controller import (
    METADATA_DIR,
    METADATA_GROUP,
    ClusterController,
    metadata_state_lost,
    open_metadata_log,
)
from rilke.server.cluster.forward import ControllerClient
from rilke.server.cluster.identity import (
    NodeIdentity,
    check_identity,
    cluster_id_of_voters,
    read_identity,
)
from rilke.server.cluster.mover import PartitionMover
from rilke.server.cluster.partitions import ClusterPartitionFactory, fresher_view
from rilke.server.cluster.producer_ids import ClusterProducerIds
from rilke.server.cluster.service import ClusterService
from rilke.server.cluster.topic_mirror import TopicMirror
from rilke.server.config import BrokerConfig
from rilke.server.partition import LocalPartitionFactory
from rilke.storage import files
from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 60.0
JOIN_TIMEOUT_S = 60.0
MEMBERSHIP_TIMEOUT_S = 30.0
CATCH_UP_TIMEOUT_S = 20.0
FORMED_CHECK_TIMEOUT_S = 2.0
"""A node starting with an empty data dir asks each other voter at most this long whether
the cluster formed (:meth:`ClusterNode._formed_without_us`)."""


PARTITION_ELECTION_TIMEOUT_TICKS = 6
"""A partition group's election timeout in Raft ticks (100 ms): a follower campaigns after
0.6-1.2 s without its leader, so a failover's first acknowledged write comes within 1.5 s
(Redpanda's election_timeout_ms is 1.5 s). Pre-vote and check-quorum stay on: a stale
leader steps down within 0.6 s, and a node that merely missed heartbeats disrupts nobody.
The metadata group keeps the core's 10."""


class ClusterNode:
    def __init__(
        self, config: BrokerConfig, server: grpc.aio.Server, advertised: tuple[str, int]
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self._server = server
        self.advertised = advertised
        self.address = f"{advertised[0]}:{advertised[1]}"
        self._data_dir = Path(config.data_dir)
        self._name_max = files.name_max(self._data_dir)
        self._voters: dict[int, str] = {}
        self._known: dict[int, str] = {}  # node id -> address, before the metadata has them
        self.host: ReplicationHost | None = None
        self.controller: ClusterController | None = None
        self._log: PartitionLog | None = None
        self._client: ControllerClient | None = None
        self._agent: BrokerAgent | None = None
        self._mirror_task: asyncio.Task[None] | None = None
        self.admin: ClusterAdmin | None = None
        self.producer_ids: ClusterProducerIds | None = None
        self._mirror: TopicMirror | None = None
        self._mover: PartitionMover | None = None
        self.partitions: ClusterPartitionFactory | None = None
        self._broker: Broker | None = None
        self._served: tuple[MetadataView, int, MetadataView] | None = None
        self._checked: tuple[MetadataView, int] | None = None  # (view, generation) reported
        # The partitions' Raft settings (node id and voters per group; the core's defaults
        # but for the election timeout, PARTITION_ELECTION_TIMEOUT_TICKS).
        self._raft_config = Config(
            self.node_id, election_timeout_ticks=PARTITION_ELECTION_TIMEOUT_TICKS
        )

    # --- 1. open ------------------------------------------------------------------------

    async def open(self) -> None:
        """Raises NodeIdentityError, InvalidConfigError, RilkeError (a join refused or not
        answered), OSError."""
        config = self.config
        have = read_identity(self._data_dir) if config.join else None
        if have is not None and have.voters and have.node_id == self.node_id:
            # Joined before: it knows its cluster; the metadata it replays names the nodes.
            cluster_id, voters = have.cluster_id, dict(have.voters)
            known = dict(voters)
        elif config.join:
            cluster_id, voters, known = await self._ask_to_join(config.join)
        else:
            voters = dict(config.initial_voters)
            cluster_id = cluster_id_of_voters(config.initial_voters)
            known = dict(voters)
        joined = tuple(sorted(voters.items())) if config.join else ()
        node_known = read_identity(self._data_dir) is not None
        formed_at = None
        if not node_known and not config.join:
            formed_at = await self._formed_without_us(cluster_id, known)
        check_identity(self._data_dir, NodeIdentity(cluster_id, self.node_id, joined))
        self._voters, self._known = voters, known
        self._log, storage = open_metadata_log(self._data_dir)
        if formed_at is not None and storage.fresh:
            log.warning(
                "node %d: an empty data dir, but %s: the cluster formed without this node's "
                "data (its data dir wiped, or a late first start): its metadata replica votes "
                "only once a leader has caught it up",
                self.node_id,
                formed_at,
            )
        lost = metadata_state_lost(storage, node_known=node_known or formed_at is not None)
        committed = storage.initial_state()[0].commit
        peers = {n: a for n, a in known.items() if n != self.node_id}
        self.host = host = ReplicationHost(
            TransportConfig(cluster_id, self.node_id, self.address), peers, server=self._server
        )
        self.controller = controller = ClusterController(
            self.node_id,
            host.runtime,
            storage,
            cluster_id=cluster_id,
            bootstrap_voters=sorted(voters),
            validate_topic=lambda name, n: check_topic(name, n, self._name_max),
            snapshot_bytes=config.metadata_snapshot_bytes,
            storage_lost=lost,
        )
        controller.applier.subscribe(self._metadata_changed)
        controller.start()
        await host.start()
        await controller.wait_applied(committed, REPLAY_TIMEOUT_S)
        log.info(
            "node %d: cluster %s, metadata replayed to index %d (voters %s)",
            self.node_id,
            cluster_id,
            controller.applied_index,
            sorted(voters),
        )

    async def _formed_without_us(self, cluster_id: str, known: dict[int, str]) -> str | None:
        """With an empty data dir, whether the cluster already formed: ``"node N at ADDR holds
        metadata entries 1-M of this cluster"`` from the first peer answering so, else None.

        A node whose whole data dir was wiped (its identity with it) looks like a first
        start, and a voter with an empty log grants its vote to any candidate: with the one
        peer that held a committed entry down, it could elect a peer that lacks it, and the
        entry is lost. So it asks the other voters once, at the same time, each call within
        FORMED_CHECK_TIMEOUT_S. One whose metadata log holds an entry (only a leader, elected
        by a quorum, writes one; the applied offset would not do: it is 0 after a restart
        until a leader tells the commit) proves the cluster formed, and the node starts its
        metadata replica as one that lost its state (it votes once a leader caught it up).
        Peers not serving yet (a first start, where every node is here) refuse the
        connection at once, so a first start does not wait; a peer that cannot be reached proves nothing either way."""
        peers = {n: a for n, a in known.items() if n != self.node_id}
        if not peers:
            return None

        async def ask(node: int, address: str) -> str | None:
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    stub = pb_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]
                    info = await stub.DescribeCluster(
                        pb.DescribeClusterRequest(), timeout=FORMED_CHECK_TIMEOUT_S
                    )
            except grpc.aio.AioRpcError as e:
                log.info(
                    "node %d: asking node %d at %s whether the cluster formed: %s",
                    self.node_id, node, address, e.code().name,
                )  # fmt: skip
                return None
            if info.cluster_id != cluster_id or info.metadata_last_index <= 0:
                return None
            last = info.metadata_last_index
            return f"node {node} at {address} holds metadata entries 1-{last} of this cluster"

        answers = await asyncio.gather(*(ask(n, a) for n, a in sorted(peers.items())))
        return next((a for a in answers if a is not None), None)

    async def _ask_to_join(self, target: str) -> tuple[str, dict[int, str], dict[int, str]]:
        """Ask ``target`` (any node) to add this node; retried until JOIN_TIMEOUT_S."""
        have = read_identity(self._data_dir)
        if have is not None and have.node_id != self.node_id:
            check_identity(self._data_dir, NodeIdentity(have.cluster_id, self.node_id))
        request = pb.JoinRequest(
            node_id=self.node_id,
            host=self.advertised[0],
            port=self.advertised[1],
            cluster_id=have.cluster_id if have is not None else "",
        )
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        last = ""
        async with grpc.aio.insecure_channel(target) as channel:
            stub = pb_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]
            while time.monotonic() < deadline:
                try:
                    response = await stub.Join(request, timeout=10.0)
                except grpc.aio.AioRpcError as e:
                    last = f"{e.code().name}: {e.details()}"
                else:
                    if not response.error.code:
                        return (
                            response.cluster_id,
                            {n.node_id: n.address for n in response.voters},
                            {n.node_id: n.address for n in response.nodes},
                        )
                    error = for_code(response.error.code)(response.error.message)
                    if not error.retriable:
                        raise RilkeError(f"joining the cluster through {target}: {error}")
                    last = str(error)
                log.info(
                    "node %d: joining through %s: %s; trying again", self.node_id, target, last
                )
                await asyncio.sleep(0.5)
        raise RilkeError(f"joining the cluster through {target}: no answer in time ({last})")

    # --- 2. the broker ------------------------------------------------------------------

    def view(self) -> MetadataView:
        assert self.controller is not None
        return self.controller.view()

    def served_view(self) -> MetadataView:
        """The metadata as this node serves it to clients (Metadata, DescribeTopics): the
        applied view with its own Raft groups' fresher leaders (``partitions.fresher_view``),
        recomputed only when the view or a leadership here changed."""
        view = self.view()
        factory, broker = self.partitions, self._broker
        if factory is None or broker is None:
            return view
        generation = factory.leadership_generation
        served = self._served
        if served is None or served[0] is not view or served[1] != generation:
            parts = factory.replicated(broker.partitions_by_key().values())
            served = self._served = (view, generation, fresher_view(view, parts, self.node_id))
        return served[2]

    def partition_factory(self, local: PartitionFactory) -> PartitionFactory:
        assert self.host is not None
        slots = local.flush_slots if isinstance(local, LocalPartitionFactory) else None
        replicated = ReplicatedPartitionFactory(
            self.host,
            self.node_id,
            flush_slots=slots,
            raft_config=self._raft_config,
            held=HeldGroups(self._data_dir / HELD_DIR),
        )
        self.partitions = ClusterPartitionFactory(self.node_id, self.view, local, replicated)
        return self.partitions

    def attach(self, broker: Broker) -> ClusterService:
        """Build what needs the broker; returns the Cluster service (registered on the
        server by the caller, before it starts)."""
        controller = self.controller
        assert controller is not None
        service = ClusterService(
            controller,
            self.config.log,
            self._voters,
            change_membership=self._change_membership,
            add_learner=self._add_learner,
        )
        self._client = ControllerClient(controller, service, self._address_of)
        service.forward = self._client.call
        assert self.partitions is not None
        mirror = TopicMirror(
            broker,
            self.view,
            self.node_id,
            self._data_dir / METADATA_DIR,
            changed_kind=self.partitions.changed_kind,
        )
        self._mirror = mirror
        controller.applier.subscribe(mirror.changed)
        self.admin = ClusterAdmin(self.config, controller, self._client, mirror, self._name_max)
        self._broker = broker
        self._agent = BrokerAgent(
            self._client,
            controller.cluster_id,
            self.node_id,
            self.advertised,
            leaderships=self.leaderships_to_report,
        )
        self.partitions.leadership_listeners.append(self._leadership_changed)
        self.producer_ids = ClusterProducerIds(self._producer_id_block)
        assert self.host is not None
        self._mover = PartitionMover(
            self.node_id, self.host.runtime, self.view, self._report_move_done
        )
        controller.applier.subscribe(self._mover.changed)
        self._mover.start()
        return service

    async def _report_move_done(self, topic: str, partition: int, target: tuple[int, ...]) -> None:
        """Tell the controller this node's group of the partition has the target's voters."""
        assert self._client is not None
        done = pb.ReassignmentDone(
            topic=topic, partition=partition, target=target, reporter=self.node_id
        )
        await self._client.call(
            "ControllerWrite", pb.ControllerWriteRequest(complete_reassignment=done)
        )

    async def _producer_id_block(self) -> tuple[int, int]:
        assert self._client is not None
        ask = pb.ProducerIdsRequest(broker_id=self.node_id)
        response = await self._client.call(
            "ControllerWrite", pb.ControllerWriteRequest(allocate_producer_ids=ask)
        )
        return response.first_producer_id, response.producer_id_count

    def _leadership_changed(self, leadership: Leadership) -> None:
        if leadership.leader_id == self.node_id and self._agent is not None:
            self._agent.report_soon()

    def leaderships_to_report(self) -> list[pb.PartitionLeadership]:
        """The partitions whose Raft group this node leads where the applied metadata shows
        another leader, epoch or in-sync replicas (the heartbeat's report). Each partition's
        leadership as last notified (in-sync replicas as of its last leader change or
        maintenance pass); nothing is looked at again until the metadata or a leadership
        changes after a pass that found nothing to report."""
        broker, factory = self._broker, self.partitions
        if broker is None or factory is None:
            return []
        view = self.view()
        generation = factory.leadership_generation
        checked = self._checked
        if checked is not None and checked[0] is view and checked[1] == generation:
            return []
        out = self._leaderships_differing(broker, view)
        self._checked = None if out else (view, generation)
        return out

    def _leaderships_differing(
        self, broker: Broker, view: MetadataView
    ) -> list[pb.PartitionLeadership]:
        out = []
        for (topic, p), part in broker.partitions_by_key().items():
            if not isinstance(part, ReplicatedPartition) or not part.believes_leader:
                continue
            meta = view.partition(topic, p)
            if meta is None:
                continue
            now = part.known_leadership
            if (meta.leader, meta.leader_epoch, meta.isr) != (
                self.node_id,
                now.leader_epoch,
                tuple(r for r in meta.replicas if r in now.in_sync_replicas),
            ):
                out.append(
                    pb.PartitionLeadership(
                        topic=topic,
                        partition=p,
                        leader_id=self.node_id,
                        leader_epoch=now.leader_epoch,
                        isr=now.in_sync_replicas,
                    )
                )
        return out

    def on_topics_deleted(self, callback: Callable[[], None]) -> None:
        """``callback()`` after the mirror deleted topics (long polls look again)."""
        assert self._mirror is not None
        self._mirror.on_deleted = callback

    def _address_of(self, node: int) -> str | None:
        info = self.view().brokers.get(node)
        if info is not None:
            return f"{info.host}:{info.port}"
        return self._known.get(node)

    def _metadata_changed(self) -> None:
        """Every broker of the metadata is a peer of the transport (a node that joined)."""
        if self.host is None or self.controller is None:
            return
        for b in self.controller.view().brokers.values():
            if b.broker_id != self.node_id:
                self.host.add_peer(b.broker_id, f"{b.host}:{b.port}")

    # --- membership (on the controller leader) ------------------------------------------

    async def _add_learner(self, node: int, address: str) -> None:
        assert self.host is not None
        self.host.add_peer(node, address)
        voters, learners = self.members()
        if node in voters or node in learners:
            return  # a node that joined before, restarting
        await self._propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node))
        log.info("node %d: node %d joined as a learner at %s", self.node_id, node, address)

    async def _change_membership(self, node: int, promote: bool) -> None:
        voters, learners = self.members()
        if promote:
            if node in voters:
                return
            if node not in learners:
                raise InvalidRequestError(
                    f"node {node} is not a member of the metadata group: start it with --join "
                    "first; it becomes a voter once it has caught up"
                )
            change = ConfChange(ConfChangeType.ADD_VOTER, node)
        else:
            if node not in voters:
                raise InvalidRequestError(f"node {node} is not a voter (voters: {sorted(voters)})")
            if len(voters) == 1:
                raise InvalidRequestError(f"node {node} is the last voter")
            if node == self.node_id:
                raise InvalidRequestError(
                    f"node {node} leads the controller: it cannot remove itself; try again "
                    "after another node leads"
                )
            change = ConfChange(ConfChangeType.ADD_LEARNER, node)
        await self._propose_conf_change(change)
        assert self.controller is not None
        new_voters, _ = self.members()
        await self.controller.decide(lambda d: d.change_voters(sorted(new_voters)))
        log.info("node %d: metadata voters now %s", self.node_id, sorted(new_voters))

    async def _propose_conf_change(self, change: ConfChange) -> None:
        assert self.host is not None
        future = self.host.runtime.propose_conf_change(
            METADATA_GROUP, change, timeout_s=MEMBERSHIP_TIMEOUT_S
        )
        await future

    def members(self) -> tuple[frozenset[int], frozenset[int]]:
        assert self.controller is not None
        return self.controller.members()

    # --- 3. and 4. ----------------------------------------------------------------------

    def set_kafka_listener(self, host: str, port: int) -> None:
        """This node's advertised Kafka listener, registered with the controller (and so
        listed by every node's Kafka Metadata). Call after :meth:`attach`, before
        :meth:`start`."""
        assert self._agent is not None
        self._agent.set_kafka_listener(host, port)

    async def start(self) -> None:
        """Start heartbeating and mirroring, then wait (up to CATCH_UP_TIMEOUT_S) until the
        metadata is applied up to what this node's broker reflected before a restart (its
        ``mirrored-index``), so it does not answer from an older view (a topic it holds
        "unknown"); past the deadline (no quorum yet) it serves what it has, and says so."""
        assert self._agent is not None and self._mirror is not None
        mirror = self._mirror
        mirror.start()
        self._agent.start()
        try:
            await mirror.wait_synced(mirror.floor_index, CATCH_UP_TIMEOUT_S)
        except TimeoutError:
            log.warning(
                "node %d: the metadata is not yet applied to index %d (applied: %d) after "
                "%.0f s: serving meanwhile; it catches up once the controller has a quorum",
                self.node_id,
                mirror.floor_index,
                self.view().applied_offset,
                CATCH_UP_TIMEOUT_S,
            )

    async def close(self) -> None:
        """Stop heartbeating, the mirror, the metadata group and the transport. Safe to call
        twice and after a failed :meth:`open`."""
        if self._mover is not None:
            await self._mover.stop()
            self._mover = None
        if self._agent is not None:
            await self._agent.stop()
            self._agent = None
        if self.producer_ids is not None:
            await self.producer_ids.close()
        if self._mirror is not None:
            await self._mirror.stop()
        if self.controller is not None:
            await self.controller.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self.host is not None:
            await self.host.close()
            self.host = None
        if self._log is not None:
            self._log.close()
            self._log = None
