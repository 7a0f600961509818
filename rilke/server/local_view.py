"""The metadata view of today's single node: one broker that leads every partition.

:func:`local_metadata_view` answers the same :class:`MetadataView` questions a cluster's
metadata applier answers, from the broker's own topic registry, so the gRPC services are
written once for both. Topics are looked up when asked (a lookup costs O(partitions of that
topic), not O(every partition)), so a view is cheap to take per request.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from rilke.replication.controller import (
    BrokerInfo,
    BrokerState,
    MetadataView,
    PartitionInfo,
    TopicMeta,
)
from rilke.server.broker import Broker

LOCAL_CLUSTER_ID = "rilke"


class _LocalTopics(Mapping[str, TopicMeta]):
    """The broker's registered topics as the view's mapping (every partition led by
    ``node_id`` at epoch 0, its one replica in sync)."""

    def __init__(self, broker: Broker, node_id: int) -> None:
        self._broker = broker
        self._node_id = node_id

    def __getitem__(self, name: str) -> TopicMeta:
        info = self._broker.topics.get(name)
        if info is None:
            raise KeyError(name)
        me = (self._node_id,)
        part = PartitionInfo(me, self._node_id, 0, me)
        return TopicMeta(info.name, info.topic_id, info.configs, (part,) * info.num_partitions)

    def __iter__(self) -> Iterator[str]:
        return iter([t.name for t in self._broker.topics])

    def __len__(self) -> int:
        return len(self._broker.topics)


def local_metadata_view(broker: Broker, advertised: tuple[str, int]) -> MetadataView:
    """The view of a cluster of one: this broker (at ``advertised``), alive and controller."""
    node_id = broker.config.node_id
    host, port = advertised
    me = BrokerInfo(node_id, host, port, None, BrokerState.ALIVE, 0)
    return MetadataView(
        cluster_id=LOCAL_CLUSTER_ID,
        controller_id=node_id,
        brokers={node_id: me},
        topics=_LocalTopics(broker, node_id),
    )
