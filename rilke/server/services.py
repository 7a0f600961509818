"""The gRPC services Broker and Admin (rilke/proto/rilke.proto), on grpc.aio.

Thin: each handler converts protobuf to calls on :class:`~rilke.server.broker.Broker` and its
:class:`~rilke.server.partition.Partition` objects, and every refusal into a per-item ``Error``
(the code of the rilke.errors class and its message). Handlers never decode records.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Protocol

import grpc
from google.protobuf.message import DecodeError

from rilke import timeline
from rilke.errors import (
    InvalidRequestError,
    InvalidTopicError,
    KafkaStorageError,
    MessageSizeTooLargeError,
    OffsetOutOfRangeError,
    RequestTimedOutError,
    RilkeError,
    UnknownTopicOrPartitionError,
)
from rilke.partition.validation import check_leader_epoch
from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc
from rilke.replication.controller import MetadataView, TopicMeta
from rilke.server.broker import Broker
from rilke.server.local_view import local_metadata_view
from rilke.server.ordered_stream import answer_in_order
from rilke.server.partition import VALID_ACKS, AppendResult, Partition
from rilke.server.stats import RPC_FAILED, ApiStats, BrokerStats
from rilke.server.topic_admin import TopicAdmin
from rilke.server.topics import is_internal
from rilke.storage.files import is_disk_full

log = logging.getLogger(__name__)

DEFAULT_PARTITION_MAX_BYTES = 1 << 20
DEFAULT_FETCH_MAX_BYTES = 50 << 20
MAX_FETCH_WAIT_MS = 60_000
DEFAULT_PRODUCE_TIMEOUT_MS = 30_000
MAX_STREAM_IN_FLIGHT = 256  # produce requests read ahead on one stream before responses
LATEST = -1
EARLIEST = -2

_OK = pb.Error()


def to_error(e: BaseException) -> pb.Error:
    """The wire Error for an exception; unexpected ones are logged and sent as code 1."""
    if isinstance(e, RilkeError):
        return pb.Error(code=e.code, message=str(e))
    if isinstance(e, TimeoutError):
        err = RequestTimedOutError()
        return pb.Error(code=err.code, message=str(err))
    if is_disk_full(e):
        # E.g. creating a topic's folders on a full disk: retriable once space is freed.
        where = getattr(e, "filename", None) or "the data directory"
        full = KafkaStorageError(f"disk full: no space left on the file system of {where}")
        log.error("%s", full)
        return pb.Error(code=full.code, message=str(full))
    log.exception("unexpected error in a request", exc_info=e)
    return pb.Error(code=RilkeError.code, message=f"internal error: {e!r}")


@contextlib.contextmanager
def error_into(out: Any) -> Iterator[None]:
    """Answer an exception raised in the block in ``out.error`` (a per-item result message)
    instead of failing the whole request; the block's other writes to ``out`` stay."""
    try:
        yield
    except Exception as e:
        out.error.CopyFrom(to_error(e))


def refuse_internal(topic: str, action: str) -> None:
    """Raise InvalidTopicError when a client asks to ``action`` an internal topic (a name
    starting with ``__``, e.g. ``__consumer_offsets``): those belong to the broker, and a
    stray write, config change or delete would corrupt or lose its state. Reading is fine."""
    if is_internal(topic):
        raise InvalidTopicError(
            f"cannot {action} {topic!r}: topics whose names start with '__' are the broker's "
            f"internal topics; choose another name"
        )


def view_topic(view: MetadataView, name: str) -> TopicMeta:
    """The topic in the metadata view; UnknownTopicOrPartitionError if the view has none yet
    (a topic this node knows before its view does)."""
    topic = view.topic(name)
    if topic is None:
        raise UnknownTopicOrPartitionError(f"topic {name!r} is not in this node's metadata yet")
    return topic


class ClusterTopicAdmin(TopicAdmin, Protocol):
    """Topic changes of a node of a cluster, through the controller
    (rilke.server.cluster.admin.ClusterAdmin); a single node changes its broker directly."""

    async def read_barrier(self) -> None:
        """Return once this node's metadata holds every change committed before the call
        (a read index of the metadata group); raises a retriable error when it cannot."""


