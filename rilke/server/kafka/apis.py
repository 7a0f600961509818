"""The Kafka APIs on partitions: ApiVersions, Metadata, Produce, Fetch (long poll),
ListOffsets, InitProducerId; and the dispatch of every served API to its handler.

Each handler takes a decoded request body (a dict by Kafka's field names) and returns the
response body, or None for a Produce with acks=0 (Kafka sends no response). It calls the same
:class:`~rilke.server.broker.Broker` and :class:`~rilke.server.partition.Partition` interfaces
as the gRPC services, and never decodes records. Everything runs on the broker's event loop.
On a node of a cluster, Metadata, leadership and producer ids come from its KafkaCluster
(rilke.server.kafka.cluster).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable

from rilke.errors import (
    InvalidTopicError,
    NotLeaderError,
    RilkeError,
    UnknownTopicOrPartitionError,
)
from rilke.records.header import LENGTH_POS, LOG_OVERHEAD, MAGIC, MAGIC_POS
from rilke.server.broker import Broker
from rilke.server.kafka import errors as ec
from rilke.server.kafka import schemas as sc
from rilke.server.kafka.admin_apis import AdminApis
from rilke.server.kafka.cluster import KafkaCluster, metadata_response
from rilke.server.kafka.codec import RequestHeader
from rilke.server.kafka.group_apis import GroupApis
from rilke.server.kafka.types import Message
from rilke.server.partition import VALID_ACKS, AppendResult, Partition
from rilke.server.topics import is_internal

log = logging.getLogger(__name__)

_BATCH_LENGTH = struct.Struct(">i")

CLUSTER_ID = "rilke"
DEFAULT_PRODUCE_TIMEOUT_MS = 30_000
MAX_FETCH_WAIT_MS = 60_000
LATEST = -1
EARLIEST = -2

Handler = Callable[[RequestHeader, Message, str], Awaitable[Message | None]]


def code_of(exc: BaseException) -> int:
    """Kafka's code for an exception; an unexpected one is logged with its traceback."""
    code = ec.kafka_code(exc)
    if code == ec.UNKNOWN_SERVER_ERROR:
        log.error("unexpected error in a Kafka request", exc_info=exc)
    return code


def has_old_magic(records: bytes) -> bool:
    """Whether a batch in ``records`` has a magic other than 2 (a MessageSet v0/v1 from an
    old client): Kafka answers those INVALID_RECORD, where Rilke's batch check says only
    "corrupt". Reads the length and magic of each batch header; stops at a short tail (the
    append's own check refuses that)."""
    pos = 0
    while pos + MAGIC_POS < len(records):
        if records[pos + MAGIC_POS] != MAGIC:
            return True
        (length,) = _BATCH_LENGTH.unpack_from(records, pos + LENGTH_POS)
        if length <= 0:
            return False
        pos += LOG_OVERHEAD + length
    return False


