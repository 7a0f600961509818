"""ClusterAdmin: topic administration on a node of a cluster.

The Admin service (and nothing else) calls it in place of the broker's own topic changes.
Each request is checked here first (names, partition counts, configs: bad input is refused
without a round trip), then sent to the controller leader (:class:`ControllerClient`), and
answered once the change is committed there AND applied here, with the local broker's
topics updated (:class:`TopicMirror`): a client that created a topic through this node
finds it served by this node's metadata at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from rilke.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from rilke.proto import rilke_pb2 as pb
from rilke.server.cluster.controller import ClusterController
from rilke.server.cluster.forward import ControllerClient
from rilke.server.cluster.topic_mirror import TopicMirror
from rilke.server.config import BrokerConfig
from rilke.server.topics import check_names_fit, validate_configs, validate_topic_name

APPLY_TIMEOUT_S = 15.0


def check_topic(name: str, num_partitions: int, name_max: int) -> None:
    """Kafka's name rules and this node's file-name limit; the decider's ``validate_topic``
    on the leader. Raises InvalidTopicError, InvalidPartitionsError."""
    validate_topic_name(name)
    if num_partitions < 1:
        raise InvalidPartitionsError(f"a topic needs at least 1 partition, got {num_partitions}")
    check_names_fit(name, num_partitions, name_max)


class ClusterAdmin:
    def __init__(
        self,
        config: BrokerConfig,
        controller: ClusterController,
        client: ControllerClient,
        mirror: TopicMirror,
        name_max: int,
    ) -> None:
        self._config = config
        self._controller = controller
        self._client = client
        self._mirror = mirror
        self._name_max = name_max

    async def _write(self, request: pb.ControllerWriteRequest) -> None:
        response = await self._client.call("ControllerWrite", request)
        index = response.metadata_offset
        await self._controller.wait_applied(index, APPLY_TIMEOUT_S)
        await self._mirror.wait_synced(index, APPLY_TIMEOUT_S)

    async def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        validate_only: bool,
    ) -> None:
        """Raises InvalidTopicError, InvalidPartitionsError, InvalidConfigError,
        TopicAlreadyExistsError, InvalidReplicationFactorError (more replicas than live
        brokers), RequestTimedOutError (no controller leader in time)."""
        if num_partitions in (0, -1):
            num_partitions = self._config.default_partitions
        if replication_factor in (0, -1):
            replication_factor = 1
        check_topic(name, num_partitions, self._name_max)
        validate_configs(dict(configs), self._config.log)
        if replication_factor < 1:
            raise InvalidReplicationFactorError(
                f"replication factor must be >= 1, got {replication_factor}"
            )
        if validate_only:
            view = self._controller.view()
            if view.topic(name) is not None:
                raise TopicAlreadyExistsError(f"topic {name!r} already exists")
            live = [b for b in view.brokers.values() if b.state.value == "alive"]
            if replication_factor > len(live):
                raise InvalidReplicationFactorError(
                    f"replication factor {replication_factor} is above the {len(live)} live "
                    f"broker(s) {sorted(b.broker_id for b in live)}"
                )
            return
        await self._write(
            pb.ControllerWriteRequest(
                create_topic=pb.NewTopic(
                    name=name,
                    num_partitions=num_partitions,
                    replication_factor=replication_factor,
                    configs=dict(configs),
                )
            )
        )

    async def delete_topic(self, name: str) -> None:
        """Raises UnknownTopicOrPartitionError, InvalidTopicError, RequestTimedOutError."""
        if self._controller.view().topic(name) is None:
            validate_topic_name(name)
        await self._write(pb.ControllerWriteRequest(delete_topic=name))

    async def create_partitions(self, name: str, total: int, validate_only: bool) -> None:
        """Grow a topic to ``total`` partitions. Raises UnknownTopicOrPartitionError,
        InvalidPartitionsError, RequestTimedOutError."""
        topic = self._controller.view().topic(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        if total <= len(topic.partitions):
            raise InvalidPartitionsError(
                f"topic {name!r} has {len(topic.partitions)} partitions; the new count must be "
                f"larger (partitions are never removed), got {total}"
            )
        check_topic(name, total, self._name_max)
        if validate_only:
            return
        change = pb.CreatePartitionsChange(topic=name, total=total)
        await self._write(pb.ControllerWriteRequest(create_partitions=change))

    async def read_barrier(self, timeout_s: float = APPLY_TIMEOUT_S) -> None:
        """Linearizable reads: return once this node's metadata, and its broker's topics,
        hold every change committed before the call (a read index of the metadata group).
        Raises NotLeaderError (no controller leader reachable in time; retriable),
        TimeoutError."""
        async with asyncio.timeout(timeout_s):
            index = await self._controller.read_index(timeout_s)
            await self._mirror.wait_synced(index, timeout_s)

    async def alter_configs(
        self, name: str, set_: Mapping[str, str], delete: Sequence[str], validate_only: bool
    ) -> None:
        """Raises UnknownTopicOrPartitionError, InvalidConfigError, InvalidRequestError."""
        topic = self._controller.view().topic(name)
        if topic is None:
            raise UnknownTopicOrPartitionError(f"topic {name!r} does not exist")
        configs = dict(topic.configs)
        configs.update(set_)
        for key in delete:
            configs.pop(key, None)
        validate_configs(configs, self._config.log)
        if validate_only:
            return
        change = pb.TopicConfigsChange(topic=name, set=dict(set_), delete=list(delete))
        await self._write(pb.ControllerWriteRequest(alter_configs=change))
