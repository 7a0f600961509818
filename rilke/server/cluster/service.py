"""The Cluster gRPC service (rilke.proto): what the controller leader answers for the other
nodes and for `rilke cluster`.

RegisterBroker, BrokerHeartbeat, ControllerWrite and Join decide on the controller leader
(:meth:`ClusterController.decide`); on any other node they answer NotControllerError (code
80, retriable) with the leader this node knows, and the asking node's
:class:`~rilke.server.cluster.forward.ControllerClient` goes there. Each answers once its
records are committed and applied on the leader; ControllerWrite returns the metadata index
so that the asking node can answer its own client once it applied that far too.
DescribeCluster answers from this node's applied view.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from rilke.errors import InvalidRequestError, NotControllerError
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc
from rilke.replication.controller import NO_CONTROLLER, ControllerDecider, LeadershipReport
from rilke.replication.controller.moves import Move, plan_rebalance
from rilke.replication.controller.records import (
    MetadataRecord,
    ProducerIdsAllocated,
    ReassignmentStarted,
)
from rilke.replication.raft.types import NO_NODE
from rilke.server.cluster.controller import ClusterController
from rilke.server.services import to_error
from rilke.server.topics import validate_configs
from rilke.storage.config import LogConfig

log = logging.getLogger(__name__)

MOVE_KINDS = frozenset(
    ("reassign_partition", "rebalance", "decommission_broker", "complete_reassignment")
)

Membership = Callable[[int, bool], Awaitable[None]]
"""(node id, promote): promote a learner to voter or demote a voter (the Raft change)."""
AddLearner = Callable[[int, str], Awaitable[None]]
"""(node id, address): add a node to the metadata group as a learner."""


class ClusterService(pb_grpc.ClusterServicer):
    """See the module docstring. ``log_defaults`` are the topic defaults configs are
    checked over; ``voter_addresses`` the initial voters' addresses (for Join)."""

    def __init__(
        self,
        controller: ClusterController,
        log_defaults: LogConfig,
        voter_addresses: dict[int, str],
        *,
        change_membership: Membership | None = None,
        add_learner: AddLearner | None = None,
    ) -> None:
        self._controller = controller
        self._log_defaults = log_defaults
        self._voter_addresses = dict(voter_addresses)
        self._change_membership = change_membership
        self._add_learner = add_learner
        # Set by the node once its ControllerClient exists: Join sent to a node that does not
        # lead the controller is passed on to the leader (the new node knows only this one).
        self.forward: Callable[[str, Any], Awaitable[Any]] | None = None

    def _controller_id(self) -> int:
        leader = self._controller.leader_id
        return NO_CONTROLLER if leader == NO_NODE else leader

    async def RegisterBroker(
        self, request: pb.RegisterBrokerRequest, context: Any
    ) -> pb.RegisterBrokerResponse:
        controller = self._controller
        response = pb.RegisterBrokerResponse(controller_id=self._controller_id())
        try:
            if request.cluster_id != controller.cluster_id:
                raise InvalidRequestError(
                    f"broker {request.broker_id} is of cluster {request.cluster_id!r}, "
                    f"this is {controller.cluster_id!r}"
                )
            now_ms = controller.now_ms()
            kafka = (request.kafka_host, request.kafka_port) if request.kafka_host else None
            await controller.decide(
                lambda d: d.register_broker(
                    request.broker_id,
                    request.host,
                    request.port,
                    request.rack or None,
                    now_ms,
                    kafka=kafka,
                )
            )
            response.broker_epoch = controller.applier.state.brokers[request.broker_id].epoch
        except Exception as e:
            response.error.CopyFrom(to_error(e))
        return response

    async def BrokerHeartbeat(
        self, request: pb.BrokerHeartbeatRequest, context: Any
    ) -> pb.BrokerHeartbeatResponse:
        controller = self._controller
        response = pb.BrokerHeartbeatResponse(controller_id=self._controller_id())
        try:
            now_ms = controller.now_ms()
            reports = [
                LeadershipReport(r.topic, r.partition, r.leader_epoch, tuple(r.isr))
                for r in request.leaderships
                if r.leader_id == request.broker_id  # a broker reports what it leads
            ]
            await controller.decide(
                lambda d: d.heartbeat(request.broker_id, request.broker_epoch, now_ms, reports)
            )
            info = controller.applier.state.brokers.get(request.broker_id)
            response.fenced = info is None or info.state.value == "fenced"
        except Exception as e:
            response.error.CopyFrom(to_error(e))
        return response

    async def ControllerWrite(
        self, request: pb.ControllerWriteRequest, context: Any
    ) -> pb.ControllerWriteResponse:
        response = pb.ControllerWriteResponse(controller_id=self._controller_id())
        try:
            kind = request.WhichOneof("change")
            if kind == "change_voters":
                change = request.change_voters
                if self._change_membership is None:
                    raise InvalidRequestError("this node cannot change the voters")
                if not self._controller.is_leader:
                    raise NotControllerError(self._controller.not_leader_text())
                await self._change_membership(change.node_id, change.add)
                response.metadata_offset = self._controller.applied_index
            elif kind == "allocate_producer_ids":
                ask = request.allocate_producer_ids
                decided: list[MetadataRecord] = []

                def allocate(d: ControllerDecider) -> list[MetadataRecord]:
                    decided[:] = d.allocate_producer_ids(ask.broker_id, ask.count)
                    return decided

                response.metadata_offset = await self._controller.decide(allocate)
                block = decided[0]
                assert isinstance(block, ProducerIdsAllocated)
                response.first_producer_id = block.first_producer_id
                response.producer_id_count = block.count
            elif kind in MOVE_KINDS:
                await self._moves(request, kind, response)
            else:
                decision = self._decision(request, kind)
                response.metadata_offset = await self._controller.decide(decision)
        except Exception as e:
            response.error.CopyFrom(to_error(e))
        response.controller_id = self._controller_id()
        return response

    async def _moves(
        self, request: pb.ControllerWriteRequest, kind: str, response: pb.ControllerWriteResponse
    ) -> None:
        """Partition moves: decided, committed, and answered with the moves started (a
        rebalance's dry run answers its plan and starts nothing)."""
        moves: list[Move] = []

        def started(records: list[MetadataRecord], d: ControllerDecider) -> list[MetadataRecord]:
            for r in records:
                if isinstance(r, ReassignmentStarted):
                    moves.append((d.state.topic_names[r.topic_id], r.partition, r.target))
            return records

        def decide(d: ControllerDecider) -> list[MetadataRecord]:
            moves.clear()
            if kind == "reassign_partition":
                m = request.reassign_partition
                if m.cancel:
                    return started(d.cancel_reassignment(m.topic, m.partition), d)
                return started(
                    d.reassign_partition(m.topic, m.partition, list(m.replicas), force=m.force),
                    d,
                )
            if kind == "rebalance":
                if request.rebalance.dry_run:
                    moves.extend(plan_rebalance(d.state))
                    return []
                return started(d.rebalance(), d)
            if kind == "decommission_broker":
                return started(d.decommission_broker(request.decommission_broker), d)
            done = request.complete_reassignment
            return d.complete_reassignment(
                done.topic, done.partition, list(done.target), done.reporter
            )

        response.metadata_offset = await self._controller.decide(decide)
        state = self._controller.applier.state
        for name, partition, target in moves:
            topic = state.topics.get(name)
            replicas = topic.partitions[partition].replicas if topic is not None else ()
            response.moves.add(topic=name, partition=partition, replicas=replicas, target=target)

    def _decision(
        self, request: pb.ControllerWriteRequest, kind: str | None
    ) -> Callable[[ControllerDecider], list[MetadataRecord]]:
        if kind == "create_topic":
            t = request.create_topic
            configs = dict(t.configs)
            validate_configs(configs, self._log_defaults)
            topic_id = uuid.uuid4().hex
            return lambda d: d.create_topic(
                t.name, t.num_partitions, t.replication_factor, configs, topic_id
            )
        if kind == "delete_topic":
            name = request.delete_topic
            return lambda d: d.delete_topic(name)
        if kind == "create_partitions":
            c = request.create_partitions
            return lambda d: d.create_partitions(c.topic, c.total)
        if kind == "alter_configs":
            a = request.alter_configs

            def alter(d: ControllerDecider) -> list[MetadataRecord]:
                topic = d.state.topics.get(a.topic)
                configs = dict(topic.configs) if topic is not None else {}
                overlap = set(a.set) & set(a.delete)
                if overlap:
                    raise InvalidRequestError(f"configs both set and deleted: {sorted(overlap)}")
                configs.update(a.set)
                for key in a.delete:
                    configs.pop(key, None)
                validate_configs(configs, self._log_defaults)
                return d.alter_configs(a.topic, configs)

            return alter
        raise InvalidRequestError(f"unknown controller write {kind!r}")

    async def Join(self, request: pb.JoinRequest, context: Any) -> pb.JoinResponse:
        controller = self._controller
        response = pb.JoinResponse(cluster_id=controller.cluster_id)
        try:
            if self._add_learner is None:
                raise InvalidRequestError("this node cannot add nodes")
            if request.cluster_id and request.cluster_id != controller.cluster_id:
                raise InvalidRequestError(
                    f"node {request.node_id}'s data directory belongs to cluster "
                    f"{request.cluster_id}, not this cluster {controller.cluster_id}: a node of "
                    "another cluster cannot join"
                )
            if not controller.is_leader:
                if self.forward is None:
                    raise NotControllerError(controller.not_leader_text())
                forwarded: pb.JoinResponse = await self.forward("Join", request)
                return forwarded
            address = f"{request.host}:{request.port}"
            now_ms = controller.now_ms()
            await controller.decide(
                lambda d: d.register_broker(
                    request.node_id, request.host, request.port, request.rack or None, now_ms
                )
            )
            await self._add_learner(request.node_id, address)
        except Exception as e:
            response.error.CopyFrom(to_error(e))
        for node, addr in sorted(self._voter_addresses.items()):
            response.voters.add(node_id=node, address=addr)
        for b in controller.view().brokers.values():
            response.nodes.add(node_id=b.broker_id, address=f"{b.host}:{b.port}")
        response.controller_id = self._controller_id()
        return response

    async def DescribeCluster(
        self, request: pb.DescribeClusterRequest, context: Any
    ) -> pb.DescribeClusterResponse:
        controller = self._controller
        view = controller.view()
        voters, learners = controller.members()
        response = pb.DescribeClusterResponse(
            cluster_id=view.cluster_id or controller.cluster_id,
            controller_id=self._controller_id(),
            voters=sorted(voters),
            learners=sorted(learners),
            applied_offset=view.applied_offset,
            node_id=controller.node_id,
            metadata_last_index=controller.last_index(),
        )
        replicas: dict[int, int] = {}
        leaders: dict[int, int] = {}
        for topic in view.topics.values():
            for part in topic.partitions:
                for r in part.replicas:
                    replicas[r] = replicas.get(r, 0) + 1
                leaders[part.leader] = leaders.get(part.leader, 0) + 1
        for b in sorted(view.brokers.values(), key=lambda b: b.broker_id):
            response.brokers.add(
                node_id=b.broker_id,
                host=b.host,
                port=b.port,
                rack=b.rack or "",
                state=b.state.value,
                epoch=b.epoch,
                replicas=replicas.get(b.broker_id, 0),
                leaders=leaders.get(b.broker_id, 0),
                kafka_host=b.kafka_host or "",
                kafka_port=b.kafka_port,
            )
        for name in sorted(view.topics):
            for p, part in enumerate(view.topics[name].partitions):
                if part.target:
                    response.moves.add(
                        topic=name, partition=p, replicas=part.replicas, target=part.target
                    )
        return response