async def linearizable_barrier(admin: ClusterTopicAdmin | None, context: Any) -> None:
    """For a request with ``linearizable`` set: wait for ``admin.read_barrier()`` (nothing
    to wait for on a single node: its view is the only one). When the barrier cannot be had
    (no controller leader, a timeout), the call ends UNAVAILABLE with the reason, which
    clients retry at another node."""
    if admin is None:
        return
    try:
        await admin.read_barrier()
    except (RilkeError, TimeoutError) as e:
        await context.abort(
            grpc.StatusCode.UNAVAILABLE, f"no linearizable metadata on this node now: {e}"
        )


_Started = tuple[pb.ProducePartitionData, "asyncio.Future[AppendResult] | None", pb.Error | None]


def _wake(woken: asyncio.Future[None], *_: object) -> None:
    """Wake a waiting handler (a long poll: by appends, its timer, topic deletion; an
    acknowledgement: by its future or its timer), any number of times."""
    if not woken.done():
        woken.set_result(None)


def _mark_produced(
    response: pb.ProduceResponse, handler_ns: int, appended_ns: int, acked_ns: int
) -> None:
    """The broker's timeline marks of a produce request, keyed by each base offset."""
    for p in response.partitions:
        if p.base_offset >= 0:
            timeline.mark("broker_handler", p.base_offset, handler_ns)
            timeline.mark("broker_appended", p.base_offset, appended_ns)
            timeline.mark("broker_acked", p.base_offset, acked_ns)


def _acknowledged(started: list[_Started]) -> bool:
    """Whether every partition of a started produce request has its result already."""
    return all(future is None or future.done() for _, future, _ in started)


async def _wait_done(future: asyncio.Future[Any], timeout_s: float) -> None:
    """Return once ``future`` is done; raise TimeoutError after ``timeout_s``. Neither a
    timeout nor the cancellation of this wait cancels ``future`` (other requests may wait on
    the same append). One loop hop when it resolves: wait_for over shield took a task and
    three hops for every acks=all acknowledgement."""
    loop = asyncio.get_running_loop()
    woken: asyncio.Future[None] = loop.create_future()
    wake = functools.partial(_wake, woken)
    future.add_done_callback(wake)
    timer = loop.call_later(timeout_s, wake)
    try:
        await woken
    finally:
        timer.cancel()
        future.remove_done_callback(wake)
    if not future.done():
        raise TimeoutError


