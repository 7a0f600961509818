"""What a node of a cluster changes topics through: the controller, by
rilke.server.cluster.admin.ClusterAdmin (which forwards to the controller leader and answers
once the change is committed and applied on this node). Shared by the gRPC services and the
Kafka listener; a single node changes its broker directly and has none."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class TopicAdmin(Protocol):
    """Topic changes through the controller."""

    async def create_topic(
        self,
        name: str,
        num_partitions: int,
        replication_factor: int,
        configs: Mapping[str, str],
        validate_only: bool,
    ) -> None: ...

    async def delete_topic(self, name: str) -> None: ...

    async def create_partitions(self, name: str, total: int, validate_only: bool) -> None: ...

    async def alter_configs(
        self, name: str, set_: Mapping[str, str], delete: Sequence[str], validate_only: bool
    ) -> None: ...
