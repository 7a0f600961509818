"""The consumer's fetcher: per-partition positions, pipelined fetches, a bounded prefetch buffer.

A fetch task on the event loop keeps one Fetch in flight per leader broker for the assigned
partitions whose buffers have room (``max_prefetch_bytes`` each), so the next records are on
their way while the application handles the last ones. :meth:`Fetcher.take` (any thread)
decodes buffered batches into records: it skips control batches and records before the
position, checks CRCs, and advances the position.

Thread-safety: the partition state is guarded by ``self.lock``; seek/assign bump a partition's
``generation`` so that data fetched for an older position is dropped, never returned.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from bisect import bisect_left
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from rilke import timeline
from rilke.client import codec
from rilke.client.backoff import backoff_s
from rilke.client.cluster import Cluster
from rilke.client.offsets import EARLIEST, LATEST, list_offsets
from rilke.client.structs import ConsumerRecord, TopicPartition
from rilke.client.transport import error_from_proto
from rilke.errors import (
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    RilkeError,
    UnknownTopicOrPartitionError,
)
from rilke.proto import rilke_pb2 as pb
from rilke.records import header as hdr

log = logging.getLogger(__name__)

HANDOVER_S = 0.001
"""After handing records to a waiting blocking poll(), the longest the fetch loop idles before
it starts the next fetch (poll() wakes it sooner, once it has taken them: take())."""


@dataclass(slots=True)
class FetchedChunk:
    """What one fetch brought for a partition: ``data`` (whole batches, maybe a partial one at
    the end), the position and header of each whole batch (each header read once, when it
    arrived), the partition's ``generation`` then, the bytes it counts against the prefetch
    bound, and the error of a batch header after those that could not be read (raised once
    their records are handed out). ``next_offset``: where the broker said the next fetch
    starts, when that is past the last batch (offsets compacted away after it): the position
    moves there once the chunk's records are taken; -1: not past it."""

    data: bytes
    batches: list[tuple[int, hdr.BatchHeader]]
    generation: int
    nbytes: int
    error: RilkeError | None = None
    next_offset: int = -1


@dataclass
class PartitionState:
    """One assigned partition. ``position``: the next offset poll() returns (None: unknown,
    to be reset by ``reset``); ``fetch_offset``: the next offset to fetch (>= position)."""

    tp: TopicPartition
    position: int | None = None
    fetch_offset: int = 0
    reset: int | str | None = None  # EARLIEST, LATEST, a time in ms, or "none"
    generation: int = 0
    paused: bool = False
    in_fetch: bool = False
    chunks: deque[FetchedChunk] = field(default_factory=deque)
    buffered_bytes: int = 0
    records: list[ConsumerRecord] = field(default_factory=list)
    record_index: int = 0
    # The offset after the batches ``records`` came from, control batches (transaction
    # markers, Raft's no-ops) included: the position once every record was taken, so a
    # partition whose log ends in a control batch is read to its end (lag 0), as Kafka's.
    records_end: int = -1
    high_watermark: int = -1
    error: RilkeError | None = None
    retry_at_s: float = 0.0
    failures: int = 0


