"""An in-process fake broker (grpc.aio) for deterministic client tests.

Records are built and read with the real codec (rilke.records). The fake implements just
enough of Broker and Admin: metadata for its topics, produce (checks batch headers, assigns offsets, enforces idempotent sequences), fetch from an offset, list
offsets, InitProducerId, and topic admin. Tests script failures through ``FakeBroker.faults``:
a list of callables consulted per request that may return an error code or raise a gRPC status.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc
from rilke.records import header as hdr

# --- the fake broker -----------------------------------------------------------------------


def _err(code: int, message: str = "") -> pb.Error:
    return pb.Error(code=code, message=message or f"error {code}")


class FakeBroker(rilke_pb2_grpc.BrokerServicer, rilke_pb2_grpc.AdminServicer):
    def __init__(self) -> None:
        self.port = 0
        self.node_id = 1
        self.topics: dict[str, list[list[bytes]]] = {}  # topic -> partition -> batches
        self.next_offset: dict[tuple[str, int], int] = {}
        self.sequences: dict[tuple[int, str, int], int] = {}  # (pid, topic, p) -> next seq
        self.faults: list[Callable[[str, Any], Any]] = []
        self.calls: list[str] = []
        self.produce_requests: list[pb.ProduceRequest] = []
        self.next_pid = 1000
        self.lock = threading.Lock()
        self.hang = asyncio.Event()  # never set: a fault may await it to make a call hang
        self.configs: dict[str, dict[str, str]] = {}
        self.out_of_order = 0  # OutOfOrderSequence answers given
        # Called with the count of batches written so far after each write: a non-zero error
        # code answers that write with the error (written, but the producer is told it failed).
        self.answer_written: Callable[[int], int] | None = None
        self.written = 0
        # Awaited after a request's batches are written, before it is answered: a test may
        # hold the answer (the broker wrote the records; the producer does not know yet).
        self.before_answer: Callable[[Any], Any] | None = None
        # True: sequences are checked as the real broker checks them (ProducerStateTable: the
        # last five batches per producer; a retry among them gets its original offset).
        self.real_producer_state = False
        self.producer_states: dict[tuple[str, int], Any] = {}
        # Answer fetches with next_offset, as the broker does: the base offset of the first
        # batch not sent, or the log end after the last batch (past a compacted tail).
        self.tell_next_offset = True

    def create(self, topic: str, partitions: int = 1) -> None:
        self.topics[topic] = [[] for _ in range(partitions)]
        for p in range(partitions):
            self.next_offset[(topic, p)] = 0

    async def _fault(self, method: str, request: Any, context: Any) -> int:
        self.calls.append(method)
        for f in list(self.faults):
            r = f(method, request)
            if asyncio.iscoroutine(r):
                r = await r
            if isinstance(r, grpc.StatusCode):
                await context.abort(r, f"injected {r.name}")
            if isinstance(r, int) and r:
                return r
        return 0

    # Broker
    async def Metadata(self, request: Any, context: Any) -> Any:
        await self._fault("Metadata", request, context)
        names = list(request.topics) or list(self.topics)
        topics = []
        for name in names:
            if name not in self.topics:
                topics.append(pb.TopicMetadata(name=name, error=_err(30, f"unknown topic {name}")))
                continue
            topics.append(
                pb.TopicMetadata(
                    name=name,
                    partitions=[
                        pb.PartitionMetadata(
                            partition=p, leader_id=self.node_id, replicas=[1], isr=[1]
                        )
                        for p in range(len(self.topics[name]))
                    ],
                )
            )
        return pb.MetadataResponse(
            brokers=[pb.BrokerInfo(node_id=self.node_id, host="127.0.0.1", port=self.port)],
            controller_id=self.node_id,
            cluster_id="fake",
            topics=topics,
        )

    async def InitProducerId(self, request: Any, context: Any) -> Any:
        code = await self._fault("InitProducerId", request, context)
        if code:
            return pb.InitProducerIdResponse(error=_err(code))
        self.next_pid += 1
        return pb.InitProducerIdResponse(producer_id=self.next_pid, producer_epoch=0)

    async def Produce(self, request: Any, context: Any) -> Any:
        code = await self._fault("Produce", request, context)
        self.produce_requests.append(request)
        out = []
        for part in request.partitions:
            key = (part.topic, part.partition)
            if code:
                out.append(
                    pb.ProducePartitionResponse(
                        topic=part.topic, partition=part.partition, error=_err(code)
                    )
                )
                continue
            if part.topic not in self.topics or part.partition >= len(self.topics[part.topic]):
                out.append(
                    pb.ProducePartitionResponse(
                        topic=part.topic, partition=part.partition, error=_err(30)
                    )
                )
                continue
            data = bytearray(part.records)
            h = hdr.check_batch(data)
            if self.real_producer_state:
                from rilke.errors import RilkeError
                from rilke.partition.producer_state import ProducerStateTable

                table = self.producer_states.setdefault(key, ProducerStateTable())
                try:
                    original = table.check([h])
                except RilkeError as exc:
                    self.out_of_order += 1
                    out.append(
                        pb.ProducePartitionResponse(
                            topic=part.topic,
                            partition=part.partition,
                            error=_err(exc.code, str(exc)),
                        )
                    )
                    continue
                if original is not None:
                    out.append(
                        pb.ProducePartitionResponse(
                            topic=part.topic, partition=part.partition, base_offset=original
                        )
                    )
                    continue
                table.record(h, self.next_offset[key])
            elif h.producer_id >= 0:
                skey = (h.producer_id, part.topic, part.partition)
                expected = self.sequences.get(skey, 0)
                if h.base_sequence < expected:
                    out.append(
                        pb.ProducePartitionResponse(
                            topic=part.topic, partition=part.partition, error=_err(37)
                        )
                    )
                    continue
                if h.base_sequence != expected:
                    self.out_of_order += 1
                    out.append(
                        pb.ProducePartitionResponse(
                            topic=part.topic,
                            partition=part.partition,
                            error=_err(36, f"expected {expected} got {h.base_sequence}"),
                        )
                    )
                    continue
                self.sequences[skey] = h.base_sequence + h.last_offset_delta + 1
            base = self.next_offset[key]
            hdr.set_base_offset(data, base)
            self.topics[part.topic][part.partition].append(bytes(data))
            self.next_offset[key] = base + h.last_offset_delta + 1
            self.written += 1
            lie = self.answer_written(self.written) if self.answer_written else 0
            if lie:
                out.append(
                    pb.ProducePartitionResponse(
                        topic=part.topic, partition=part.partition, error=_err(lie)
                    )
                )
                continue
            out.append(
                pb.ProducePartitionResponse(
                    topic=part.topic,
                    partition=part.partition,
                    base_offset=base,
                    log_append_time_ms=-1,
                )
            )
        if self.before_answer is not None:
            r = self.before_answer(request)
            if asyncio.iscoroutine(r):
                await r
        return pb.ProduceResponse(partitions=out)

    async def ProduceStream(self, request_iterator: Any, context: Any) -> Any:
        async for request in request_iterator:
            response = await self.Produce(request, context)
            response.correlation_id = request.correlation_id
            yield response

    async def Fetch(self, request: Any, context: Any) -> Any:
        code = await self._fault("Fetch", request, context)
        out = []
        for fp in request.partitions:
            key = (fp.topic, fp.partition)
            if code or fp.topic not in self.topics:
                out.append(
                    pb.FetchPartitionResponse(
                        topic=fp.topic, partition=fp.partition, error=_err(code or 30)
                    )
                )
                continue
            hw = self.next_offset[key]
            if fp.fetch_offset > hw or fp.fetch_offset < 0:
                out.append(
                    pb.FetchPartitionResponse(
                        topic=fp.topic, partition=fp.partition, error=_err(10), high_watermark=hw
                    )
                )
                continue
            chunks = []
            size = 0
            told = hw
            for b in self.topics[fp.topic][fp.partition]:
                h = hdr.read_header(b)
                if h.last_offset < fp.fetch_offset:
                    continue
                if chunks and size + len(b) > fp.partition_max_bytes:
                    told = h.base_offset
                    break
                chunks.append(b)
                size += len(b)
            out.append(
                pb.FetchPartitionResponse(
                    topic=fp.topic,
                    partition=fp.partition,
                    high_watermark=hw,
                    records=b"".join(chunks),
                    next_offset=told if self.tell_next_offset else None,
                )
            )
        if not any(p.records for p in out) and request.max_wait_ms > 0:
            await asyncio.sleep(min(request.max_wait_ms, 50) / 1000)
        return pb.FetchResponse(partitions=out)

    async def ListOffsets(self, request: Any, context: Any) -> Any:
        await self._fault("ListOffsets", request, context)
        out = []
        for lp in request.partitions:
            key = (lp.topic, lp.partition)
            if key not in self.next_offset:
                out.append(
                    pb.ListOffsetsPartitionResponse(
                        topic=lp.topic, partition=lp.partition, error=_err(30)
                    )
                )
                continue
            if lp.timestamp == -2:
                off = 0
            elif lp.timestamp == -1:
                off = self.next_offset[key]
            else:
                off = self.next_offset[key]
                for b in self.topics[lp.topic][lp.partition]:
                    h = hdr.read_header(b)
                    if h.max_timestamp >= lp.timestamp:
                        off = h.base_offset
                        break
            out.append(
                pb.ListOffsetsPartitionResponse(
                    topic=lp.topic, partition=lp.partition, offset=off, timestamp=-1
                )
            )
        return pb.ListOffsetsResponse(partitions=out)

    # Admin
    async def CreateTopics(self, request: Any, context: Any) -> Any:
        await self._fault("CreateTopics", request, context)
        results = []
        for t in request.topics:
            if t.name in self.topics:
                results.append(
                    pb.TopicResult(name=t.name, error=_err(31, f"topic {t.name} exists"))
                )
            elif t.num_partitions <= 0:
                results.append(pb.TopicResult(name=t.name, error=_err(42)))
            else:
                self.create(t.name, t.num_partitions)
                self.configs[t.name] = dict(t.configs)
                results.append(pb.TopicResult(name=t.name))
        return pb.CreateTopicsResponse(results=results)

    async def DeleteTopics(self, request: Any, context: Any) -> Any:
        results = []
        for n in request.names:
            if self.topics.pop(n, None) is None:
                results.append(pb.TopicResult(name=n, error=_err(30)))
            else:
                results.append(pb.TopicResult(name=n))
        return pb.DeleteTopicsResponse(results=results)

    async def ListTopics(self, request: Any, context: Any) -> Any:
        return pb.ListTopicsResponse(
            topics=[
                pb.TopicListing(name=n, num_partitions=len(p))
                for n, p in sorted(self.topics.items())
            ]
        )

    async def DescribeTopics(self, request: Any, context: Any) -> Any:
        out = []
        for n in request.names or sorted(self.topics):
            if n not in self.topics:
                out.append(pb.TopicDescription(name=n, error=_err(30)))
                continue
            out.append(
                pb.TopicDescription(
                    name=n,
                    replication_factor=1,
                    configs=self.configs.get(n, {}),
                    partitions=[
                        pb.PartitionDescription(
                            partition=p,
                            leader_id=1,
                            replicas=[1],
                            isr=[1],
                            high_watermark=self.next_offset[(n, p)],
                            log_end_offset=self.next_offset[(n, p)],
                        )
                        for p in range(len(self.topics[n]))
                    ],
                )
            )
        return pb.DescribeTopicsResponse(topics=out)

    async def DescribeConfigs(self, request: Any, context: Any) -> Any:
        return pb.DescribeConfigsResponse(
            results=[
                pb.TopicConfigs(
                    topic=t,
                    entries=[
                        pb.ConfigEntry(name=k, value=v) for k, v in self.configs.get(t, {}).items()
                    ],
                )
                for t in request.topics
            ]
        )

    async def AlterConfigs(self, request: Any, context: Any) -> Any:
        results = []
        for t in request.topics:
            if t.topic not in self.topics:
                results.append(pb.TopicResult(name=t.topic, error=_err(30)))
                continue
            cfg = self.configs.setdefault(t.topic, {})
            cfg.update(t.set)
            for d in t.delete:
                cfg.pop(d, None)
            results.append(pb.TopicResult(name=t.topic))
        return pb.AlterConfigsResponse(results=results)


class FakeServer:
    """Runs a FakeBroker on its own loop thread; ``address`` is its host:port."""

    def __init__(self) -> None:
        from rilke.client.loop_thread import LoopThread

        self.broker = FakeBroker()
        self.thread = LoopThread("fake-broker")
        self.server: Any = None
        self.thread.run(self._start(), 10)
        self.address = f"127.0.0.1:{self.broker.port}"

    async def _start(self) -> None:
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", 64 << 20),
                ("grpc.max_send_message_length", 64 << 20),
            ]
        )
        rilke_pb2_grpc.add_BrokerServicer_to_server(self.broker, self.server)
        rilke_pb2_grpc.add_AdminServicer_to_server(self.broker, self.server)
        self.broker.port = self.server.add_insecure_port("127.0.0.1:0")
        self.broker.hang = asyncio.Event()
        await self.server.start()

    def stop(self) -> None:
        """Stop serving (idempotent: a test may stop it early to play a dead broker)."""
        if not self.thread.alive:
            return

        async def _stop() -> None:
            await self.server.stop(grace=None)

        try:
            self.thread.run(_stop(), 10)
        finally:
            self.thread.stop()


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer()
    try:
        yield server
    finally:
        server.stop()
