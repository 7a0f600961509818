"""Kafka Metadata on a node of a cluster, from its metadata view: every
serving broker with a Kafka listener, each partition's leader/replicas/isr whoever leads,
UNKNOWN_TOPIC_OR_PARTITION for a topic that does not exist, the controller id."""

from __future__ import annotations

from rilke.replication.controller import (
    NO_LEADER,
    BrokerInfo,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.server.kafka import errors as ec
from rilke.server.kafka import schemas as sc
from rilke.server.kafka.cluster import metadata_response
from rilke.server.kafka.codec import decode_response, encode_response


def broker(n: int, state: BrokerState = BrokerState.ALIVE, kafka: bool = True) -> BrokerInfo:
    host = f"k{n}.example" if kafka else None
    return BrokerInfo(
        n, f"10.0.0.{n}", 9290 + n, f"rack-{n}", state, n, host, 9090 + n if kafka else 0
    )


def view(controller: int = 2, extra: dict[str, TopicMeta] | None = None) -> MetadataView:
    brokers = {
        1: broker(1),
        2: broker(2),
        3: broker(3),
        4: broker(4, BrokerState.FENCED),
        5: broker(5, kafka=False),
    }
    orders = TopicMeta(
        "orders",
        "t1",
        {},
        (
            PartitionInfo((2, 3, 1), 2, 7, (2, 3)),
            PartitionInfo((3, 1, 2), NO_LEADER, 4, (3,)),
            PartitionInfo((5, 1, 2), 5, 1, (5, 1, 2)),  # led by a broker without Kafka
        ),
    )
    return MetadataView("c-1", controller, brokers, {"orders": orders, **(extra or {})})


def test_metadata_lists_brokers_with_a_kafka_listener_and_partitions_from_the_view() -> None:
    out = metadata_response(view(), 1, None)
    assert out["brokers"] == [
        {"node_id": n, "host": f"k{n}.example", "port": 9090 + n, "rack": f"rack-{n}"}
        for n in (1, 2, 3)
    ]
    assert out["controller_id"] == 2 and out["cluster_id"] == "c-1"
    [topic] = out["topics"]
    assert topic["name"] == "orders" and topic["error_code"] == ec.NONE
    assert topic["partitions"] == [
        {
            "error_code": ec.NONE,
            "partition_index": 0,
            "leader_id": 2,
            "replica_nodes": [2, 3, 1],
            "isr_nodes": [2, 3],
        },
        {
            "error_code": ec.LEADER_NOT_AVAILABLE,
            "partition_index": 1,
            "leader_id": -1,
            "replica_nodes": [3, 1, 2],
            "isr_nodes": [3],
        },
        {
            "error_code": ec.LEADER_NOT_AVAILABLE,
            "partition_index": 2,
            "leader_id": -1,
            "replica_nodes": [5, 1, 2],
            "isr_nodes": [5, 1, 2],
        },
    ]
    # The answer encodes as Metadata v4 and decodes back the same.
    frame = encode_response(9, sc.METADATA, 4, out)
    assert decode_response(sc.METADATA, 4, frame[4:]) == (9, out)


def test_unknown_topics_are_refused_and_the_controller_falls_back_to_this_node() -> None:
    out = metadata_response(view(controller=5), 3, ["nope", "orders"])
    assert [(t["name"], t["error_code"]) for t in out["topics"]] == [
        ("nope", ec.UNKNOWN_TOPIC_OR_PARTITION),
        ("orders", ec.NONE),
    ]
    # Broker 5 leads the controller but Kafka clients cannot reach it: this node forwards.
    assert out["controller_id"] == 3
    assert metadata_response(view(controller=-1), 1, [])["controller_id"] == 1