class BrokerService(pb_grpc.BrokerServicer):
    """Produce, ProduceStream, Fetch, ListOffsets, Metadata, InitProducerId."""

    def __init__(
        self,
        broker: Broker,
        advertised: tuple[str, int],
        metadata_view: Callable[[], MetadataView] | None = None,
        init_producer_id: Callable[[int, int], Awaitable[tuple[int, int]]] | None = None,
        cluster_admin: ClusterTopicAdmin | None = None,
    ) -> None:
        self._broker = broker
        self._advertised = advertised
        self._cluster_admin = cluster_admin  # a cluster's node: the read barrier
        # A cluster's node: producer ids from the controller's blocks (unique cluster-wide).
        self._init_producer_id = init_producer_id
        # Leaders, replicas and brokers come from here (a cluster's applied metadata; by
        # default the single node's own view).
        self._metadata_view = metadata_view or (lambda: local_metadata_view(broker, advertised))
        self._waiters: set[Callable[[], None]] = set()  # wake each long poll in progress
        self._stopping = False

    def wake_all_waiters(self) -> None:
        """Shutdown: answer every long poll now, and do not start new waits."""
        self._stopping = True
        self.wake_waiters()

    def wake_waiters(self) -> None:
        """Make every long poll look again (a topic was deleted: its polls answer the error)."""
        for wake in list(self._waiters):
            wake()

    # --- produce -----------------------------------------------------------------------------

    def _start_produce(self, request: pb.ProduceRequest) -> list[_Started]:
        """Validate and write every partition's batches; return a future per partition."""
        started: list[_Started] = []
        acks = request.acks
        refusal: RilkeError | None = None
        if acks not in VALID_ACKS:
            refusal = InvalidRequestError(f"acks must be 0, 1 or -1, got {acks}")
        else:
            total = sum(len(p.records) for p in request.partitions)
            limit = self._broker.config.max_request_bytes
            if total > limit:
                refusal = MessageSizeTooLargeError(
                    f"produce request carries {total} bytes of records; the broker accepts "
                    f"at most {limit} (max_request_bytes)"
                )
            else:
                seen: set[tuple[str, int]] = set()
                for p in request.partitions:
                    key = (p.topic, p.partition)
                    if key in seen:
                        refusal = InvalidRequestError(
                            f"partition {p.topic}-{p.partition} appears twice in one request"
                        )
                        break
                    seen.add(key)
        for p in request.partitions:
            if refusal is not None:
                started.append((p, None, to_error(refusal)))
                continue
            try:
                refuse_internal(p.topic, "produce to")
                partition = self._broker.partition(p.topic, p.partition, auto_create=True)
                started.append((p, partition.append(p.records, acks), None))
            except Exception as e:
                started.append((p, None, to_error(e)))
        return started

    async def _finish_produce(
        self, started: list[_Started], timeout_ms: int, correlation_id: int
    ) -> pb.ProduceResponse:
        timeout_s = (timeout_ms if timeout_ms > 0 else DEFAULT_PRODUCE_TIMEOUT_MS) / 1000
        response = pb.ProduceResponse(correlation_id=correlation_id)
        topic_stats = self._broker.stats.topic
        for data, future, refusal in started:
            error = refusal
            out = response.partitions.add(topic=data.topic, partition=data.partition)
            if future is not None:
                try:
                    if not future.done():
                        await _wait_done(future, timeout_s)
                    result = future.result()
                    out.base_offset = result.base_offset
                    out.log_append_time_ms = result.log_append_time_ms
                    out.log_start_offset = result.log_start_offset
                    if not result.duplicate:
                        topic_stats(data.topic).produced(
                            len(data.records), result.last_offset - result.base_offset + 1
                        )
                    continue
                except Exception as e:
                    error = to_error(e)
            out.base_offset = -1
            out.log_append_time_ms = -1
            out.log_start_offset = -1
            if error is not None:
                out.error.CopyFrom(error)
        return response

    async def Produce(self, request: pb.ProduceRequest, context: Any) -> pb.ProduceResponse:
        if timeline.ENABLED:
            return await self._produce_marked(request)
        started = self._start_produce(request)
        return await self._finish_produce(started, request.timeout_ms, request.correlation_id)

    async def _produce_marked(self, request: pb.ProduceRequest) -> pb.ProduceResponse:
        """Produce with timeline marks (see rilke.timeline), keyed by each base offset."""
        handler_ns = timeline.now_ns()
        started = self._start_produce(request)
        appended_ns = timeline.now_ns()
        response = await self._finish_produce(started, request.timeout_ms, request.correlation_id)
        _mark_produced(response, handler_ns, appended_ns, timeline.now_ns())
        return response

    async def ProduceStream(
        self, request_iterator: AsyncIterator[pb.ProduceRequest], context: Any
    ) -> AsyncIterator[pb.ProduceResponse]:
        """Pipelined produce: requests are written as they arrive (in order), responses are
        sent in request order, at most MAX_STREAM_IN_FLIGHT awaiting their acknowledgement;
        an answer that waits for nothing is sent from the stream's own task at once
        (rilke.server.ordered_stream)."""

        marks: dict[int, tuple[int, int]] = {}  # timeline: handler and appended ns by request

        def start(request: pb.ProduceRequest) -> list[_Started]:
            if not timeline.ENABLED:
                return self._start_produce(request)
            handler_ns = timeline.now_ns()
            started = self._start_produce(request)
            marks[request.correlation_id] = (handler_ns, timeline.now_ns())
            return started

        async def finish(request: pb.ProduceRequest, started: list[_Started]) -> Any:
            response = await self._finish_produce(
                started, request.timeout_ms, request.correlation_id
            )
            if timeline.ENABLED:
                _mark_produced(response, *marks.pop(request.correlation_id), timeline.now_ns())
            return response

        async for response in answer_in_order(
            request_iterator, start, _acknowledged, finish, MAX_STREAM_IN_FLIGHT
        ):
            yield response

    # --- fetch -------------------------------------------------------------------------------

    def _read_all(
        self,
        request: pb.FetchRequest,
        partitions: list[Partition | pb.Error],
        sent: list[tuple[str, bytes]],
    ) -> tuple[pb.FetchResponse, int, bool]:
        """The response, its bytes of records and whether a partition failed; ``sent`` is
        set to the (topic, records) it carries (for the topics' bytes-out counters)."""
        sent.clear()
        response = pb.FetchResponse()
        budget = request.max_bytes if request.max_bytes > 0 else DEFAULT_FETCH_MAX_BYTES
        total = 0
        failed = False
        for wanted, partition in zip(request.partitions, partitions, strict=True):
            out = response.partitions.add(topic=wanted.topic, partition=wanted.partition)
            if isinstance(partition, pb.Error):
                out.error.CopyFrom(partition)
                out.high_watermark = out.last_stable_offset = out.log_start_offset = -1
                failed = True
                continue
            limit = wanted.partition_max_bytes or DEFAULT_PARTITION_MAX_BYTES
            try:
                if budget - total <= 0 and total > 0:
                    offsets = partition.offsets()
                    out.high_watermark = out.last_stable_offset = offsets.high_watermark
                    out.log_start_offset = offsets.log_start_offset
                    continue
                if wanted.HasField("current_leader_epoch"):
                    check_leader_epoch(
                        f"{wanted.topic}-{wanted.partition}",
                        partition.leader_epoch,
                        wanted.current_leader_epoch,
                    )
                data = partition.read(wanted.fetch_offset, min(limit, max(budget - total, 1)))
            except Exception as e:
                out.error.CopyFrom(to_error(e))
                out.high_watermark = out.last_stable_offset = out.log_start_offset = -1
                if isinstance(e, OffsetOutOfRangeError):
                    # The valid range, so that the consumer can reset without another call.
                    offsets = partition.offsets()
                    out.high_watermark = out.last_stable_offset = offsets.high_watermark
                    out.log_start_offset = offsets.log_start_offset
                failed = True
                continue
            out.records = data.records
            if data.next_offset >= 0:
                out.next_offset = data.next_offset
            if data.records:
                sent.append((wanted.topic, data.records))
            out.high_watermark = data.high_watermark
            out.last_stable_offset = data.last_stable_offset
            out.log_start_offset = data.log_start_offset
            total += len(data.records)
        return response, total, failed

    def _partitions(self, request: pb.FetchRequest) -> list[Partition | pb.Error]:
        partitions: list[Partition | pb.Error] = []
        for wanted in request.partitions:
            try:
                partitions.append(self._broker.partition(wanted.topic, wanted.partition))
            except Exception as e:
                partitions.append(to_error(e))
        return partitions

    def _partitions_or_refusal(self, request: pb.FetchRequest) -> list[Partition | pb.Error]:
        """The partitions to read, or, for a negative byte limit, the error of each."""
        if request.max_bytes < 0 or any(w.partition_max_bytes < 0 for w in request.partitions):
            refusal = to_error(
                InvalidRequestError(
                    "max_bytes and partition_max_bytes must be >= 0 (0: the broker's default)"
                )
            )
            return [refusal for _ in request.partitions]
        return self._partitions(request)

    async def Fetch(self, request: pb.FetchRequest, context: Any) -> pb.FetchResponse:
        """Whole batches up to the high watermark; waits up to max_wait_ms (woken by appends
        and topic deletions) until min_bytes are available or an error is to be reported."""
        sent: list[tuple[str, bytes]] = []
        response = await self._fetch(request, sent)
        topic_stats = self._broker.stats.topic
        for topic, records in sent:
            topic_stats(topic).fetched(records)
        return response

    async def _fetch(
        self, request: pb.FetchRequest, sent: list[tuple[str, bytes]]
    ) -> pb.FetchResponse:
        partitions = self._partitions_or_refusal(request)
        response, total, failed = self._read_all(request, partitions, sent)
        wait_ms = min(request.max_wait_ms, MAX_FETCH_WAIT_MS)
        if failed or total >= request.min_bytes or wait_ms <= 0 or self._stopping:
            return response
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_ms / 1000
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0 or self._stopping:
                return response
            live = [p for p in partitions if not isinstance(p, pb.Error)]
            # A bare future and a timer: an append wakes this handler in one loop hop
            # (an Event under wait_for took three, and a task per wait).
            woken: asyncio.Future[None] = loop.create_future()
            wake = functools.partial(_wake, woken)
            unsubscribes = [p.subscribe(wake) for p in live]
            self._waiters.add(wake)
            timer = loop.call_later(remaining, wake)
            try:
                await woken
            finally:
                timer.cancel()
                self._waiters.discard(wake)
                for unsubscribe in unsubscribes:
                    unsubscribe()
            if timeline.ENABLED:
                for wanted in request.partitions:
                    timeline.mark("fetch_woken", wanted.fetch_offset)
            # Looked up again: a partition deleted during the wait answers its error, and is
            # not read through its closed log.
            partitions = self._partitions(request)
            response, total, failed = self._read_all(request, partitions, sent)
            if failed or total >= request.min_bytes:
                if timeline.ENABLED:
                    for wanted, out in zip(request.partitions, response.partitions, strict=True):
                        if out.records:
                            timeline.mark("fetch_answered", wanted.fetch_offset)
                return response

    # --- offsets and metadata ----------------------------------------------------------------

    async def ListOffsets(
        self, request: pb.ListOffsetsRequest, context: Any
    ) -> pb.ListOffsetsResponse:
        response = pb.ListOffsetsResponse()
        for wanted in request.partitions:
            out = response.partitions.add(topic=wanted.topic, partition=wanted.partition)
            out.offset = out.timestamp = -1
            with error_into(out):
                partition = self._broker.partition(wanted.topic, wanted.partition)
                offsets = partition.offsets()
                if wanted.timestamp == EARLIEST:
                    out.offset = offsets.log_start_offset
                elif wanted.timestamp == LATEST:
                    out.offset = offsets.high_watermark
                elif wanted.timestamp < 0:
                    raise InvalidRequestError(
                        f"timestamp {wanted.timestamp}: use -2 (earliest), -1 (latest) or "
                        "a time in ms"
                    )
                else:
                    found = partition.offset_for_timestamp(wanted.timestamp)
                    if found is not None and found[0] < offsets.high_watermark:
                        out.offset, out.timestamp = found
        return response

    async def Metadata(self, request: pb.MetadataRequest, context: Any) -> pb.MetadataResponse:
        if request.linearizable:
            await linearizable_barrier(self._cluster_admin, context)
        broker = self._broker
        view = self._metadata_view()
        response = pb.MetadataResponse(cluster_id=view.cluster_id, controller_id=view.controller_id)
        for b in view.serving_brokers():
            response.brokers.add(node_id=b.broker_id, host=b.host, port=b.port)
        names = list(request.topics) or [t.name for t in broker.topics]
        for name in names:
            out = response.topics.add(name=name)
            with error_into(out):
                if name not in broker.topics and not (
                    request.allow_auto_topic_creation
                    and not is_internal(name)
                    and broker.maybe_auto_create(name)
                ):
                    broker.partition(name, 0)  # raises the precise error
                info = broker.topics.require(name)
                out.internal = info.internal
                broker.check_online(name)
                if view.topic(name) is None:
                    view = self._metadata_view()  # created just now
                for p, part in enumerate(view_topic(view, name).partitions):
                    out.partitions.add(
                        partition=p,
                        leader_id=part.leader,
                        leader_epoch=part.leader_epoch,
                        replicas=part.replicas,
                        isr=part.isr,
                    )
        return response

    async def InitProducerId(
        self, request: pb.InitProducerIdRequest, context: Any
    ) -> pb.InitProducerIdResponse:
        try:
            if request.transactional_id:
                raise InvalidRequestError("transactions are not supported")
            if self._init_producer_id is not None:
                pid, epoch = await self._init_producer_id(
                    request.producer_id, request.producer_epoch
                )
                return pb.InitProducerIdResponse(producer_id=pid, producer_epoch=epoch)
            pid, epoch = self._broker.init_producer_id(request.producer_id, request.producer_epoch)
            return pb.InitProducerIdResponse(producer_id=pid, producer_epoch=epoch)
        except Exception as e:
            return pb.InitProducerIdResponse(error=to_error(e), producer_id=-1, producer_epoch=-1)


