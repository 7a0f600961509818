"""The producer's sender: drains ready batches, sends them to partition leaders, retries.

Runs as one task on the client's event loop. Per partition it keeps the batches in flight in
sequence order; a retriable failure parks the batch in the partition's retry queue and the
partition then sends only retries, one at a time and in sequence order, until the queue is
empty, so records of one partition are never reordered when idempotence is on. Without
idempotence, ``max_in_flight > 1`` may reorder records on retry (as in Kafka).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from rilke import timeline
from rilke.client.accumulator import RecordAccumulator
from rilke.client.backoff import backoff_s
from rilke.client.batch import ProducerBatch
from rilke.client.cluster import Cluster
from rilke.client.metrics import ProducerMetrics
from rilke.client.produce_stream import ProduceStream
from rilke.client.structs import TopicPartition
from rilke.client.transport import error_from_proto
from rilke.errors import (
    BrokerNotAvailableError,
    DuplicateSequenceError,
    InvalidProducerEpochError,
    KafkaTimeoutError,
    OutOfOrderSequenceError,
    ProducerClosedError,
    ProtocolError,
    RilkeError,
)
from rilke.proto import rilke_pb2 as pb
from rilke.records.header import set_producer

log = logging.getLogger(__name__)

MAX_UNACKNOWLEDGED_BATCHES = 5
"""With idempotence, the batches of one partition sent from its oldest unacknowledged one on
(that one included, acknowledged or not) are at most this many: the broker remembers the last
five batches of each producer per partition (``BATCHES_REMEMBERED``), so a retry of any batch
not yet acknowledged is always among them and is answered as a duplicate with its original
offset. Kafka's rule (max.in.flight.requests.per.connection <= 5); here it is counted per
partition, because gRPC answers requests out of order: a request held by the broker (another
of its partitions stalled) let later batches of the same partition be written, past the
broker's five, and its retry was refused as out of order (tests/faults/FINDINGS.md 1)."""


@dataclass
class _PartitionState:
    next_sequence: int = 0
    in_flight: list[ProducerBatch] = field(default_factory=list)
    retries: list[ProducerBatch] = field(default_factory=list)
    # Sequenced batches sent under the current producer id, in sequence order, from the
    # oldest one not done on (see MAX_UNACKNOWLEDGED_BATCHES).
    window: deque[ProducerBatch] = field(default_factory=deque)
    # Batches waiting for a retry that an earlier attempt may have written (it ended without
    # an answer, or with an error that does not say the broker refused it before writing).
    maybe_written: set[ProducerBatch] = field(default_factory=set)

    def window_full(self, limit: int) -> bool:
        window = self.window
        while window and window[0].done:
            window.popleft()
        return len(window) >= limit


def restamp_producer(
    data: bytes, producer_id: int, producer_epoch: int, base_sequence: int
) -> bytes:
    """The batch ``data`` under another producer id, epoch and base sequence, its CRC
    recomputed."""
    buf = bytearray(data)
    set_producer(buf, producer_id, producer_epoch, base_sequence)
    return bytes(buf)


