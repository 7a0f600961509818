"""The Kafka admin APIs: CreateTopics, DeleteTopics, DescribeConfigs, CreatePartitions,
AlterConfigs and IncrementalAlterConfigs (topic configs only).

A single node is its own controller, so every admin request is served here. On a node of a
cluster, topic changes go through its TopicAdmin (rilke.server.topic_admin) to the controller
leader, and are answered once committed there and applied here. Errors come back per topic
with Kafka's code and, where the version has the field, Rilke's message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rilke.errors import InvalidConfigError, InvalidRequestError, InvalidTopicError
from rilke.server.broker import Broker
from rilke.server.kafka import errors as ec
from rilke.server.kafka.codec import RequestHeader
from rilke.server.kafka.types import Message
from rilke.server.topic_admin import TopicAdmin
from rilke.server.topics import is_internal

log = logging.getLogger(__name__)

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
CONFIG_SOURCE_TOPIC = 1  # DYNAMIC_TOPIC_CONFIG
CONFIG_SOURCE_DEFAULT = 5  # DEFAULT_CONFIG
# IncrementalAlterConfigs' config_operation.
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3


def _code(exc: BaseException) -> int:
    code = ec.kafka_code(exc)
    if code == ec.UNKNOWN_SERVER_ERROR:
        log.error("unexpected error in a Kafka admin request", exc_info=exc)
    return code


def _refuse_internal(name: str, action: str) -> None:
    if is_internal(name):
        raise InvalidTopicError(f"cannot {action} {name!r}: it is one of the broker's own topics")


class AdminApis:
    """``on_topics_deleted`` is called after a DeleteTopics (long polls look again).
    ``cluster``: a node of a cluster's path to the controller (None: a single node)."""

    def __init__(
        self,
        broker: Broker,
        on_topics_deleted: Callable[[], None],
        cluster: TopicAdmin | None = None,
    ) -> None:
        self._broker = broker
        self._on_topics_deleted = on_topics_deleted
        self._cluster = cluster

    async def create_topics(self, header: RequestHeader, body: Message, peer: str) -> Message:
        async def create(topic: Message) -> Message:
            out: Message = {"name": topic["name"], "error_code": ec.NONE, "error_message": None}
            try:
                _refuse_internal(topic["name"], "create")
                if topic["assignments"]:
                    raise InvalidRequestError("manual replica assignments are not supported")
                configs = {
                    c["name"]: c["value"] for c in topic["configs"] if c["value"] is not None
                }
                create_topic = (
                    self._broker.create_topic_async
                    if self._cluster is None
                    else self._cluster.create_topic
                )
                await create_topic(
                    topic["name"],
                    topic["num_partitions"],
                    topic["replication_factor"],
                    configs,
                    validate_only=body["validate_only"],
                )
            except Exception as e:
                out["error_code"] = _code(e)
                out["error_message"] = str(e)
            return out

        results = await asyncio.gather(*(create(t) for t in body["topics"]))
        return {"throttle_time_ms": 0, "topics": list(results)}

    async def delete_topics(self, header: RequestHeader, body: Message, peer: str) -> Message:
        responses: list[Message] = []
        for name in body["topic_names"]:
            out: Message = {"name": name, "error_code": ec.NONE}
            try:
                _refuse_internal(name, "delete")
                if self._cluster is not None:
                    await self._cluster.delete_topic(name)
                else:
                    self._broker.delete_topic(name)
            except Exception as e:
                out["error_code"] = _code(e)
            responses.append(out)
        self._on_topics_deleted()
        return {"throttle_time_ms": 0, "responses": responses}

    async def describe_configs(self, header: RequestHeader, body: Message, peer: str) -> Message:
        results: list[Message] = []
        for resource in body["resources"]:
            out: Message = {
                "error_code": ec.NONE,
                "error_message": None,
                "resource_type": resource["resource_type"],
                "resource_name": resource["resource_name"],
                "configs": [],
            }
            results.append(out)
            keys = resource["configuration_keys"]
            try:
                if resource["resource_type"] == RESOURCE_BROKER:
                    continue  # nothing of the broker's is described over Kafka's protocol yet
                if resource["resource_type"] != RESOURCE_TOPIC:
                    raise InvalidRequestError(
                        f"resource type {resource['resource_type']} is not described here "
                        f"(topics: {RESOURCE_TOPIC}, brokers: {RESOURCE_BROKER})"
                    )
                entries = self._broker.describe_configs(resource["resource_name"], True)
                out["configs"] = [
                    _config_entry(e) for e in entries if keys is None or e.name in keys
                ]
            except Exception as e:
                out["error_code"] = _code(e)
                out["error_message"] = str(e)
        return {"throttle_time_ms": 0, "results": results}

    async def create_partitions(self, header: RequestHeader, body: Message, peer: str) -> Message:
        results: list[Message] = []
        for topic in body["topics"]:
            out: Message = {"name": topic["name"], "error_code": ec.NONE, "error_message": None}
            try:
                _refuse_internal(topic["name"], "add partitions to")
                if topic["assignments"]:
                    raise InvalidRequestError("manual replica assignments are not supported")
                if self._cluster is not None:
                    await self._cluster.create_partitions(
                        topic["name"], topic["count"], body["validate_only"]
                    )
                else:
                    self._broker.create_partitions(
                        topic["name"], topic["count"], validate_only=body["validate_only"]
                    )
            except Exception as e:
                out["error_code"] = _code(e)
                out["error_message"] = str(e)
            results.append(out)
        return {"throttle_time_ms": 0, "results": results}

    async def alter_configs(self, header: RequestHeader, body: Message, peer: str) -> Message:
        """AlterConfigs: the configs listed become the topic's whole set (any other set config
        goes back to its default, as in Kafka)."""

        def change(name: str, configs: list[Message]) -> tuple[dict[str, str], list[str]]:
            set_ = {c["name"]: c["value"] for c in configs if c["value"] is not None}
            listed = {c["name"] for c in configs}
            current = [e.name for e in self._broker.describe_configs(name, False)]
            return set_, [k for k in current if k not in set_] + sorted(listed - set(set_))

        return await self._alter(body, change)

    async def incremental_alter_configs(
        self, header: RequestHeader, body: Message, peer: str
    ) -> Message:
        """IncrementalAlterConfigs: SET and DELETE per config; APPEND and SUBTRACT (for list
        configs) are refused with INVALID_CONFIG (no topic config here is a list)."""

        def change(name: str, configs: list[Message]) -> tuple[dict[str, str], list[str]]:
            set_: dict[str, str] = {}
            delete: list[str] = []
            for c in configs:
                op, key, value = c["config_operation"], c["name"], c["value"]
                if op == OP_SET:
                    if value is None:
                        raise InvalidConfigError(f"{key}: SET needs a value")
                    set_[key] = value
                elif op == OP_DELETE:
                    delete.append(key)
                elif op in (OP_APPEND, OP_SUBTRACT):
                    raise InvalidConfigError(
                        f"{key}: APPEND and SUBTRACT apply to list configs; no topic config "
                        "here is a list (use SET)"
                    )
                else:
                    raise InvalidRequestError(f"{key}: unknown config operation {op}")
            return set_, delete

        return await self._alter(body, change)

    async def _alter(
        self,
        body: Message,
        change: Callable[[str, list[Message]], tuple[dict[str, str], list[str]]],
    ) -> Message:
        responses: list[Message] = []
        for resource in body["resources"]:
            name = resource["resource_name"]
            out: Message = {
                "error_code": ec.NONE,
                "error_message": None,
                "resource_type": resource["resource_type"],
                "resource_name": name,
            }
            responses.append(out)
            try:
                if resource["resource_type"] != RESOURCE_TOPIC:
                    raise InvalidRequestError(
                        f"resource type {resource['resource_type']} cannot be changed here: "
                        f"only topics ({RESOURCE_TOPIC}); broker settings are the server's "
                        "command line and TOML file"
                    )
                _refuse_internal(name, "change the configs of")
                names = [c["name"] for c in resource["configs"]]
                if len(set(names)) != len(names):
                    raise InvalidRequestError(f"a config is named twice for topic {name!r}")
                set_, delete = change(name, resource["configs"])
                if self._cluster is not None:
                    await self._cluster.alter_configs(name, set_, delete, body["validate_only"])
                else:
                    self._broker.alter_configs(
                        name, set_, delete, validate_only=body["validate_only"]
                    )
            except Exception as e:
                out["error_code"] = _code(e)
                out["error_message"] = str(e)
        return {"throttle_time_ms": 0, "responses": responses}


def _config_entry(entry: Any) -> Message:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": False,
        "config_source": CONFIG_SOURCE_DEFAULT if entry.is_default else CONFIG_SOURCE_TOPIC,
        "is_sensitive": False,
        "synonyms": [],
    }
