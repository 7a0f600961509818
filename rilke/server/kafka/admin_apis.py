"""The Kafka admin APIs: CreateTopics, DeleteTopics, DescribeConfigs, CreatePartitions.

A single node is its own controller, so every admin request is served here. On a node of a
cluster, topic changes go through its TopicAdmin (rilke.server.kafka.cluster) to the controller
leader, and are answered once committed there and applied here. Errors come back per topic
with Kafka's code and, where the version has the field, Rilke's message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rilke.errors import InvalidRequestError, InvalidTopicError
from rilke.server.broker import Broker
from rilke.server.kafka import errors as ec
from rilke.server.kafka.cluster import TopicAdmin
from rilke.server.kafka.codec import RequestHeader
from rilke.server.kafka.types import Message
from rilke.server.topics import is_internal

log = logging.getLogger(__name__)

RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
CONFIG_SOURCE_TOPIC = 1  # DYNAMIC_TOPIC_CONFIG
CONFIG_SOURCE_DEFAULT = 5  # DEFAULT_CONFIG


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


def _config_entry(entry: Any) -> Message:
    return {
        "name": entry.name,
        "value": entry.value,
        "read_only": False,
        "config_source": CONFIG_SOURCE_DEFAULT if entry.is_default else CONFIG_SOURCE_TOPIC,
        "is_sensitive": False,
        "synonyms": [],
    }