class KafkaApis:
    """Every API the listener serves, by api key. ``advertised()`` is the (host, port) Kafka
    clients are told to connect to (known once the listener is bound). ``cluster``: on a
    node of a cluster, where Metadata, leadership and producer ids come from
    (rilke.server.kafka.cluster); None on a single node."""

    def __init__(
        self,
        broker: Broker,
        groups: GroupApis,
        admin: AdminApis,
        advertised: Callable[[], tuple[str, int]],
        cluster: KafkaCluster | None = None,
    ) -> None:
        self._broker = broker
        self._cluster = cluster
        self._groups = groups
        self._admin = admin
        self._advertised = advertised
        self._node_id = broker.config.node_id
        self._waiters: set[asyncio.Event] = set()
        self._stopping = False
        self.handlers: dict[int, Handler] = {
            sc.API_VERSIONS: self.api_versions,
            sc.METADATA: self.metadata,
            sc.PRODUCE: self.produce,
            sc.FETCH: self.fetch,
            sc.LIST_OFFSETS: self.list_offsets,
            sc.INIT_PRODUCER_ID: self.init_producer_id,
            sc.FIND_COORDINATOR: groups.find_coordinator,
            sc.JOIN_GROUP: groups.join_group,
            sc.SYNC_GROUP: groups.sync_group,
            sc.HEARTBEAT: groups.heartbeat,
            sc.LEAVE_GROUP: groups.leave_group,
            sc.OFFSET_COMMIT: groups.offset_commit,
            sc.OFFSET_FETCH: groups.offset_fetch,
            sc.CREATE_TOPICS: admin.create_topics,
            sc.DELETE_TOPICS: admin.delete_topics,
            sc.DESCRIBE_CONFIGS: admin.describe_configs,
            sc.CREATE_PARTITIONS: admin.create_partitions,
            sc.ALTER_CONFIGS: admin.alter_configs,
            sc.INCREMENTAL_ALTER_CONFIGS: admin.incremental_alter_configs,
        }
        assert set(self.handlers) == set(sc.SERVED)

    async def handle(self, header: RequestHeader, body: Message, peer: str) -> Message | None:
        return await self.handlers[header.api_key](header, body, peer)

    def wake_waiters(self) -> None:
        """Make every long-poll Fetch look again (a topic was deleted)."""
        for event in self._waiters:
            event.set()

    def stop(self) -> None:
        """Shutdown: answer every long poll now, and start no new waits."""
        self._stopping = True
        self.wake_waiters()

    # --- ApiVersions, Metadata, InitProducerId ---------------------------------------------

    async def api_versions(self, header: RequestHeader, body: Message, peer: str) -> Message:
        return {
            "error_code": ec.NONE,
            "api_keys": [
                {"api_key": key, "min_version": low, "max_version": high}
                for key, (low, high) in sorted(sc.SERVED.items())
            ],
            "throttle_time_ms": 0,
        }

    async def metadata(self, header: RequestHeader, body: Message, peer: str) -> Message:
        broker = self._broker
        node = self._node_id
        wanted = body["topics"]
        if self._cluster is not None:
            names = None if wanted is None else [t["name"] for t in wanted]
            return metadata_response(self._cluster.view(), node, names)
        host, port = self._advertised()
        names = [t.name for t in broker.topics] if wanted is None else [t["name"] for t in wanted]
        topics: list[Message] = []
        for name in names:
            out: Message = {"error_code": ec.NONE, "name": name, "is_internal": False}
            out["partitions"] = []
            try:
                if (
                    name not in broker.topics
                    and body["allow_auto_topic_creation"]
                    and not is_internal(name)
                ):
                    broker.maybe_auto_create(name)
                info = broker.topics.require(name)
                broker.check_online(name)
                out["is_internal"] = info.internal
                out["partitions"] = [
                    {
                        "error_code": ec.NONE,
                        "partition_index": p,
                        "leader_id": node,
                        "replica_nodes": [node],
                        "isr_nodes": [node],
                    }
                    for p in range(info.num_partitions)
                ]
            except Exception as e:
                out["error_code"] = code_of(e)
            topics.append(out)
        return {
            "throttle_time_ms": 0,
            "brokers": [{"node_id": node, "host": host, "port": port, "rack": None}],
            "cluster_id": CLUSTER_ID,
            "controller_id": node,
            "topics": topics,
        }

    async def init_producer_id(self, header: RequestHeader, body: Message, peer: str) -> Message:
        out: Message = {"throttle_time_ms": 0, "error_code": ec.NONE}
        if body["transactional_id"] is not None:
            log.info("kafka client %s asked for a transactional producer id: refused", peer)
            return {
                **out,
                "error_code": ec.INVALID_REQUEST,
                "producer_id": -1,
                "producer_epoch": -1,
            }
        try:
            if self._cluster is not None:
                pid, epoch = await self._cluster.init_producer_id(-1, -1)
            else:
                pid, epoch = self._broker.init_producer_id(-1, -1)
        except Exception as e:
            return {**out, "error_code": code_of(e), "producer_id": -1, "producer_epoch": -1}
        return {**out, "producer_id": pid, "producer_epoch": epoch}

    def _partition(self, name: str, index: int, *, auto_create: bool = False) -> Partition:
        """The partition, when this node may serve Produce, Fetch and ListOffsets on it: on a
        node of a cluster, only while it leads the partition (by the partition's own, freshest
        knowledge); else NotLeaderError (NOT_LEADER_OR_FOLLOWER: the client refreshes its
        metadata). Raises UnknownTopicOrPartitionError, InvalidTopicError."""
        cluster = self._cluster
        if cluster is None:
            return self._broker.partition(name, index, auto_create=auto_create)
        if cluster.view().partition(name, index) is None:
            # Not in the metadata: unknown, or one of the node's own internal partitions.
            return self._broker.partition(name, index)
        part: Partition | None
        try:
            part = self._broker.partition(name, index)
        except UnknownTopicOrPartitionError:
            part = None  # in the metadata, not opened here yet
        leader = part.leadership.leader_id if part is not None else None
        if part is None or leader != self._node_id:
            where = f"node {leader} leads it" if leader is not None else "it has no leader now"
            raise NotLeaderError(
                f"node {self._node_id} does not lead {name}-{index}: {where}", leader_id=leader
            )
        return part

    # --- Produce ---------------------------------------------------------------------------

    async def produce(self, header: RequestHeader, body: Message, peer: str) -> Message | None:
        """Append every partition's batches (in request order, synchronously, before the
        first await, so requests pipelined on one connection append in order), then wait for
        their acknowledgements per acks. acks=0 answers nothing."""
        acks = body["acks"]
        started: list[tuple[str, int, asyncio.Future[AppendResult] | None, int]] = []
        total = sum(
            len(p["records"] or b"") for t in body["topic_data"] for p in t["partition_data"]
        )
        refusal = ec.NONE
        if acks not in VALID_ACKS:
            refusal = ec.INVALID_REQUIRED_ACKS
        elif total > self._broker.config.max_request_bytes:
            refusal = ec.MESSAGE_TOO_LARGE
        for topic in body["topic_data"]:
            name = topic["name"]
            for p in topic["partition_data"]:
                if refusal != ec.NONE:
                    started.append((name, p["index"], None, refusal))
                    continue
                try:
                    if is_internal(name):
                        raise InvalidTopicError(f"cannot produce to internal topic {name!r}")
                    partition = self._partition(name, p["index"], auto_create=True)
                    if has_old_magic(p["records"] or b""):
                        started.append((name, p["index"], None, ec.INVALID_RECORD))
                        continue
                    appended = partition.append(p["records"] or b"", acks)
                    started.append((name, p["index"], appended, ec.NONE))
                except Exception as e:
                    started.append((name, p["index"], None, code_of(e)))
        timeout_ms = body["timeout_ms"] if body["timeout_ms"] > 0 else DEFAULT_PRODUCE_TIMEOUT_MS
        by_topic: dict[str, list[Message]] = {}
        for name, index, future, refused in started:
            base_offset = log_append_time_ms = -1
            code = refused
            if future is not None:
                try:
                    if not future.done():
                        await asyncio.wait_for(asyncio.shield(future), timeout_ms / 1000)
                    result = future.result()
                    base_offset = result.base_offset
                    log_append_time_ms = result.log_append_time_ms
                except Exception as e:
                    code = code_of(e)
            by_topic.setdefault(name, []).append(
                {
                    "index": index,
                    "error_code": code,
                    "base_offset": base_offset,
                    "log_append_time_ms": log_append_time_ms,
                }
            )
        if acks == 0:
            return None
        return {
            "responses": [
                {"name": name, "partition_responses": parts} for name, parts in by_topic.items()
            ],
            "throttle_time_ms": 0,
        }

    # --- Fetch -----------------------------------------------------------------------------

    def _lookup(self, body: Message) -> list[tuple[str, Message, Partition | int]]:
        out: list[tuple[str, Message, Partition | int]] = []
        for topic in body["topics"]:
            for p in topic["partitions"]:
                try:
                    part: Partition | int = self._partition(topic["topic"], p["partition"])
                except Exception as e:
                    part = code_of(e)
                out.append((topic["topic"], p, part))
        return out

    def _read_all(
        self, body: Message, wanted: list[tuple[str, Message, Partition | int]]
    ) -> tuple[Message, int, bool]:
        """The response, the bytes in it, and whether a partition has an error. Every
        partition's first batch is whole even past the limits (KIP-74); otherwise both
        partition_max_bytes and max_bytes hold."""
        budget = body["max_bytes"] if body["max_bytes"] > 0 else 50 << 20
        total = 0
        failed = False
        by_topic: dict[str, list[Message]] = {}
        for name, p, part in wanted:
            out: Message = {
                "partition_index": p["partition"],
                "error_code": ec.NONE,
                "high_watermark": -1,
                "last_stable_offset": -1,
                "aborted_transactions": None,
                "records": b"",
            }
            by_topic.setdefault(name, []).append(out)
            if isinstance(part, int):
                out["error_code"] = part
                failed = True
                continue
            try:
                offsets = part.offsets()
                out["high_watermark"] = out["last_stable_offset"] = offsets.high_watermark
                limit = p["partition_max_bytes"]
                if limit < 0:
                    out["error_code"] = ec.INVALID_FETCH_SIZE
                    failed = True
                    continue
                if total >= budget:
                    continue
                data = part.read(p["fetch_offset"], max(1, min(limit, budget - total)))
            except Exception as e:
                out["error_code"] = code_of(e)
                failed = True
                continue
            out["records"] = data.records
            out["high_watermark"] = out["last_stable_offset"] = data.high_watermark
            total += len(data.records)
        response = {
            "throttle_time_ms": 0,
            "responses": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()],
        }
        return response, total, failed

    async def fetch(self, header: RequestHeader, body: Message, peer: str) -> Message:
        """Whole batches up to the high watermark; waits up to max_wait_ms (woken by appends
        and topic deletions) until min_bytes are there, answering at once on any error."""
        wanted = self._lookup(body)
        response, total, failed = self._read_all(body, wanted)
        wait_ms = min(body["max_wait_ms"], MAX_FETCH_WAIT_MS)
        if failed or total >= body["min_bytes"] or wait_ms <= 0 or self._stopping:
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._stopping:
                return response
            woken = asyncio.Event()
            unsubscribes = [p.subscribe(woken.set) for _, _, p in wanted if not isinstance(p, int)]
            self._waiters.add(woken)
            try:
                await asyncio.wait_for(woken.wait(), remaining)
            except TimeoutError:
                pass
            finally:
                self._waiters.discard(woken)
                for unsubscribe in unsubscribes:
                    unsubscribe()
            wanted = self._lookup(body)  # a partition deleted meanwhile answers its error
            response, total, failed = self._read_all(body, wanted)
            if failed or total >= body["min_bytes"]:
                return response

    # --- ListOffsets -----------------------------------------------------------------------

    async def list_offsets(self, header: RequestHeader, body: Message, peer: str) -> Message:
        topics: list[Message] = []
        for topic in body["topics"]:
            parts: list[Message] = []
            for p in topic["partitions"]:
                out: Message = {
                    "partition_index": p["partition_index"],
                    "error_code": ec.NONE,
                    "timestamp": -1,
                    "offset": -1,
                }
                parts.append(out)
                try:
                    part = self._partition(topic["name"], p["partition_index"])
                    offsets = part.offsets()
                    ts = p["timestamp"]
                    if ts == EARLIEST:
                        out["offset"] = offsets.log_start_offset
                    elif ts == LATEST:
                        out["offset"] = offsets.high_watermark
                    elif ts < 0:
                        out["error_code"] = ec.INVALID_REQUEST
                    else:
                        found = part.offset_for_timestamp(ts)
                        if found is not None and found[0] < offsets.high_watermark:
                            out["offset"], out["timestamp"] = found
                except RilkeError as e:
                    out["error_code"] = code_of(e)
            topics.append({"name": topic["name"], "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}