class AdminService(pb_grpc.AdminServicer):
    """Topics and their configs."""

    def __init__(
        self,
        broker: Broker,
        on_topics_deleted: Callable[[], None] = lambda: None,
        metadata_view: Callable[[], MetadataView] | None = None,
        cluster_admin: ClusterTopicAdmin | None = None,
    ) -> None:
        self._broker = broker
        self._cluster_admin = cluster_admin  # a cluster's node: changes go to the controller
        self._on_topics_deleted = on_topics_deleted
        self._metadata_view = metadata_view or (
            lambda: local_metadata_view(broker, ("", 0))  # brokers' addresses are not used
        )

    async def CreateTopics(
        self, request: pb.CreateTopicsRequest, context: Any
    ) -> pb.CreateTopicsResponse:
        response = pb.CreateTopicsResponse()

        async def create(topic: pb.NewTopic, out: pb.TopicResult) -> None:
            with error_into(out):
                refuse_internal(topic.name, "create")
                if self._cluster_admin is not None:
                    await self._cluster_admin.create_topic(
                        topic.name,
                        topic.num_partitions,
                        topic.replication_factor,
                        dict(topic.configs),
                        request.validate_only,
                    )
                    return
                await self._broker.create_topic_async(
                    topic.name,
                    topic.num_partitions,
                    topic.replication_factor,
                    dict(topic.configs),
                    validate_only=request.validate_only,
                )

        # The topics of one request are created together (their file work on worker
        # threads; the loop keeps serving other requests meanwhile).
        await asyncio.gather(
            *(create(topic, response.results.add(name=topic.name)) for topic in request.topics)
        )
        return response

    async def DeleteTopics(
        self, request: pb.DeleteTopicsRequest, context: Any
    ) -> pb.DeleteTopicsResponse:
        response = pb.DeleteTopicsResponse()
        for name in request.names:
            out = response.results.add(name=name)
            with error_into(out):
                refuse_internal(name, "delete")
                if self._cluster_admin is not None:
                    await self._cluster_admin.delete_topic(name)
                    continue
                self._broker.delete_topic(name)
        self._on_topics_deleted()
        return response

    async def ListTopics(
        self, request: pb.ListTopicsRequest, context: Any
    ) -> pb.ListTopicsResponse:
        response = pb.ListTopicsResponse()
        for topic in self._broker.topics:
            if topic.internal and not request.include_internal:
                continue
            response.topics.add(
                name=topic.name, num_partitions=topic.num_partitions, internal=topic.internal
            )
        return response

    async def DescribeTopics(
        self, request: pb.DescribeTopicsRequest, context: Any
    ) -> pb.DescribeTopicsResponse:
        if request.linearizable:
            await linearizable_barrier(self._cluster_admin, context)
        broker = self._broker
        view = self._metadata_view()
        response = pb.DescribeTopicsResponse()
        names = list(request.names) or [t.name for t in broker.topics]
        for name in names:
            out = response.topics.add(name=name)
            with error_into(out):
                info = broker.topics.require(name)
                out.internal = info.internal
                out.replication_factor = info.replication_factor
                out.configs.update(info.configs)
                meta = view_topic(view, name).partitions
                if meta:  # the metadata's (a cluster's topic may have several replicas)
                    out.replication_factor = len(meta[0].replicas)
                for p, partition in enumerate(broker.partitions_of(name)):
                    if p >= len(meta):
                        raise UnknownTopicOrPartitionError(
                            f"partition {name}-{p} is not in this node's metadata yet"
                        )
                    offsets = partition.offsets()
                    out.partitions.add(
                        partition=p,
                        leader_id=meta[p].leader,
                        leader_epoch=partition.leader_epoch,
                        replicas=meta[p].replicas,
                        isr=meta[p].isr,
                        target_replicas=meta[p].target,
                        log_start_offset=offsets.log_start_offset,
                        high_watermark=offsets.high_watermark,
                        log_end_offset=offsets.log_end_offset,
                        size_bytes=partition.size_bytes(),
                    )
        return response

    async def DescribeConfigs(
        self, request: pb.DescribeConfigsRequest, context: Any
    ) -> pb.DescribeConfigsResponse:
        response = pb.DescribeConfigsResponse()
        names = list(request.topics) or [t.name for t in self._broker.topics]
        for name in names:
            out = response.results.add(topic=name)
            with error_into(out):
                for entry in self._broker.describe_configs(name, request.include_defaults):
                    out.entries.add(name=entry.name, value=entry.value, is_default=entry.is_default)
        return response

    async def AlterConfigs(
        self, request: pb.AlterConfigsRequest, context: Any
    ) -> pb.AlterConfigsResponse:
        response = pb.AlterConfigsResponse()
        for change in request.topics:
            out = response.results.add(name=change.topic)
            with error_into(out):
                refuse_internal(change.topic, "change the configs of")
                if self._cluster_admin is not None:
                    await self._cluster_admin.alter_configs(
                        change.topic, dict(change.set), list(change.delete), request.validate_only
                    )
                    continue
                self._broker.alter_configs(
                    change.topic,
                    dict(change.set),
                    list(change.delete),
                    validate_only=request.validate_only,
                )
        return response

    async def CreatePartitions(
        self, request: pb.CreatePartitionsRequest, context: Any
    ) -> pb.CreatePartitionsResponse:
        """Kafka's CreatePartitions: each topic grows to its new total count (answered once
        committed, in a cluster); a count not above today's, an unknown or internal topic is
        that topic's error and changes nothing."""
        response = pb.CreatePartitionsResponse()
        for topic in request.topics:
            out = response.results.add(name=topic.name)
            with error_into(out):
                refuse_internal(topic.name, "add partitions to")
                if self._cluster_admin is not None:
                    await self._cluster_admin.create_partitions(
                        topic.name, topic.count, request.validate_only
                    )
                    continue
                self._broker.create_partitions(
                    topic.name, topic.count, validate_only=request.validate_only
                )
        return response


