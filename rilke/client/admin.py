"""The admin client: ``rilke.aio.Admin`` (asyncio) and ``rilke.Admin`` (blocking facade).

Topic create/delete/list/describe, topic configs, and offsets. Each method raises the typed
error of the first topic the broker refused (after the others were applied: a request names
several topics and each succeeds or fails alone); ``*_results`` variants return every topic's
outcome instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rilke.client.cluster import Cluster
from rilke.client.config import cluster_settings
from rilke.client.group_admin import GroupInfo, GroupListing, ResetSpec
from rilke.client.loop_thread import shared_loop
from rilke.client.offsets import EARLIEST, LATEST, list_offsets, normalize_tps
from rilke.client.structs import (
    ConfigEntry,
    NewTopic,
    OffsetAndTimestamp,
    PartitionDescription,
    TopicDescription,
    TopicListing,
    TopicPartition,
)
from rilke.client.transport import error_from_proto
from rilke.errors import RilkeError
from rilke.proto import rilke_pb2 as pb


def _raise_first(results: dict[str, RilkeError | None]) -> None:
    for err in results.values():
        if err is not None:
            raise err


class AIOAdmin:
    """Asyncio admin client. ``Admin(bootstrap_servers, request_timeout_ms=30000)``."""

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str] = "127.0.0.1:9292",
        *,
        client_id: str = "rilke-admin",
        request_timeout_ms: int = 30_000,
        retry_backoff_ms: int = 100,
        retry_backoff_max_ms: int = 1000,
        metadata_max_age_ms: int = 300_000,
    ) -> None:
        self._cluster_settings = cluster_settings(
            bootstrap_servers,
            client_id=client_id,
            request_timeout_ms=request_timeout_ms,
            retry_backoff_ms=retry_backoff_ms,
            retry_backoff_max_ms=retry_backoff_max_ms,
            metadata_max_age_ms=metadata_max_age_ms,
        )
        self.request_timeout_s = request_timeout_ms / 1000.0
        self._cluster: Cluster | None = None

    @property
    def cluster(self) -> Cluster:
        if self._cluster is None:
            self._cluster = Cluster(**self._cluster_settings)
        return self._cluster

    async def __aenter__(self) -> AIOAdmin:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._cluster is not None:
            await self._cluster.close()
            self._cluster = None

    async def _call(self, method: str, request: Any) -> Any:
        return await self.cluster.call_any("Admin", method, request, self.request_timeout_s)

    async def create_topics_results(
        self, topics: Iterable[NewTopic], validate_only: bool = False
    ) -> dict[str, RilkeError | None]:
        topics = list(topics)
        for t in topics:
            if not isinstance(t, NewTopic):
                raise TypeError(f"create_topics takes NewTopic values, not {type(t).__name__}")
        request = pb.CreateTopicsRequest(
            topics=[
                pb.NewTopic(
                    name=t.name,
                    num_partitions=t.num_partitions,
                    replication_factor=t.replication_factor,
                    configs={str(k): str(v) for k, v in (t.configs or {}).items()},
                )
                for t in topics
            ],
            timeout_ms=int(self.request_timeout_s * 1000),
            validate_only=validate_only,
        )
        response = await self._call("CreateTopics", request)
        return {
            r.name: error_from_proto(r.error, f"create topic {r.name!r}") for r in response.results
        }

    async def create_topics(self, topics: Iterable[NewTopic], validate_only: bool = False) -> None:
        """Create topics; raises e.g. TopicAlreadyExistsError, InvalidTopicError."""
        _raise_first(await self.create_topics_results(topics, validate_only))
        self.cluster.request_update()

    async def delete_topics_results(self, names: Iterable[str]) -> dict[str, RilkeError | None]:
        request = pb.DeleteTopicsRequest(
            names=list(names), timeout_ms=int(self.request_timeout_s * 1000)
        )
        response = await self._call("DeleteTopics", request)
        return {
            r.name: error_from_proto(r.error, f"delete topic {r.name!r}") for r in response.results
        }

    async def delete_topics(self, names: Iterable[str]) -> None:
        """Delete topics; raises UnknownTopicOrPartitionError for one that does not exist."""
        _raise_first(await self.delete_topics_results(names))
        self.cluster.request_update()

    async def list_topics(self, include_internal: bool = False) -> list[TopicListing]:
        response = await self._call(
            "ListTopics", pb.ListTopicsRequest(include_internal=include_internal)
        )
        return sorted(
            (TopicListing(t.name, t.num_partitions, t.internal) for t in response.topics),
            key=lambda t: t.name,
        )

    async def describe_topics(
        self, names: Iterable[str] | None = None, *, linearizable: bool = False
    ) -> list[TopicDescription]:
        """Describe the named topics (None: all); raises for an unknown one. With
        ``linearizable`` a node of a cluster answers only once its metadata holds every change
        committed before the call (a read index); otherwise from its applied view, which may
        lag the controller by a moment."""
        response = await self._call(
            "DescribeTopics",
            pb.DescribeTopicsRequest(names=list(names or []), linearizable=linearizable),
        )
        out = []
        for t in response.topics:
            err = error_from_proto(t.error, f"describe topic {t.name!r}")
            if err is not None:
                raise err
            out.append(
                TopicDescription(
                    t.name,
                    t.internal,
                    t.replication_factor,
                    [
                        PartitionDescription(
                            p.partition,
                            p.leader_id,
                            p.leader_epoch,
                            tuple(p.replicas),
                            tuple(p.isr),
                            p.log_start_offset,
                            p.high_watermark,
                            p.log_end_offset,
                            p.size_bytes,
                            tuple(p.target_replicas),
                        )
                        for p in sorted(t.partitions, key=lambda p: p.partition)
                    ],
                    dict(t.configs),
                )
            )
        return out

    async def create_partitions_results(
        self, counts: dict[str, int], validate_only: bool = False
    ) -> dict[str, RilkeError | None]:
        request = pb.CreatePartitionsRequest(
            topics=[pb.CreatePartitionsTopic(name=n, count=c) for n, c in counts.items()],
            validate_only=validate_only,
        )
        response = await self._call("CreatePartitions", request)
        return {
            r.name: error_from_proto(r.error, f"add partitions to {r.name!r}")
            for r in response.results
        }

    async def create_partitions(self, counts: dict[str, int], validate_only: bool = False) -> None:
        """Grow topics to new total partition counts, ``{topic: count}`` (Kafka's
        CreatePartitions); raises e.g. InvalidPartitionsError for a count not above today's,
        UnknownTopicOrPartitionError."""
        _raise_first(await self.create_partitions_results(counts, validate_only))
        self.cluster.request_update()

    async def describe_configs(
        self, topics: Iterable[str], include_defaults: bool = True
    ) -> dict[str, list[ConfigEntry]]:
        response = await self._call(
            "DescribeConfigs",
            pb.DescribeConfigsRequest(topics=list(topics), include_defaults=include_defaults),
        )
        out = {}
        for r in response.results:
            err = error_from_proto(r.error, f"describe configs of {r.topic!r}")
            if err is not None:
                raise err
            out[r.topic] = [ConfigEntry(e.name, e.value, e.is_default) for e in r.entries]
        return out

    async def alter_configs(
        self,
        configs: dict[str, dict[str, str | None]],
        validate_only: bool = False,
    ) -> None:
        """Set topic configs: ``{topic: {name: value}}``; a None value returns it to its default."""
        request = pb.AlterConfigsRequest(
            topics=[
                pb.AlterTopicConfigs(
                    topic=topic,
                    set={k: str(v) for k, v in entries.items() if v is not None},
                    delete=[k for k, v in entries.items() if v is None],
                )
                for topic, entries in configs.items()
            ],
            validate_only=validate_only,
        )
        response = await self._call("AlterConfigs", request)
        _raise_first(
            {
                r.name: error_from_proto(r.error, f"alter configs of {r.name!r}")
                for r in response.results
            }
        )

    async def list_offsets(
        self, queries: dict[TopicPartition, int | str], isolation_level: int = 0
    ) -> dict[TopicPartition, OffsetAndTimestamp]:
        """Offsets by query per partition: 'earliest', 'latest', or a time in ms."""
        q: dict[TopicPartition, int] = {}
        for tp, spec in queries.items():
            if spec == "earliest":
                q[normalize_tps([tp])[0]] = EARLIEST
            elif spec == "latest":
                q[normalize_tps([tp])[0]] = LATEST
            elif isinstance(spec, int) and spec >= 0:
                q[normalize_tps([tp])[0]] = spec
            else:
                raise ValueError(
                    f"offset query must be 'earliest', 'latest' or a time in ms >= 0, not {spec!r}"
                )
        return await list_offsets(self.cluster, q, self.request_timeout_s, isolation_level)

    async def topic_partitions(self, topic: str) -> list[TopicPartition]:
        n = await self.cluster.wait_for_topic(topic, self.request_timeout_s)
        return [TopicPartition(topic, p) for p in range(n)]

    # --- consumer groups (rilke.client.group_admin) ------------------------------------------

    async def list_groups(self) -> list[GroupListing]:
        """Every consumer group: id, state, member count."""
        from rilke.client import group_admin

        return await group_admin.list_groups(self.cluster, self.request_timeout_s)

    async def describe_group(self, group_id: str) -> GroupInfo:
        """State, members, and per partition the committed offset, log end offset, lag in
        records and in seconds. Raises GroupIdNotFoundError."""
        from rilke.client import group_admin

        return await group_admin.describe_group(self.cluster, group_id, self.request_timeout_s)

    async def delete_groups_results(self, group_ids: Iterable[str]) -> dict[str, RilkeError | None]:
        from rilke.client import group_admin

        return await group_admin.delete_groups(self.cluster, group_ids, self.request_timeout_s)

    async def delete_groups(self, group_ids: Iterable[str]) -> None:
        """Delete stopped groups with their offsets (NonEmptyGroupError, GroupIdNotFoundError)."""
        _raise_first(await self.delete_groups_results(group_ids))

    async def list_group_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        """The group's committed offsets."""
        from rilke.client import group_admin

        return await group_admin.committed_offsets(self.cluster, group_id, self.request_timeout_s)

    async def plan_group_offsets_reset(
        self, group_id: str, spec: ResetSpec, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, tuple[int | None, int]]:
        """(current, new) committed offset per partition for a reset; changes nothing.
        Raises NonEmptyGroupError while the group has members."""
        from rilke.client import group_admin

        return await group_admin.plan_reset(
            self.cluster, group_id, spec, partitions, self.request_timeout_s
        )

    async def alter_group_offsets(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        """Set a stopped group's committed offsets (NonEmptyGroupError while it has members)."""
        from rilke.client import group_admin

        await group_admin.alter_offsets(self.cluster, group_id, offsets, self.request_timeout_s)


class Admin:
    """The blocking admin client; same methods as :class:`AIOAdmin`, returning results."""

    def __init__(
        self, bootstrap_servers: str | Iterable[str] = "127.0.0.1:9292", **config: Any
    ) -> None:
        self._aio = AIOAdmin(bootstrap_servers, **config)
        self._thread = shared_loop()
        self._closed = False

    def _run(self, coro: Any) -> Any:
        return self._thread.run(coro, self._aio.request_timeout_s * 2 + 5)

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._run(self._aio.close())

    def create_topics(self, topics: Iterable[NewTopic], validate_only: bool = False) -> None:
        self._run(self._aio.create_topics(list(topics), validate_only))

    def create_topics_results(
        self, topics: Iterable[NewTopic], validate_only: bool = False
    ) -> dict[str, RilkeError | None]:
        return dict(self._run(self._aio.create_topics_results(list(topics), validate_only)))

    def delete_topics(self, names: Iterable[str]) -> None:
        self._run(self._aio.delete_topics(list(names)))

    def list_topics(self, include_internal: bool = False) -> list[TopicListing]:
        return list(self._run(self._aio.list_topics(include_internal)))

    def describe_topics(
        self, names: Iterable[str] | None = None, *, linearizable: bool = False
    ) -> list[TopicDescription]:
        names = None if names is None else list(names)
        return list(self._run(self._aio.describe_topics(names, linearizable=linearizable)))

    def create_partitions(self, counts: dict[str, int], validate_only: bool = False) -> None:
        self._run(self._aio.create_partitions(dict(counts), validate_only))

    def create_partitions_results(
        self, counts: dict[str, int], validate_only: bool = False
    ) -> dict[str, RilkeError | None]:
        return dict(self._run(self._aio.create_partitions_results(dict(counts), validate_only)))

    def describe_configs(
        self, topics: Iterable[str], include_defaults: bool = True
    ) -> dict[str, list[ConfigEntry]]:
        return dict(self._run(self._aio.describe_configs(list(topics), include_defaults)))

    def alter_configs(
        self, configs: dict[str, dict[str, str | None]], validate_only: bool = False
    ) -> None:
        self._run(self._aio.alter_configs(configs, validate_only))

    def list_offsets(
        self, queries: dict[TopicPartition, int | str], isolation_level: int = 0
    ) -> dict[TopicPartition, OffsetAndTimestamp]:
        return dict(self._run(self._aio.list_offsets(queries, isolation_level)))

    def topic_partitions(self, topic: str) -> list[TopicPartition]:
        return list(self._run(self._aio.topic_partitions(topic)))

    def list_groups(self) -> list[GroupListing]:
        return list(self._run(self._aio.list_groups()))

    def describe_group(self, group_id: str) -> GroupInfo:
        info: GroupInfo = self._run(self._aio.describe_group(group_id))
        return info

    def delete_groups(self, group_ids: Iterable[str]) -> None:
        self._run(self._aio.delete_groups(list(group_ids)))

    def delete_groups_results(self, group_ids: Iterable[str]) -> dict[str, RilkeError | None]:
        return dict(self._run(self._aio.delete_groups_results(list(group_ids))))

    def list_group_offsets(self, group_id: str) -> dict[TopicPartition, int]:
        return dict(self._run(self._aio.list_group_offsets(group_id)))

    def plan_group_offsets_reset(
        self, group_id: str, spec: ResetSpec, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, tuple[int | None, int]]:
        parts = None if partitions is None else list(partitions)
        return dict(self._run(self._aio.plan_group_offsets_reset(group_id, spec, parts)))

    def alter_group_offsets(self, group_id: str, offsets: dict[TopicPartition, int]) -> None:
        self._run(self._aio.alter_group_offsets(group_id, offsets))