class Sender:
    """Moves batches from the accumulator to the brokers. All methods run on the loop."""

    def __init__(
        self,
        cluster: Cluster,
        accumulator: RecordAccumulator,
        *,
        acks: int,
        retries: int,
        retry_backoff_ms: float,
        retry_backoff_max_ms: float,
        request_timeout_ms: float,
        max_in_flight: int,
        max_request_size: int,
        enable_idempotence: bool,
        produce_path: str = "unary",
        metrics: ProducerMetrics | None = None,
    ) -> None:
        if produce_path not in ("unary", "stream"):
            raise ValueError(f"produce_path must be 'unary' or 'stream', not {produce_path!r}")
        self.cluster = cluster
        self.metrics = ProducerMetrics() if metrics is None else metrics
        self.produce_path = produce_path
        self._streams: dict[str, ProduceStream] = {}
        self._sent_requests = 0
        self.acc = accumulator
        self.acks = acks
        self.retries = retries
        self.retry_backoff_ms = retry_backoff_ms
        self.retry_backoff_max_ms = retry_backoff_max_ms
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.max_in_flight = max_in_flight
        self.max_unacknowledged = min(max_in_flight, MAX_UNACKNOWLEDGED_BATCHES)
        self.max_request_size = max_request_size
        self.idempotent = enable_idempotence
        self.producer_id = -1
        self.producer_epoch = -1
        # A sequenced batch failed for good (its records may or may not be in the log): the
        # producer takes a new producer id before it sends anything more (see _reset_producer).
        self._reset_pending = False
        self.producer_resets = 0
        self._partitions: dict[TopicPartition, _PartitionState] = defaultdict(_PartitionState)
        self._node_in_flight: dict[int, int] = defaultdict(int)
        # The node a partition's last batch failed on as not its leader (unreachable, or an
        # invalid-metadata error): its retries go out at once, not after the backoff, as soon
        # as the metadata names another leader; until then the metadata is kept refreshing.
        self._failed_on: dict[TopicPartition, int] = {}
        self._requests: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.fatal: BaseException | None = None
        accumulator.wakeup = self._wake_threadsafe

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    def _wake_threadsafe(self) -> None:
        self._loop.call_soon_threadsafe(self._wake.set)

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, timeout_s: float) -> None:
        """Send what is queued (up to ``timeout_s``), then fail what is left and stop."""
        self._stopping = True
        self.wake()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), max(0.0, timeout_s))
            except TimeoutError:
                task.cancel()
                try:
                    await task
                except BaseException:
                    pass
        for t in list(self._requests):
            t.cancel()
        for stream in self._streams.values():
            await stream.close()
        self._streams.clear()
        leftovers = self.acc.take_all()
        for st in self._partitions.values():
            leftovers.extend(st.retries)
            leftovers.extend(st.in_flight)
        self._fail(leftovers, ProducerClosedError("the producer closed before the record was sent"))
        self._fail(
            self.acc.snapshot_incomplete(),
            ProducerClosedError("the producer closed before the record was sent"),
        )

    def _idle(self) -> bool:
        return (
            not self._requests
            and not self.acc.has_queued()
            and not any(st.retries for st in self._partitions.values())
        )

    # --- the loop ------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._obtain_producer_id()
            while True:
                if self._stopping and self._idle():
                    return
                if self._reset_pending:
                    if not await self._reset_producer():
                        return  # stopping: stop() fails what is left
                    continue
                now = time.monotonic()
                self._expire(now)
                self._wake.clear()
                # Before the drain: a batch opened after it wakes the sender (one opened
                # between the drain and the flag would otherwise wait for the next wake).
                self.acc.sender_sleeping = True
                next_s, more = self._send_ready(now)
                if more:
                    # Ready batches wait behind the ones just sent (one per partition per
                    # round): look again at once. Nothing left: no extra pass, sleep.
                    await asyncio.sleep(0)
                    continue
                timeout = None if next_s is None else max(0.0, next_s - time.monotonic())
                if self.cluster.is_stale() and self._needs_metadata():
                    timeout = 0.05 if timeout is None else min(timeout, 0.05)
                    await self._refresh_metadata()
                try:
                    if timeout is None:
                        await self._wake.wait()
                    elif timeout > 0:
                        # Not asyncio.wait_for: on 3.11 it swallows a cancel that arrives as
                        # the wake fires (stop() wakes, then cancels), and close(0) then
                        # waited out a whole retry backoff.
                        async with asyncio.timeout(timeout):
                            await self._wake.wait()
                except TimeoutError:
                    pass
                self.acc.sender_sleeping = False
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug or a fatal producer error: fail everything
            log.exception("producer sender stopped")
            self.fatal = exc
            with self.acc.lock:
                self.acc.fatal = exc
                self.acc.closed = True
            self._fail(self.acc.take_all(), exc)

    async def _obtain_producer_id(self) -> None:
        """InitProducerId until it answers (retriable errors are retried with backoff)."""
        attempt = 0
        while self.idempotent and self.producer_id < 0 and not self._stopping:
            try:
                await self._init_producer_id()
            except RilkeError as exc:
                if not exc.retriable:
                    raise
                attempt += 1
                log.debug("InitProducerId failed (%s); retrying", exc)
                self._expire(time.monotonic())
                await asyncio.sleep(
                    backoff_s(
                        attempt,
                        self.retry_backoff_ms,
                        self.retry_backoff_max_ms,
                        self.cluster.rng,
                    )
                )

    async def _reset_producer(self) -> bool:
        """Take a new producer id after a sequenced batch failed for good.

        The failed batch's records may be in the log (a timeout or a deposed leader does not
        say), so its sequence numbers can never be given to other records: a broker holding
        them would answer those records as duplicates of the first ones, and the producer
        would report records delivered that are not in the log. As Kafka's idempotent
        producer does (KIP-360), it waits for its requests in flight to end, takes a new
        producer id, and sends every batch still waiting again under it, from sequence 0 in
        each partition. Those records were not acknowledged; one whose earlier attempt did
        land may then be written twice (at least once), never lost. False: the producer
        stopped before it had a new id.
        """
        while self._requests:
            await asyncio.wait(set(self._requests), timeout=self.request_timeout_s)
        old = self.producer_id
        self.producer_id = self.producer_epoch = -1
        await self._obtain_producer_id()
        if self.idempotent and self.producer_id < 0:
            return False
        self._reset_pending = False
        self.producer_resets += 1
        now = time.monotonic()
        indeterminate: list[ProducerBatch] = []
        for st in self._partitions.values():
            st.next_sequence = 0
            # A batch an earlier attempt may have written is not sent again under the new id:
            # the broker could not know it for a retry and would write it twice. It fails as
            # a delivery timeout does (it may or may not be in the log).
            indeterminate.extend(b for b in st.retries if b in st.maybe_written)
            st.retries = [b for b in st.retries if b not in st.maybe_written]
            st.maybe_written.clear()
            st.retries.sort(key=lambda b: b.base_sequence)
            # What the old id sent is done with; the batches resent open the new id's window.
            st.window = deque(st.retries) if self.idempotent else deque()
            for b in st.retries:
                # (The broker refused a new id: the batches go out without idempotence.)
                b.base_sequence = st.next_sequence if self.idempotent else -1
                if self.idempotent:
                    st.next_sequence = (st.next_sequence + b.record_count) & 0x7FFFFFFF
                if b.data is not None:
                    b.data = restamp_producer(
                        b.data, self.producer_id, self.producer_epoch, b.base_sequence
                    )
                b.retry_at_s = now
        log.warning(
            "producer id %d has a batch that failed for good: producing as producer id %d "
            "from now on (batches still waiting are sent again under it, but for %d that "
            "may have been written already: they fail)",
            old,
            self.producer_id,
            len(indeterminate),
        )
        self._fail(
            indeterminate,
            KafkaTimeoutError(
                "record not delivered: an attempt to send it ended without an answer, so it "
                "may or may not be in the log, and the producer had to take a new producer id "
                "(another batch failed for good), under which sending it again could write it "
                "twice"
            ),
        )
        return True

    def _needs_metadata(self) -> bool:
        return self.acc.has_queued() or any(st.retries for st in self._partitions.values())

    async def _refresh_metadata(self) -> None:
        try:
            await self.cluster.maybe_refresh(self.request_timeout_s)
        except RilkeError as exc:
            log.debug("metadata refresh failed: %s", exc)

    async def _init_producer_id(self) -> None:
        request = pb.InitProducerIdRequest(producer_id=-1, producer_epoch=-1)
        try:
            response = await self.cluster.call_any(
                "Broker", "InitProducerId", request, self.request_timeout_s
            )
        except ProtocolError as exc:
            if exc.retriable:
                raise
            log.warning("broker refused InitProducerId (%s): producing without idempotence", exc)
            self.idempotent = False
            return
        err = error_from_proto(response.error, "InitProducerId")
        if err is not None:
            if err.retriable:
                raise err
            log.warning("broker refused InitProducerId (%s): producing without idempotence", err)
            self.idempotent = False
            return
        self.producer_id = response.producer_id
        self.producer_epoch = response.producer_epoch

    def _expire(self, now: float) -> None:
        expired = self.acc.expire(now)
        for st in self._partitions.values():
            keep: list[ProducerBatch] = []
            for b in st.retries:
                (expired if b.deadline_s <= now else keep).append(b)
            if self.idempotent and len(keep) < len(st.retries):
                self._schedule_reset()  # sequenced batches given up (see _on_error)
            st.retries = keep
        if expired:
            self._fail(
                expired,
                KafkaTimeoutError(
                    "record not delivered within delivery_timeout_ms: the partition's leader "
                    "was unavailable or too slow (check the broker, or raise delivery_timeout_ms)"
                ),
            )

    def _sendable(self, tp: TopicPartition) -> bool:
        leader = self.cluster.leader_for(tp)
        if leader < 0:
            self.cluster.request_update()
            return False
        if self._node_in_flight[leader] >= self.max_in_flight:
            return False
        st = self._partitions[tp]
        if st.retries:
            return False
        if self.idempotent and st.window_full(self.max_unacknowledged):
            return False
        return not (
            st.in_flight and not self.idempotent and self.retries > 0 and self.max_in_flight == 1
        )

    def _send_ready(self, now: float) -> tuple[float | None, bool]:
        """Send retries that are due and drained batches; return when to look again, and
        whether ready batches were left behind the ones sent (look again at once)."""
        if self._reset_pending:
            return None, False  # nothing goes out under the old producer id (_run resets)
        by_node: dict[int, list[ProducerBatch]] = defaultdict(list)
        next_s: float | None = None
        for tp, st in self._partitions.items():
            if not st.retries or st.in_flight:
                continue
            batch = st.retries[0]
            leader = self.cluster.leader_for(tp)
            if batch.retry_at_s > now and not self._new_leader(tp, leader):
                next_s = batch.retry_at_s if next_s is None else min(next_s, batch.retry_at_s)
                continue
            if leader < 0 or self._node_in_flight[leader] >= self.max_in_flight:
                self.cluster.request_update()
                continue
            st.retries.pop(0)
            by_node[leader].append(batch)
        drained, next_ready, more = self.acc.drain(now, self._sendable)
        if next_ready is not None:
            next_s = next_ready if next_s is None else min(next_s, next_ready)
        for batch in drained:
            if timeline.ENABLED:
                timeline.mark_pending(batch, "drained")
            self._close_batch(batch)
            if self.idempotent:
                self._partitions[batch.tp].window.append(batch)
            by_node[self.cluster.leader_for(batch.tp)].append(batch)
        for node, batches in by_node.items():
            for request_batches in self._split(batches):
                self._node_in_flight[node] += 1
                for b in request_batches:
                    self._partitions[b.tp].in_flight.append(b)
                    b.attempts += 1
                self._sent_requests += 1
                task = asyncio.ensure_future(self._send(node, request_batches))
                self._requests.add(task)
                task.add_done_callback(self._request_done)
        return next_s, more

    def _new_leader(self, tp: TopicPartition, leader: int) -> bool:
        """Whether the metadata names a leader of ``tp`` other than the node its last batch
        failed on as not the leader (asking for fresh metadata while it does not)."""
        failed = self._failed_on.get(tp)
        if failed is None:
            return False
        if leader < 0 or leader == failed:
            self.cluster.request_update()
            return False
        return True

    def _request_done(self, task: asyncio.Task[None]) -> None:
        self._requests.discard(task)
        self._wake.set()

    def _close_batch(self, batch: ProducerBatch) -> None:
        st = self._partitions[batch.tp]
        if self.idempotent:
            batch.base_sequence = st.next_sequence
            st.next_sequence = (st.next_sequence + batch.record_count) & 0x7FFFFFFF
            batch.builder.set_producer_state(
                self.producer_id, self.producer_epoch, batch.base_sequence, False
            )
        batch.data = bytes(batch.encode().build())

    def _split(self, batches: list[ProducerBatch]) -> list[list[ProducerBatch]]:
        """Group batches into requests of at most max_request_size bytes, one per partition."""
        out: list[list[ProducerBatch]] = []
        current: list[ProducerBatch] = []
        size = 0
        tps: set[TopicPartition] = set()
        for b in batches:
            n = len(b.data or b"")
            if current and (size + n > self.max_request_size or b.tp in tps):
                out.append(current)
                current, size, tps = [], 0, set()
            current.append(b)
            size += n
            tps.add(b.tp)
        if current:
            out.append(current)
        return out

    # --- one request ---------------------------------------------------------------------

    async def _send(self, node: int, batches: list[ProducerBatch]) -> None:
        request = pb.ProduceRequest(
            acks=self.acks,
            timeout_ms=int(self.request_timeout_s * 1000),
            partitions=[
                pb.ProducePartitionData(topic=b.tp.topic, partition=b.tp.partition, records=b.data)
                for b in batches
            ],
        )
        started_s = time.monotonic()
        if timeline.ENABLED:
            for b in batches:
                timeline.mark_pending(b, "request")
        try:
            try:
                if self.produce_path == "stream":
                    address = self.cluster.address_of(node)
                    stream = self._streams.get(address)
                    if stream is None:
                        stream = self._streams[address] = ProduceStream(
                            self.cluster.transport, address
                        )
                    response = await stream.send(request, self.request_timeout_s)
                else:
                    response = await self.cluster.call_node(
                        node, "Broker", "Produce", request, self.request_timeout_s
                    )
            except RilkeError as exc:
                self.metrics.on_request(time.monotonic() - started_s, False)
                if isinstance(exc, BrokerNotAvailableError) or exc.invalid_metadata:
                    self.cluster.request_update()
                    for b in batches:
                        self._failed_on[b.tp] = node
                for b in batches:
                    self._on_error(b, exc)
                return
            self.metrics.on_request(time.monotonic() - started_s, True)
            if timeline.ENABLED:
                for b in batches:
                    timeline.mark_pending(b, "response")
            results = {(r.topic, r.partition): r for r in response.partitions}
            for b in batches:
                r = results.get((b.tp.topic, b.tp.partition))
                if r is None:
                    self._on_error(
                        b,
                        ProtocolError(
                            f"the broker's produce response left out {b.tp.topic}-{b.tp.partition}"
                        ),
                    )
                    continue
                err = error_from_proto(r.error, f"produce to {b.tp.topic}-{b.tp.partition}")
                if err is None:
                    self._on_success(
                        b, r.base_offset if self.acks != 0 else -1, r.log_append_time_ms
                    )
                else:
                    if err.invalid_metadata:
                        self._failed_on[b.tp] = node
                    self._on_error(b, err)
        finally:
            # (No wake here: _request_done wakes the sender once the task is done, and a
            # wake from both made a second, empty pass per response.)
            self._node_in_flight[node] -= 1

    def _on_success(self, batch: ProducerBatch, base_offset: int, log_append_time: int) -> None:
        self._remove_in_flight(batch)
        self._partitions[batch.tp].maybe_written.discard(batch)
        self._failed_on.pop(batch.tp, None)
        if not batch.done:
            data = batch.data
            self.metrics.on_batch_sent(
                batch.record_count, len(data) if data is not None else batch.size
            )
        batch.complete(
            base_offset, log_append_time if log_append_time is not None else -1, self.acc.lock
        )
        if timeline.ENABLED:
            timeline.mark_pending(batch, "resolved")
            timeline.settle(batch, base_offset)
        self.acc.release([batch])

    def _on_error(self, batch: ProducerBatch, exc: RilkeError) -> None:
        st = self._partitions[batch.tp]
        self._remove_in_flight(batch)
        if isinstance(exc, DuplicateSequenceError):
            # The broker already has these records (an earlier attempt landed): success, but
            # the offset is not known.
            st.maybe_written.discard(batch)
            if not batch.done:
                self.metrics.on_batch_sent(batch.record_count, batch.size)
            batch.complete(-1, -1, self.acc.lock)
            self.acc.release([batch])
            return
        if exc.invalid_metadata:
            self.cluster.request_update()
        if self.idempotent and not isinstance(
            exc, (OutOfOrderSequenceError, InvalidProducerEpochError)
        ):
            # Only a sequence or epoch refusal says the broker wrote nothing of it.
            st.maybe_written.add(batch)
        earlier_pending = any(
            b.base_sequence < batch.base_sequence for b in st.in_flight + st.retries
        )
        # Out of order behind an earlier batch still on its way, or behind one that failed
        # for good (the reset sends this one again under a new producer id): not final.
        retriable = exc.retriable or (
            self.idempotent
            and isinstance(exc, OutOfOrderSequenceError)
            and (earlier_pending or self._reset_pending)
        )
        now = time.monotonic()
        if retriable and batch.attempts <= self.retries:
            delay = backoff_s(
                batch.attempts, self.retry_backoff_ms, self.retry_backoff_max_ms, self.cluster.rng
            )
            if now + delay < batch.deadline_s:
                batch.retry_at_s = now + delay
                st.retries.append(batch)
                st.retries.sort(key=lambda b: b.base_sequence)
                self.metrics.on_retry()
                log.debug("retrying %s after %s in %.3fs", batch.tp, exc, delay)
                return
            exc = KafkaTimeoutError(
                f"record not delivered within delivery_timeout_ms (last error: {exc}); check "
                f"the broker, or raise delivery_timeout_ms"
            )
        if self.idempotent and batch.base_sequence >= 0:
            # Its sequences may be in the log or not: never reused (_reset_producer).
            self._schedule_reset()
        self._fail([batch], exc)

    def _schedule_reset(self) -> None:
        self._reset_pending = True
        self._wake.set()

    def _remove_in_flight(self, batch: ProducerBatch) -> None:
        st = self._partitions[batch.tp]
        try:
            st.in_flight.remove(batch)
        except ValueError:
            pass

    def _fail(self, batches: list[ProducerBatch], exc: BaseException) -> None:
        for b in batches:
            st = self._partitions.get(b.tp)
            if st is not None:
                st.maybe_written.discard(b)
            if not b.done:
                self.metrics.on_batch_failed(b.record_count)
            b.fail(exc, self.acc.lock)
            if timeline.ENABLED:
                timeline.settle(b, -1)
        self.acc.release(batches)

    def any_incomplete(self) -> bool:
        return bool(self.acc.snapshot_incomplete())

    def stats(self) -> dict[str, Any]:
        return {"in_flight_requests": len(self._requests)}