def add_services(
    server: grpc.aio.Server,
    broker: Broker,
    advertised: tuple[str, int],
    *,
    group_service: Any = None,
    metadata_view: Callable[[], MetadataView] | None = None,
    cluster_admin: ClusterTopicAdmin | None = None,
    init_producer_id: Callable[[int, int], Awaitable[tuple[int, int]]] | None = None,
) -> tuple[BrokerService, Any]:
    """Register Broker and Admin, the standard health service and server reflection; return
    the Broker service and the health servicer (their state is driven by the lifecycle).
    ``metadata_view`` gives the current metadata (default: this single node's own)."""
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection

    view = metadata_view or (lambda: local_metadata_view(broker, advertised))
    service = BrokerService(broker, advertised, view, init_producer_id, cluster_admin)
    stats = broker.stats
    _add_servicer(server, "Broker", service, stats)
    admin = AdminService(broker, service.wake_waiters, view, cluster_admin)
    _add_servicer(server, "Admin", admin, stats)
    if group_service is not None:
        _add_servicer(server, "Group", group_service, stats)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (
        pb.DESCRIPTOR.services_by_name["Broker"].full_name,
        pb.DESCRIPTOR.services_by_name["Admin"].full_name,
        pb.DESCRIPTOR.services_by_name["Group"].full_name,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    )
    reflection.enable_server_reflection(names, server)
    return service, health_servicer