class Fetcher:
    def __init__(
        self,
        cluster: Cluster,
        *,
        auto_offset_reset: str,
        fetch_min_bytes: int,
        fetch_max_wait_ms: int,
        fetch_max_bytes: int,
        max_partition_fetch_bytes: int,
        max_prefetch_bytes: int,
        check_crcs: bool,
        isolation_level: int,
        request_timeout_ms: int,
    ) -> None:
        self.cluster = cluster
        self.auto_offset_reset = auto_offset_reset
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.fetch_max_bytes = fetch_max_bytes
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.max_prefetch_bytes = max_prefetch_bytes
        self.check_crcs = check_crcs
        self.isolation_level = isolation_level
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.lock = threading.Lock()
        self.data_ready = threading.Condition(self.lock)
        # Blocking poll() calls waiting on data_ready (under the lock): a fetch that hands
        # them records lets them have the interpreter first (see _fetch).
        self.pollers_waiting = 0
        self.partitions: dict[TopicPartition, PartitionState] = {}
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self.aio_data_ready = asyncio.Event()
        self._sleeping = False
        self._task: asyncio.Task[None] | None = None
        self._fetches: dict[int, asyncio.Task[None]] = {}
        self._closed = False
        self._take_start = 0
        # Asked for the initial position of a partition without one before the reset policy
        # applies (a consumer group's committed offset); returns None when there is none.
        self.initial_position: Callable[[list[TopicPartition]], object] | None = None
        # Whether an assigned partition that the metadata says does not exist (its topic was
        # deleted, or has fewer partitions) is reported to poll() as
        # UnknownTopicOrPartitionError: a standalone consumer's are; a group member's are not,
        # since the coordinator revokes them.
        self.report_unknown_topics = True

    # --- assignment and positions (any thread) ----------------------------------------------

    def default_reset(self) -> int | str:
        return {"earliest": EARLIEST, "latest": LATEST}.get(self.auto_offset_reset, "none")

    def assign(self, tps: list[TopicPartition]) -> None:
        """Make ``tps`` the assignment; kept partitions keep their position and buffers."""
        with self.lock:
            new = {}
            for tp in tps:
                st = self.partitions.get(tp)
                if st is None:
                    st = PartitionState(tp, reset=self.default_reset())
                new[tp] = st
            for tp, st in self.partitions.items():
                if tp not in new:
                    st.generation += 1
            self.partitions = new
        self.wake()

    def seek(self, tp: TopicPartition, offset: int | None, reset: int | str | None = None) -> None:
        """Set the position (or mark it for reset); drops buffered data of the partition."""
        with self.lock:
            st = self.partitions.get(tp)
            if st is None:
                from rilke.errors import IllegalStateError

                raise IllegalStateError(
                    f"{tp.topic}-{tp.partition} is not assigned to this consumer"
                )
            st.generation += 1
            st.chunks.clear()
            st.buffered_bytes = 0
            st.records = []
            st.record_index = 0
            st.records_end = -1
            st.error = None
            st.position = offset
            st.reset = reset
            if offset is not None:
                st.fetch_offset = offset
        self.wake()

    def wake(self) -> None:
        """Wake the fetch loop (from any thread)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake.set()
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    # --- taking records (any thread; the caller holds no lock) ------------------------------

    def take(self, max_records: int) -> dict[TopicPartition, list[ConsumerRecord]]:
        """Up to ``max_records`` buffered records, by partition, advancing positions.

        Raises the error a partition hit (offset out of range with auto_offset_reset='none',
        a corrupt batch) once, after the records buffered before it; that partition is then
        skipped until seek().
        """
        out: dict[TopicPartition, list[ConsumerRecord]] = {}
        freed = False
        with self.lock:
            remaining = max_records
            states = list(self.partitions.values())
            # Start where the last call stopped, so one busy partition cannot starve the rest.
            start = self._take_start % len(states) if states else 0
            self._take_start += 1
            for st in states[start:] + states[:start]:
                if remaining <= 0:
                    break
                # A fetch error is met after the records fetched before it: they are handed
                # out first (an error that says "seek() past offset N" must not make the
                # caller skip records before N that are still buffered).
                if st.error is not None and not (st.chunks or st.record_index < len(st.records)):
                    err, st.error = st.error, None
                    if out:
                        st.error = err  # report after handing out what we have
                        continue
                    raise err
                if st.paused or st.position is None:
                    continue
                got = self._take_partition(st, remaining)
                if got:
                    out[st.tp] = got
                    remaining -= len(got)
                    freed = True
        if freed:
            self.wake()
        return out

    def _take_partition(self, st: PartitionState, limit: int) -> list[ConsumerRecord]:
        got: list[ConsumerRecord] = []
        while len(got) < limit:
            if st.record_index >= len(st.records):
                if st.position is not None and st.records_end > st.position:
                    st.position = st.records_end  # past trailing control batches
                st.records = []
                st.record_index = 0
                st.records_end = -1
                if not st.chunks:
                    break
                fetched = st.chunks.popleft()
                st.buffered_bytes -= fetched.nbytes
                if fetched.generation != st.generation:
                    continue
                try:
                    st.records, rest, st.records_end = self._decode(st, fetched)
                    if rest is not None:
                        # A batch that cannot be read follows the records decoded: they are
                        # handed out first, and the next pass meets the bad batch alone.
                        st.chunks.appendleft(rest)
                        st.buffered_bytes += rest.nbytes
                except RilkeError as exc:
                    st.error = exc
                    st.chunks.clear()
                    st.buffered_bytes = 0
                    st.generation += 1
                    break
                continue
            n = min(limit - len(got), len(st.records) - st.record_index)
            chunk = st.records[st.record_index : st.record_index + n]
            st.record_index += n
            got.extend(chunk)
            st.position = chunk[-1].offset + 1
        return got

    def _decode(
        self, st: PartitionState, chunk: FetchedChunk
    ) -> tuple[list[ConsumerRecord], FetchedChunk | None, int]:
        """The records of the chunk's batches from the position on, what is left of the
        chunk from a batch that cannot be read on (None when all could), and the offset after
        the last batch read or skipped (control batches too). Raises the batch's error, saying
        which offsets to skip, when the first batch cannot be read.

        Records are built from the codec's columns in one C-level pass per batch (map over
        zip): no intermediate object per record.
        """
        topic, partition = st.tp
        position = st.position or 0
        end = -1
        out: list[ConsumerRecord] = []
        data = chunk.data
        read = codec.read_columns
        check = self.check_crcs
        new = tuple.__new__
        rtopic = repeat(topic)
        rpartition = repeat(partition)
        for i, (pos, header) in enumerate(chunk.batches):
            if header.next_offset <= position or header.is_control:
                end = header.next_offset
                continue
            try:
                cols = read(data, pos, header, check)
            except RilkeError as exc:
                if out or end > position:
                    rest = chunk.batches[i:]
                    nbytes = sum(h.size for _, h in rest)
                    left = FetchedChunk(
                        data, rest, chunk.generation, nbytes, chunk.error, chunk.next_offset
                    )
                    return out, left, end
                raise type(exc)(
                    f"{topic}-{partition}: the batch at offsets {header.base_offset}-"
                    f"{header.next_offset - 1} cannot be read ({exc}); seek() to offset "
                    f"{header.next_offset} to skip it"
                ) from None
            offsets, timestamps, keys, values, headers = cols
            end = header.next_offset
            if not offsets:
                continue  # compaction may leave a batch without records
            if offsets[0] < position:  # the position is inside this batch: skip to it
                first = bisect_left(offsets, position)
                offsets, timestamps, keys, values, headers = (
                    offsets[first:],
                    timestamps[first:],
                    keys[first:],
                    values[first:],
                    headers[first:],
                )
            out.extend(
                map(
                    new,
                    repeat(ConsumerRecord),
                    zip(
                        rtopic,
                        rpartition,
                        offsets,
                        timestamps,
                        repeat(header.timestamp_type),
                        keys,
                        values,
                        headers,
                    ),
                )
            )
        if chunk.error is not None:
            if out or end > position:
                return out, FetchedChunk(data, [], chunk.generation, 0, chunk.error), end
            raise chunk.error
        end = max(end, chunk.next_offset)
        return out, None, end

    def has_buffered(self) -> bool:
        with self.lock:
            return self.has_buffered_locked()

    def has_buffered_locked(self) -> bool:
        """Like has_buffered, for a caller that holds ``self.lock``."""
        return any(
            (st.chunks or st.record_index < len(st.records) or st.error) and not st.paused
            for st in self.partitions.values()
        )

    # --- the fetch loop (event loop) -----------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        self._closed = True
        tasks = [t for t in [self._task, *self._fetches.values()] if t is not None]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except BaseException:
                pass

    async def _run(self) -> None:
        attempt = 0
        while not self._closed:
            self._wake.clear()  # before the work: a wake during it makes another pass
            try:
                # Partitions with a position keep fetching while new ones look theirs up
                # (a consumer group's committed offsets: a round trip to the coordinator).
                self._start_fetches()
                await self._reset_positions()
                if (
                    any(self.cluster.leader_for(tp) < 0 for tp in list(self.partitions))
                    or self.cluster.is_stale()
                ):
                    await self.cluster.refresh({tp.topic for tp in self.partitions} or None)
                    self._report_unknown_partitions()
                self._start_fetches()
                attempt = 0
            except RilkeError as exc:
                attempt += 1
                delay = backoff_s(
                    attempt,
                    self.cluster.retry_backoff_ms,
                    self.cluster.retry_backoff_max_ms,
                    self.cluster.rng,
                )
                log.debug("fetcher: %s (retrying in %.3fs)", exc, delay)
                if not exc.retriable:
                    self._report(exc)
                await asyncio.sleep(delay)
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except TimeoutError:
                pass

    def _report_unknown_partitions(self) -> None:
        """After a metadata refresh: hand poll() an UnknownTopicOrPartitionError for every
        assigned partition the broker says does not exist (once per refresh: the fetcher
        keeps asking, so a topic created again is read again)."""
        if not self.report_unknown_topics:
            return
        reported = False
        with self.lock:
            for tp, st in self.partitions.items():
                if st.error is not None:
                    continue
                count = self.cluster.partitions_for(tp.topic)
                if count is None:
                    known = self.cluster.topic_errors.get(tp.topic)
                    if not isinstance(known, UnknownTopicOrPartitionError):
                        continue  # not answered yet, or another error: fetching retries
                    why = f"the broker has no topic {tp.topic!r} (deleted?)"
                elif tp.partition < count:
                    continue
                else:
                    why = f"topic {tp.topic!r} has only {count} partition(s)"
                st.error = UnknownTopicOrPartitionError(
                    f"cannot fetch {tp.topic}-{tp.partition}: {why}; assign() other partitions"
                )
                reported = True
            if reported:
                self.data_ready.notify_all()
        if reported:
            self.aio_data_ready.set()

    def _report(self, exc: RilkeError) -> None:
        """Hand an error that is not the fetcher's to solve to the next poll()."""
        with self.lock:
            for st in self.partitions.values():
                if st.position is None:
                    st.error = exc
                    break
            self.data_ready.notify_all()
        self.aio_data_ready.set()

    async def _reset_positions(self) -> None:
        with self.lock:
            need = {
                tp: st.reset
                for tp, st in self.partitions.items()
                if st.position is None and st.error is None
            }
        if not need:
            return
        if self.initial_position is not None:
            found = await self.initial_position(list(need))  # type: ignore[misc]
            for tp, offset in (found or {}).items():
                if offset is not None and offset >= 0:
                    self._set_fetched_position(tp, need.pop(tp, None), offset)
        queries: dict[TopicPartition, int] = {}
        for tp, reset in need.items():
            if reset == "none" or reset is None:
                with self.lock:
                    st = self.partitions.get(tp)
                    if st is not None and st.position is None:
                        st.error = NoOffsetForPartitionError(
                            f"no position for {tp.topic}-{tp.partition} and auto_offset_reset='none':"
                            f" seek() to an offset first"
                        )
                        st.reset = "errored"
                        self.data_ready.notify_all()
                self.aio_data_ready.set()
                continue
            if reset == "errored":
                continue
            queries[tp] = int(reset)
        if not queries:
            return
        answers = await list_offsets(
            self.cluster, queries, self.request_timeout_s, self.isolation_level
        )
        for tp, ot in answers.items():
            offset = ot.offset
            if offset < 0:  # no record at or after that time: start at the end
                end = await list_offsets(
                    self.cluster, {tp: LATEST}, self.request_timeout_s, self.isolation_level
                )
                offset = end[tp].offset
            self._set_fetched_position(tp, queries[tp], offset)

    def _set_fetched_position(self, tp: TopicPartition, reset: object, offset: int) -> None:
        with self.lock:
            st = self.partitions.get(tp)
            if st is not None and st.position is None and st.reset == reset:
                st.position = offset
                st.fetch_offset = offset
                st.reset = None

    def _start_fetches(self) -> None:
        now = time.monotonic()
        by_node: dict[int, list[tuple[PartitionState, int, int]]] = defaultdict(list)
        with self.lock:
            for tp, st in self.partitions.items():
                if (
                    st.position is None
                    or st.paused
                    or st.in_fetch
                    or st.error is not None
                    or st.buffered_bytes >= self.max_prefetch_bytes
                    or st.retry_at_s > now
                ):
                    continue
                leader = self.cluster.leader_for(tp)
                if leader < 0 or leader in self._fetches:
                    continue
                by_node[leader].append((st, st.fetch_offset, st.generation))
            for node, parts in by_node.items():
                for st, _, _ in parts:
                    st.in_fetch = True
                task = asyncio.ensure_future(self._fetch(node, parts))
                self._fetches[node] = task
        if not by_node:
            soonest = min(
                (st.retry_at_s for st in self.partitions.values() if st.retry_at_s > now),
                default=None,
            )
            if soonest is not None:
                self._loop.call_later(soonest - now, self._wake.set)

    async def _fetch(self, node: int, parts: list[tuple[PartitionState, int, int]]) -> None:
        request = pb.FetchRequest(
            max_wait_ms=self.fetch_max_wait_ms,
            min_bytes=self.fetch_min_bytes,
            max_bytes=self.fetch_max_bytes,
            isolation_level=self.isolation_level,
            replica_id=-1,
            partitions=[
                pb.FetchPartition(
                    topic=st.tp.topic,
                    partition=st.tp.partition,
                    fetch_offset=offset,
                    partition_max_bytes=self.max_partition_fetch_bytes,
                )
                for st, offset, _ in parts
            ],
        )
        if timeline.ENABLED:
            for _, offset, _ in parts:
                timeline.mark("fetch_request", offset)
        response = None
        try:
            response = await self.cluster.call_node(
                node,
                "Broker",
                "Fetch",
                request,
                self.request_timeout_s + self.fetch_max_wait_ms / 1000.0,
            )
        except RilkeError as exc:
            log.debug("fetch from broker %d failed: %s", node, exc)
            self.cluster.request_update()
            self._backoff([st for st, _, _ in parts])
            return
        except asyncio.CancelledError:
            raise
        finally:
            self._fetches.pop(node, None)
            for st, _, _ in parts:
                st.in_fetch = False
            if response is None:
                self._wake.set()
        handed_over = False
        try:
            handed_over = self._take_response(response, parts)
        finally:
            if handed_over:
                # A blocking poll() waits for these records on its own thread and needs the
                # interpreter lock to take them: starting the next fetch at once kept the lock
                # on this thread for that fetch's few hundred microseconds. Idle the loop
                # instead: poll() wakes the fetch loop once it has taken them (take()), and
                # the timer bounds the wait. (`rilke bench timeline`, end to end, median of
                # three rounds' p50: fetch_response -> polled 353 -> 233 us.)
                self._loop.call_later(HANDOVER_S, self._wake.set)
            else:
                self._wake.set()

    def _take_response(self, response: Any, parts: list[tuple[PartitionState, int, int]]) -> bool:
        """Buffer what a fetch brought; returns whether a blocking poll() was waiting for it."""
        handed_over = False
        got_data = False
        by_tp = {(st.tp.topic, st.tp.partition): (st, offset, gen) for st, offset, gen in parts}
        # Each batch header is read once, here, outside the lock; _decode uses what was read.
        scanned = {
            (r.topic, r.partition): codec.whole_batches(r.records)
            for r in response.partitions
            if r.records
        }
        with self.lock:
            for r in response.partitions:
                entry = by_tp.get((r.topic, r.partition))
                if entry is None:
                    continue
                st, offset, gen = entry
                if st.generation != gen or self.partitions.get(st.tp) is not st:
                    continue
                err = error_from_proto(r.error, f"fetch {r.topic}-{r.partition} at offset {offset}")
                if err is not None:
                    self._on_fetch_error(st, err)
                    continue
                st.failures = 0
                st.high_watermark = r.high_watermark
                data = r.records
                # The broker's word on where to go on: past offsets it no longer holds.
                told = r.next_offset if r.HasField("next_offset") else -1
                if not data:
                    if told > offset:  # nothing left before it (a compacted tail)
                        st.chunks.append(FetchedChunk(b"", [], gen, 0, None, told))
                        st.fetch_offset = told
                        got_data = True
                    continue
                batches, unreadable = scanned[(r.topic, r.partition)]
                next_offset = max(offset, batches[-1][1].next_offset) if batches else offset
                past = -1
                if unreadable is not None:  # a header after the whole batches does not hold
                    unreadable = type(unreadable)(
                        f"{r.topic}-{r.partition}: the batch at offset {next_offset} cannot be "
                        f"read ({unreadable}); seek() past it to skip it"
                    )
                elif (
                    told > next_offset
                    and batches
                    and batches[-1][0] + batches[-1][1].size == len(data)
                ):
                    next_offset = past = told  # every batch sent is here: skip the gap
                elif next_offset <= offset:
                    continue
                if timeline.ENABLED:
                    timeline.mark("fetch_response", offset)
                st.chunks.append(FetchedChunk(data, batches, gen, len(data), unreadable, past))
                st.buffered_bytes += len(data)
                st.fetch_offset = next_offset
                got_data = True
            if got_data:
                handed_over = self.pollers_waiting > 0
                self.data_ready.notify_all()
        if got_data:
            self.aio_data_ready.set()
        return handed_over

    def _on_fetch_error(self, st: PartitionState, err: RilkeError) -> None:
        if isinstance(err, OffsetOutOfRangeError):
            reset = self.default_reset()
            if reset == "none":
                st.error = OffsetOutOfRangeError(
                    f"{err}; auto_offset_reset='none': seek() to a valid offset"
                )
                self.data_ready.notify_all()
                self.aio_data_ready.set()
            else:
                log.info("offset %s out of range for %s; resetting", st.fetch_offset, st.tp)
                st.generation += 1
                st.position = None
                st.reset = reset
                st.chunks.clear()
                st.buffered_bytes = 0
            return
        if err.retriable or err.invalid_metadata:
            if err.invalid_metadata:
                self.cluster.request_update()
            self._backoff([st], locked=True)
            return
        st.error = err
        self.data_ready.notify_all()
        self.aio_data_ready.set()

    def _backoff(self, states: list[PartitionState], locked: bool = False) -> None:
        now = time.monotonic()
        for st in states:
            st.failures += 1
            st.retry_at_s = now + backoff_s(
                st.failures,
                self.cluster.retry_backoff_ms,
                self.cluster.retry_backoff_max_ms,
                self.cluster.rng,
            )
