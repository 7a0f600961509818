"""Metadata and DescribeTopics answer from the metadata view they are given: leaders,
epochs, replicas, in-sync replicas, brokers and the controller of a cluster; and, by
default, the single node's own view (leader and only replica: this node)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_storage import FakeLogManager

from rilke import errors
from rilke.proto import rilke_pb2 as pb
from rilke.replication.controller import MetadataApplier, MetadataView
from rilke.replication.controller.records import (
    BrokerRegistered,
    BrokerUnfenced,
    ClusterCreated,
    PartitionChanged,
    PartitionsAdded,
    TopicCreated,
    encode_batch,
)
from rilke.server.broker import Broker
from rilke.server.config import load_config
from rilke.server.local_view import local_metadata_view
from rilke.server.services import AdminService, BrokerService

ADVERTISED = ("10.0.0.1", 9292)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    config = load_config(
        {"data_dir": str(tmp_path), "node_id": 1, "auto_create_topics": True}, env={}
    )
    b = Broker(config, FakeLogManager(tmp_path, config.log, now_ms=0))
    b.create_topic("t", 2)
    try:
        yield b
    finally:
        b.close()


def cluster_view() -> MetadataView:
    """Three brokers (3 fenced) and topic t: partition 0 led by 2, partition 1 leaderless."""
    applier = MetadataApplier()
    batches = [
        [ClusterCreated("c-7")],
        [BrokerRegistered(b, f"10.0.0.{b}", 9292, None) for b in (1, 2, 3)],
        [BrokerUnfenced(1, 2), BrokerUnfenced(2, 3)],
        [TopicCreated("t", "id-t", {}), PartitionsAdded("id-t", 0, ((2, 1, 3), (3, 1, 2)))],
        [PartitionChanged("id-t", 1, -1, 1, (3,))],
    ]
    offset = 0
    for batch in batches:
        offset += len(batch)
        assert applier.apply_batch(offset, encode_batch(batch, 0)) is None
    return applier.view(controller_id=2)


def test_metadata_answers_from_the_view(broker: Broker) -> None:
    view = cluster_view()
    service = BrokerService(broker, ADVERTISED, metadata_view=lambda: view)
    response = asyncio.run(service.Metadata(pb.MetadataRequest(topics=["t"]), None))
    assert (response.cluster_id, response.controller_id) == ("c-7", 2)
    assert [(b.node_id, b.host, b.port) for b in response.brokers] == [
        (1, "10.0.0.1", 9292),
        (2, "10.0.0.2", 9292),
    ]
    parts = response.topics[0].partitions
    assert [(p.partition, p.leader_id, p.leader_epoch) for p in parts] == [(0, 2, 0), (1, -1, 1)]
    assert [list(p.replicas) for p in parts] == [[2, 1, 3], [3, 1, 2]]
    assert [list(p.isr) for p in parts] == [[2, 1, 3], [3]]


def test_describe_topics_answers_from_the_view(broker: Broker) -> None:
    view = cluster_view()
    service = AdminService(broker, metadata_view=lambda: view)
    response = asyncio.run(service.DescribeTopics(pb.DescribeTopicsRequest(names=["t"]), None))
    parts = response.topics[0].partitions
    assert [(p.leader_id, list(p.replicas), list(p.isr)) for p in parts] == [
        (2, [2, 1, 3], [2, 1, 3]),
        (-1, [3, 1, 2], [3]),
    ]


def test_a_topic_the_view_does_not_hold_yet_is_unknown(broker: Broker) -> None:
    broker.create_topic("u", 1)
    view = cluster_view()
    service = BrokerService(broker, ADVERTISED, metadata_view=lambda: view)
    response = asyncio.run(service.Metadata(pb.MetadataRequest(topics=["u"]), None))
    assert response.topics[0].error.code == errors.UnknownTopicOrPartitionError.code
    assert "not in this node's metadata yet" in response.topics[0].error.message
    admin = AdminService(broker, metadata_view=lambda: view)
    described = asyncio.run(admin.DescribeTopics(pb.DescribeTopicsRequest(names=["u"]), None))
    assert described.topics[0].error.code == errors.UnknownTopicOrPartitionError.code


def test_the_single_nodes_own_view(broker: Broker) -> None:
    view = local_metadata_view(broker, ADVERTISED)
    assert (view.cluster_id, view.controller_id) == ("rilke", 1)
    assert list(view.topics) == ["t"] and len(view.topics) == 1
    assert view.leader_of("t", 1) == view.brokers[1]
    assert view.partition("t", 2) is None and view.topic("x") is None
    service = BrokerService(broker, ADVERTISED)  # the default view
    response = asyncio.run(
        service.Metadata(
            pb.MetadataRequest(allow_auto_topic_creation=True, topics=["t", "new"]), None
        )
    )
    assert (response.cluster_id, response.controller_id) == ("rilke", 1)
    assert [(b.node_id, b.host, b.port) for b in response.brokers] == [(1, *ADVERTISED)]
    for topic in response.topics:
        assert topic.error.code == 0, topic.error.message
        assert {
            (p.leader_id, p.leader_epoch, tuple(p.replicas), tuple(p.isr)) for p in topic.partitions
        } == {(1, 0, (1,), (1,))}
    assert [len(t.partitions) for t in response.topics] == [2, broker.config.default_partitions]