def _add_servicer(
    server: grpc.aio.Server, service_name: str, servicer: Any, stats: BrokerStats | None = None
) -> None:
    """Register ``servicer``'s methods for a service of rilke.proto, parsing requests inside
    the handler so that bytes that are not a valid message are answered with
    INVALID_ARGUMENT (the generated registration would answer UNKNOWN and log an error).
    With ``stats``, each method counts its requests, per-item errors and latency there (as
    API ``<Method>`` of listener ``grpc``)."""
    descriptor = pb.DESCRIPTOR.services_by_name[service_name]
    handlers: dict[str, grpc.RpcMethodHandler] = {}
    for method in descriptor.methods:
        request_type = getattr(pb, method.input_type.name)
        response_type = getattr(pb, method.output_type.name)
        implementation = getattr(servicer, method.name)
        if stats is not None:
            implementation = _counted(
                implementation,
                stats.api("grpc", method.name),
                error_paths(response_type.DESCRIPTOR),
                streaming=method.server_streaming,
            )
        if method.client_streaming and method.server_streaming:
            handlers[method.name] = grpc.stream_stream_rpc_method_handler(
                _parsing_stream(implementation, request_type),
                response_serializer=response_type.SerializeToString,
            )
        else:
            assert not method.client_streaming and not method.server_streaming
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                _parsing_unary(implementation, request_type),
                response_serializer=response_type.SerializeToString,
            )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(descriptor.full_name, handlers),)
    )


