"""The Kafka listener on a node of a cluster: what it asks beyond its own broker.

A single `rilke server` is its own controller and leads every partition, so the listener
answers from the broker alone. On a node of a cluster (``--initial-voters``/``--join``):

- Metadata comes from the node's applied metadata view (:func:`metadata_response`): every
  serving broker that registered a Kafka listener (:attr:`BrokerInfo.kafka_host`), and each
  partition's leader, replicas and in-sync replicas as the view has them, whoever leads;
- Produce, Fetch and ListOffsets are served only by the partition's leader (a follower, or a
  node with no replica, answers NOT_LEADER_OR_FOLLOWER: clients refresh their metadata and go
  to the leader);
- topic administration goes through the node's :class:`TopicAdmin` (the ClusterAdmin that
  forwards to the controller leader and answers once committed and applied here), and
  InitProducerId through the cluster's producer-id blocks;
- FindCoordinator names the node rilke.server.group_placement.CoordinatorLocator says (the
  leader of the group's ``__consumer_offsets`` partition), by its Kafka listener.

Pure functions over a :class:`MetadataView`: no I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from rilke.replication.controller import NO_LEADER, BrokerInfo, MetadataView
from rilke.server.kafka import errors as ec
from rilke.server.kafka.types import Message
from rilke.server.topic_admin import TopicAdmin
from rilke.server.topics import is_internal


@dataclass(frozen=True)
class KafkaCluster:
    """What a node of a cluster gives its Kafka listener. ``view()`` is the node's applied
    metadata (cheap: a cached picture); ``init_producer_id(pid, epoch)`` hands out a producer
    id from the cluster's blocks."""

    node_id: int
    view: Callable[[], MetadataView]
    admin: TopicAdmin
    init_producer_id: Callable[[int, int], Awaitable[tuple[int, int]]]


def kafka_brokers(view: MetadataView) -> dict[int, BrokerInfo]:
    """The brokers Kafka clients are told of: serving (not fenced) and with a Kafka
    listener, by id."""
    return {b.broker_id: b for b in view.serving_brokers() if b.kafka_host is not None}


def metadata_response(view: MetadataView, node_id: int, wanted: Iterable[str] | None) -> Message:
    """Kafka's Metadata (v4 fields) from ``view``: ``wanted`` topics (None: every topic).

    A topic the view does not have is UNKNOWN_TOPIC_OR_PARTITION (a cluster creates topics
    only through the controller, never on a Metadata request). A partition whose leader is
    none, or a broker without a Kafka listener, is LEADER_NOT_AVAILABLE with leader -1 (the
    client asks again). ``controller_id`` is the controller leader when Kafka clients can
    reach it, else this node (any node forwards admin requests to the controller)."""
    brokers = kafka_brokers(view)
    names = sorted(view.topics) if wanted is None else list(wanted)
    topics: list[Message] = []
    for name in names:
        meta = view.topic(name)
        if meta is None:
            topics.append(
                {
                    "error_code": ec.UNKNOWN_TOPIC_OR_PARTITION,
                    "name": name,
                    "is_internal": False,
                    "partitions": [],
                }
            )
            continue
        partitions: list[Message] = []
        for index, part in enumerate(meta.partitions):
            leader = part.leader if part.leader in brokers else NO_LEADER
            partitions.append(
                {
                    "error_code": ec.NONE if leader != NO_LEADER else ec.LEADER_NOT_AVAILABLE,
                    "partition_index": index,
                    "leader_id": leader,
                    "replica_nodes": list(part.replicas),
                    "isr_nodes": list(part.isr),
                }
            )
        topics.append(
            {
                "error_code": ec.NONE,
                "name": name,
                "is_internal": is_internal(name),
                "partitions": partitions,
            }
        )
    controller = view.controller_id if view.controller_id in brokers else node_id
    return {
        "throttle_time_ms": 0,
        "brokers": [
            {"node_id": b.broker_id, "host": b.kafka_host, "port": b.kafka_port, "rack": b.rack}
            for b in brokers.values()
        ],
        "cluster_id": view.cluster_id or None,
        "controller_id": controller,
        "topics": topics,
    }