def error_paths(descriptor: Any) -> tuple[bool, tuple[str, ...]]:
    """Where a response type carries per-item errors: whether it has a top-level ``error``
    field, and its repeated message fields whose items have one."""
    top = "error" in descriptor.fields_by_name
    repeated = tuple(
        f.name
        for f in descriptor.fields
        if f.message_type is not None and f.is_repeated and "error" in f.message_type.fields_by_name
    )
    return top, repeated


def count_errors(response: Any, paths: tuple[bool, tuple[str, ...]], stats: ApiStats) -> None:
    """Add each non-zero ``error.code`` of ``response`` (top level and items) to ``stats``."""
    top, repeated = paths
    if top and response.error.code:
        stats.error(response.error.code)
    for name in repeated:
        for item in getattr(response, name):
            code = item.error.code
            if code:
                stats.error(code)


def _counted(
    implementation: Any, stats: ApiStats, paths: tuple[bool, tuple[str, ...]], *, streaming: bool
) -> Any:
    """``implementation`` counting into ``stats``: a unary call is one request timed from its
    start to its answer; a stream (ProduceStream: one answer per request, in order) counts each
    answer as a request, timed from the arrival of its request. A call that fails as a whole
    (a gRPC status, not an answer) counts as error RPC_FAILED; a cancelled one not at all."""
    observe = stats.latency.observe
    clock = time.perf_counter

    if not streaming:

        async def unary(request: Any, context: Any) -> Any:
            started = clock()
            try:
                response = await implementation(request, context)
            except asyncio.CancelledError:
                raise
            except BaseException:
                stats.requests += 1
                stats.error(RPC_FAILED)
                observe(clock() - started)
                raise
            stats.requests += 1
            observe(clock() - started)
            count_errors(response, paths, stats)
            return response

        return unary

    async def stream(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        arrivals: deque[float] = deque()

        async def timed() -> AsyncIterator[Any]:
            async for request in requests:
                arrivals.append(clock())
                yield request

        try:
            async for response in implementation(timed(), context):
                stats.requests += 1
                if arrivals:
                    observe(clock() - arrivals.popleft())
                count_errors(response, paths, stats)
                yield response
        except (asyncio.CancelledError, GeneratorExit):
            raise
        except BaseException:
            stats.error(RPC_FAILED)
            raise

    return stream


def _parsing_unary(implementation: Any, request_type: Any) -> Any:
    async def handler(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            request = request_type.FromString(raw)
        except DecodeError as e:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"not a valid {request_type.__name__}: {e}"
            )
        return await implementation(request, context)

    return handler


class _BadMessage(Exception):
    pass


def _parsing_stream(implementation: Any, request_type: Any) -> Any:
    async def handler(
        raw_iterator: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        async def requests() -> AsyncIterator[Any]:
            async for raw in raw_iterator:
                try:
                    yield request_type.FromString(raw)
                except DecodeError as e:
                    raise _BadMessage(f"not a valid {request_type.__name__}: {e}") from None

        try:
            async for response in implementation(requests(), context):
                yield response
        except _BadMessage as e:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(e))

    return handler
