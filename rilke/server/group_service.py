"""The broker side of consumer groups: coordinators over ``__consumer_offsets``, and the gRPC
``Group`` service.

:class:`GroupManager` runs one sans-I/O :class:`~rilke.server.coordinator.GroupCoordinator`
per partition of ``__consumer_offsets`` that this broker leads (on a single node: all of them).
For each request it calls the coordinator under that partition's lock, appends the records the
coordinator asks for to the partition with acks=all, and only then answers; if the append
fails, it rebuilds the coordinator from the partition (its memory may be ahead of its log)
and answers CoordinatorNotAvailable, which clients retry. On start it creates the topic if
missing (compacted, flush per message) and rebuilds every coordinator by reading its
partition. A timer task calls ``tick`` when a coordinator's next deadline comes (sessions,
poll intervals, revocation deadlines, offset retention), and logs every event the
coordinators report (offsets expiring included: never silent).

A group maps to partition ``(Java String.hashCode(group_id) & 0x7fffffff) % partitions`` (see
rilke.server.coordinator.codec), as in Kafka.

In a cluster the offsets partitions are replicated (:class:`LedOffsetsLog`): a coordinator
serves only while this node leads its partition. On gaining leadership (epoch E) it waits
until everything in the partition's log is committed (the high watermark reached the log
end: the new leader holds every committed entry), rebuilds its groups from the log, and
serves; on losing it (or a new epoch) it drops them at once and answers NotCoordinator, as
it does before it has loaded. A failed write drops the coordinator too; it loads again from
the committed log when the partition is caught up.

Threading: everything runs on the broker's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar, runtime_checkable

from rilke.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    CorruptRecordError,
    GroupIdNotFoundError,
    InvalidRequestError,
    NotCoordinatorError,
    RilkeError,
)
from rilke.proto import rilke_pb2 as pb
from rilke.replication.controller import MetadataView
from rilke.server.coordinator import (
    OFFSETS_TOPIC,
    CoordinatorConfig,
    EventKind,
    GroupCoordinator,
    GroupDescription,
    HeartbeatRequest,
    OffsetCommitPartition,
    OffsetCommitRequest,
    Output,
    Reply,
    TopicPartition,
    partition_for_group,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_OFFSETS_PARTITIONS = 16  # offsets.topic.num.partitions (Kafka: 50, Redpanda: 16)
OFFSETS_TOPIC_CONFIGS = {
    "cleanup.policy": "compact",
    "flush.messages": "1",  # acks=all on one node means fsynced: commits survive a crash
    "segment.bytes": str(100 * 1024 * 1024),
}
APPEND_TIMEOUT_S = 10.0
LOAD_CHUNK_RECORDS = 1000  # records a led coordinator replays between two yields to the loop
_MAX_TICK_SLEEP_S = 1.0


def coordinator_config(broker_config: Any) -> CoordinatorConfig:
    """The coordinator's settings from a BrokerConfig. Raises InvalidConfigError when the
    session timeout range is empty."""
    from rilke.errors import InvalidConfigError

    lo = broker_config.group_min_session_timeout_ms
    hi = broker_config.group_max_session_timeout_ms
    if lo > hi:
        raise InvalidConfigError(
            f"group_min_session_timeout_ms ({lo}) is above group_max_session_timeout_ms ({hi})"
        )
    return CoordinatorConfig(
        heartbeat_interval_ms=broker_config.group_heartbeat_interval_ms,
        min_session_timeout_ms=lo,
        max_session_timeout_ms=hi,
        offsets_retention_ms=broker_config.offsets_retention_minutes * 60_000,
    )


class OffsetsLog(Protocol):
    """One partition of ``__consumer_offsets`` as a coordinator sees it: keyed records.
    rilke.server.offsets_log implements it over the broker's Partition interface."""

    partition: int

    def append(
        self, records: list[tuple[bytes, bytes | None]], timestamp_ms: int
    ) -> Awaitable[Any]:
        """Write (key, value) records as one batch now (appends keep call order; raises a
        RilkeError or OSError if the write fails) and return an awaitable that resolves when
        they are durable (acks=all), or raises if they cannot be."""
        ...

    def read_all(self) -> Iterator[tuple[int, bytes | None, bytes | None]]:
        """Every (offset, key, value) from the log start to the high watermark, in order.
        Raises CorruptRecordError if a batch cannot be read."""
        ...


@runtime_checkable
class LedOffsetsLog(OffsetsLog, Protocol):
    """An OffsetsLog over a partition whose leader may move (replicated in a cluster): its
    coordinator serves only on the leader, once the log is caught up."""

    def leader(self) -> tuple[int | None, int]:
        """(the partition's leader as this node knows it, None if none; its leader epoch)."""
        ...

    def caught_up(self) -> bool:
        """Everything in the log is committed (high watermark == log end)."""
        ...

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (on the loop) when the leadership changes or the high watermark
        moves; returns the function that stops it."""
        ...


class BrokerView(Protocol):
    """What the group manager needs from the broker."""

    def topic_partitions(self) -> dict[str, int]:
        """Every non-internal topic with its partition count."""
        ...

    def high_watermark(self, tp: TopicPartition) -> int | None:
        """The partition's high watermark, or None if it does not exist."""
        ...

    def offsets_log(self, partition_count: int, partition: int) -> OffsetsLog:
        """Partition ``partition`` of ``__consumer_offsets``, creating the topic with
        ``partition_count`` partitions if it does not exist yet."""
        ...

    def offsets_partition_count(self) -> int | None:
        """How many partitions ``__consumer_offsets`` has, None if it does not exist."""
        ...


@dataclass
class _Slot:
    """One offsets partition and its coordinator.

    Coordinator steps are synchronous, so each runs whole on the event loop; its records are
    written in the same step (the log keeps their order). Answers then wait, outside the
    step, for ``durable``: the latest write's acknowledgement, which also covers every
    earlier write (one fsync serves many), so no answer reflects state that is not durable.
    """

    partition: int
    log: OffsetsLog
    coord: GroupCoordinator | None = None
    deadline_ms: int | None = None
    durable: Awaitable[Any] | None = None
    generation: int = 0  # bumped on every (re)load: a failed write reloads once
    epoch: int | None = None  # the leader epoch the coordinator was loaded at (led logs)
    unwatch: Callable[[], None] | None = None
    loading: asyncio.Task[None] | None = None  # a led log's coordinator being loaded
    reconciling: bool = False  # a reconcile is scheduled on the loop


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _new_member_id() -> str:
    return uuid.uuid4().hex


class GroupManager:
    """Coordinators for the ``__consumer_offsets`` partitions of this broker."""

    def __init__(
        self,
        broker: BrokerView,
        *,
        config: CoordinatorConfig | None = None,
        partitions: int = DEFAULT_OFFSETS_PARTITIONS,
        clock_ms: Callable[[], int] = _wall_clock_ms,
        node_id: int = 0,
    ) -> None:
        self.broker = broker
        self.config = config or CoordinatorConfig()
        self._wanted_partitions = partitions
        self.clock_ms = clock_ms
        self.node_id = node_id
        self.partition_count = 0
        self._slots: list[_Slot] = []
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._timer_due_ms = 0  # when the timer task means to wake next
        self._stopped = False

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every coordinator if ``__consumer_offsets`` exists (else it is created on the
        first group request, as Kafka does), and start the timer."""
        if self.broker.offsets_partition_count():
            self._open()
        self._timer = asyncio.ensure_future(self._run_timer())

    def _open(self) -> None:
        """Create ``__consumer_offsets`` if missing and load a coordinator per partition (a
        led log's only where this node leads it and it is caught up). Raises what the
        broker view raises while the topic cannot be had yet (CoordinatorNotAvailableError in
        a cluster while the controller creates it); nothing is kept then."""
        existing = self.broker.offsets_partition_count()
        count = existing or self._wanted_partitions
        slots = [_Slot(p, self.broker.offsets_log(count, p)) for p in range(count)]
        self.partition_count = count
        self._slots = slots
        for slot in slots:
            self._attach(slot)

    def _attach(self, slot: _Slot) -> None:
        if isinstance(slot.log, LedOffsetsLog):
            slot.unwatch = slot.log.watch(functools.partial(self._on_partition_change, slot))
            self._reconcile(slot)
        else:
            self._load(slot)

    def _on_partition_change(self, slot: _Slot) -> None:
        """A led partition's callback (leadership or high watermark moved): stop serving at
        once if this node no longer leads it at the loaded epoch; loading waits for the loop."""
        self._check_leading(slot)
        self._schedule_reconcile(slot)

    def _check_leading(self, slot: _Slot) -> bool:
        """Whether ``slot`` still serves: a led log's coordinator is dropped the moment this
        node does not lead its partition at the epoch it loaded at."""
        if slot.coord is None or not isinstance(slot.log, LedOffsetsLog):
            return slot.coord is not None
        leader, epoch = slot.log.leader()
        if leader != self.node_id or epoch != slot.epoch:
            where = leader if leader is not None else "unknown"
            self._drop(slot, f"leader now {where} at epoch {epoch}")
            return False
        return True

    def _schedule_reconcile(self, slot: _Slot) -> None:
        """Reconcile on the loop, outside the caller's step (a partition's callback)."""
        if slot.reconciling or self._stopped:
            return
        slot.reconciling = True

        def run() -> None:
            slot.reconciling = False
            if self._stopped:
                return
            try:
                self._reconcile(slot)
            except Exception:
                log.exception(
                    "%s-%d: loading the coordinator failed", OFFSETS_TOPIC, slot.partition
                )

        asyncio.get_running_loop().call_soon(run)

    def _reconcile(self, slot: _Slot) -> None:
        """A led log's coordinator follows its partition's leadership: dropped when this node
        stops leading (or the epoch moved), loaded from the committed log once it leads and
        everything in the log is committed."""
        led = slot.log
        if not isinstance(led, LedOffsetsLog):
            return
        self._check_leading(slot)
        leader, epoch = led.leader()
        if (
            leader == self.node_id
            and slot.coord is None
            and slot.loading is None
            and not self._stopped
            and led.caught_up()
        ):
            slot.loading = asyncio.ensure_future(self._load_led(slot, epoch))

    def _drop(self, slot: _Slot, why: str) -> None:
        """Stop serving ``slot``'s groups at once (answers still waiting on a write fail)."""
        count = len(slot.coord.groups) if slot.coord is not None else 0
        if slot.loading is not None:
            slot.loading.cancel()
            slot.loading = None
        slot.coord = None
        slot.durable = None
        slot.deadline_ms = None
        slot.epoch = None
        slot.generation += 1
        log.info(
            "node %d %s-%d: no longer coordinating (%s): dropped %d group(s)",
            self.node_id,
            OFFSETS_TOPIC,
            slot.partition,
            why,
            count,
        )

    def _leading(self, slot: _Slot) -> bool:
        if not isinstance(slot.log, LedOffsetsLog):
            return True
        return slot.log.leader()[0] == self.node_id

    def _not_serving(self, slot: _Slot) -> RilkeError:
        """Why ``slot`` has no coordinator: another node leads it, or it is loading."""
        if isinstance(slot.log, LedOffsetsLog):
            leader, epoch = slot.log.leader()
            if leader != self.node_id:
                where = f"node {leader}" if leader is not None else "no node now"
                return NotCoordinatorError(
                    f"node {self.node_id} is not the coordinator of {OFFSETS_TOPIC}-"
                    f"{slot.partition}: {where} leads it (epoch {epoch})"
                )
        return CoordinatorLoadInProgressError(
            f"the coordinator of {OFFSETS_TOPIC}-{slot.partition} is loading"
        )

    def leader_of(self, partition: int) -> int | None:
        """The node leading offsets partition ``partition`` as its own (led) log knows it;
        None also when the log does not say (a log whose leader never moves)."""
        log_ = self._slots[partition].log
        return log_.leader()[0] if isinstance(log_, LedOffsetsLog) else None

    def is_led(self, partition: int) -> bool:
        """Whether offsets partition ``partition``'s leader may move (replicated)."""
        return isinstance(self._slots[partition].log, LedOffsetsLog)

    def _refresh(self) -> None:
        """From the timer: open the slots once the topic exists, follow a partition object
        the broker replaced, and reconcile leadership that moved without a callback."""
        if not self._slots:
            if self.broker.offsets_partition_count():
                try:
                    self._open()
                except RilkeError as exc:
                    log.debug("group coordinators not opened yet: %s", exc)
            return
        for slot in self._slots:
            if not isinstance(slot.log, LedOffsetsLog):
                continue
            try:
                fresh = self.broker.offsets_log(self.partition_count, slot.partition)
            except RilkeError as exc:
                if slot.coord is not None:
                    self._drop(slot, str(exc))
                continue
            if getattr(fresh, "source", fresh) is not getattr(slot.log, "source", slot.log):
                if slot.unwatch is not None:
                    slot.unwatch()
                if slot.coord is not None:
                    self._drop(slot, "the partition was reopened")
                slot.log = fresh
                self._attach(slot)
            else:
                self._reconcile(slot)

    async def stop(self) -> None:
        self._stopped = True
        for slot in self._slots:
            if slot.unwatch is not None:
                slot.unwatch()
                slot.unwatch = None
            if slot.loading is not None:
                slot.loading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await slot.loading
        stop_view = getattr(self.broker, "stop", None)
        if stop_view is not None:
            await stop_view()  # a cluster view's topic creation in flight
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None

    def _load(self, slot: _Slot) -> None:
        """Rebuild ``slot``'s coordinator by replaying its partition from the log start."""
        for _ in self._replaying(slot):
            pass

    async def _load_led(self, slot: _Slot, epoch: int) -> None:
        """:meth:`_load` for a led log, yielding to the loop every LOAD_CHUNK_RECORDS
        records (a new leader may replay a long log: Raft's heartbeats must go on); abandoned
        as soon as this node no longer leads the partition at ``epoch``."""
        led = slot.log
        assert isinstance(led, LedOffsetsLog)
        me = asyncio.current_task()

        def still_leading() -> bool:
            if led.leader() == (self.node_id, epoch) and not self._stopped:
                return True
            log.info("%s-%d: loading abandoned: leadership moved", OFFSETS_TOPIC, slot.partition)
            return False

        replay = self._replaying(slot)
        try:
            # Each stretch between two pauses runs whole on the loop, after a check: the
            # coordinator is installed (at the end of the last) only while still leading.
            if not still_leading():
                return
            for _ in replay:
                await asyncio.sleep(0)
                if not still_leading():
                    return
            slot.epoch = epoch
        except Exception:
            log.exception("%s-%d: loading the coordinator failed", OFFSETS_TOPIC, slot.partition)
        finally:
            replay.close()
            if slot.loading is me:
                slot.loading = None

    def _replaying(self, slot: _Slot) -> Generator[None, None, None]:
        """Replay ``slot``'s partition into a new coordinator, pausing (yielding) every
        LOAD_CHUNK_RECORDS records; installs it when the replay is complete."""
        coord = GroupCoordinator(
            self.config, partition=slot.partition, member_id_factory=_new_member_id
        )
        count = skipped = 0
        for offset, key, value in slot.log.read_all():
            if key is None:
                skipped += 1
                continue
            try:
                coord.replay(key, value)
                count += 1
            except CorruptRecordError as exc:
                # A record this version cannot read (a newer version wrote it, or damage):
                # skip it loudly rather than refuse to serve every group of the partition.
                skipped += 1
                log.warning(
                    "%s-%d offset %d: skipping a record: %s",
                    OFFSETS_TOPIC,
                    slot.partition,
                    offset,
                    exc,
                )
            if (count + skipped) % LOAD_CHUNK_RECORDS == 0:
                yield
        coord.finish_loading(self.clock_ms())
        slot.coord = coord
        slot.generation += 1
        slot.deadline_ms = coord.next_deadline_ms()
        if count or skipped:
            log.info(
                "%s-%d: loaded %d group(s) from %d record(s)%s",
                OFFSETS_TOPIC,
                slot.partition,
                len(coord.groups),
                count,
                f", skipped {skipped}" if skipped else "",
            )

    def committed_offsets(self) -> Iterator[tuple[str, TopicPartition, int]]:
        """(group id, partition, committed offset) of every group coordinated here, for the
        metrics (rilke.server.metrics): a read of the coordinators' state, on the loop."""
        for slot in self._slots:
            if slot.coord is None:
                continue
            for group in slot.coord.groups.values():
                for tp, committed in group.offsets.items():
                    yield group.group_id, tp, committed.offset

    # --- calls -------------------------------------------------------------------------------

    def partition_for(self, group_id: str) -> int:
        return partition_for_group(group_id, self.partition_count)

    def partition_of(self, group_id: str) -> int:
        """The offsets partition of ``group_id``, opening the coordinators if needed."""
        return self._slot_for(group_id).partition

    def _slot_for(self, group_id: str) -> _Slot:
        if not self._slots:
            if self._stopped:
                raise CoordinatorNotAvailableError("the group coordinators are stopping")
            self._open()
        return self._slots[self.partition_for(group_id)]

    async def _run(self, slot: _Slot, fn: Callable[[GroupCoordinator, int], Reply[T]]) -> Reply[T]:
        coord = slot.coord
        if coord is None or not self._check_leading(slot):
            raise self._not_serving(slot)
        # One synchronous step: the coordinator's change and the write of its records.
        reply = fn(coord, self.clock_ms())
        durable = self._issue(slot, reply.output)
        slot.deadline_ms = coord.next_deadline_ms()
        if slot.deadline_ms is not None and slot.deadline_ms < self._timer_due_ms:
            self._wake.set()  # the timer sleeps past this new deadline
        await self._settle(slot, durable)
        self._log_events(slot, reply.output)
        return reply

    async def call(
        self, group_id: str, fn: Callable[[GroupCoordinator, int], Reply[T]]
    ) -> Reply[T]:
        """Run ``fn(coordinator, now_ms)`` for the group's coordinator, make its records
        durable, log its events, and return its reply. Raises CoordinatorLoadInProgressError
        or CoordinatorNotAvailableError (the append failed)."""
        return await self._run(self._slot_for(group_id), fn)

    def _issue(self, slot: _Slot, out: Output) -> tuple[int, Awaitable[Any]] | None:
        """Write ``out``'s records (one batch); return what the answer must wait for: this
        write's acknowledgement, or the latest earlier one still pending."""
        if out.records:
            try:
                slot.durable = slot.log.append(
                    [(r.key, r.value) for r in out.records], self.clock_ms()
                )
            except (RilkeError, OSError) as exc:
                self._failed(slot, slot.generation, exc)
        if slot.durable is None:
            return None
        return slot.generation, slot.durable

    async def _settle(self, slot: _Slot, durable: tuple[int, Awaitable[Any]] | None) -> None:
        if durable is None:
            return
        generation, waitable = durable
        try:
            await asyncio.wait_for(asyncio.shield(waitable), APPEND_TIMEOUT_S)
        except (RilkeError, TimeoutError, OSError) as exc:
            self._failed(slot, generation, exc)
        if slot.durable is waitable:
            slot.durable = None

    def _failed(self, slot: _Slot, generation: int, exc: BaseException) -> NoReturn:
        """A write failed: the coordinator's memory may be ahead of its log. Rebuild it from
        the log (once per failure) and answer CoordinatorNotAvailableError (retriable). A led
        log's coordinator is dropped instead (it loads again from the committed log once the
        partition is caught up), and NotCoordinatorError answered if another node leads."""
        if isinstance(slot.log, LedOffsetsLog):
            if slot.generation == generation:
                log.warning(
                    "%s-%d: writing group state failed (%s); dropping the coordinator",
                    OFFSETS_TOPIC,
                    slot.partition,
                    exc,
                )
                self._drop(slot, f"a write failed: {exc}")
                self._schedule_reconcile(slot)
            if not self._leading(slot):
                raise self._not_serving(slot) from None
        elif slot.generation == generation:
            log.error(
                "%s-%d: writing group state failed (%s); reloading the coordinator",
                OFFSETS_TOPIC,
                slot.partition,
                exc,
            )
            slot.coord = None
            slot.durable = None
            try:
                self._load(slot)
            except Exception:
                log.exception("%s-%d: reloading failed", OFFSETS_TOPIC, slot.partition)
        raise CoordinatorNotAvailableError(
            f"writing to {OFFSETS_TOPIC}-{slot.partition} failed: {exc}"
        ) from None

    def _log_events(self, slot: _Slot, out: Output) -> None:
        for event in out.events:
            level = logging.INFO
            if event.kind in (EventKind.OFFSETS_EXPIRED, EventKind.MEMBER_REMOVED):
                level = logging.WARNING
            log.log(
                level,
                "node %d %s-%d: %s",
                self.node_id,
                OFFSETS_TOPIC,
                slot.partition,
                event.message,
            )

    # --- timers ------------------------------------------------------------------------------

    async def tick_all(self) -> None:
        """Tick every coordinator: expiries whose time has come, and topic metadata changes
        (a new topic a regex matches, added partitions) for idle groups too."""
        self._refresh()
        topics = self.broker.topic_partitions()
        pending: list[tuple[_Slot, tuple[int, Awaitable[Any]]]] = []
        for slot in self._slots:
            coord = slot.coord
            if coord is None:
                continue
            out = coord.tick(self.clock_ms(), topics)
            try:
                durable = self._issue(slot, out)
            except RilkeError:
                continue
            slot.deadline_ms = coord.next_deadline_ms()
            self._log_events(slot, out)
            if durable is not None and out.records:
                pending.append((slot, durable))
        for slot, durable in pending:
            # Nobody waits for a tick's answer, but a failed write must still reload.
            with contextlib.suppress(RilkeError):
                await self._settle(slot, durable)

    async def _run_timer(self) -> None:
        while not self._stopped:
            now = self.clock_ms()
            deadlines = [s.deadline_ms for s in self._slots if s.deadline_ms is not None]
            sleep_s = _MAX_TICK_SLEEP_S
            if deadlines:
                sleep_s = min(sleep_s, max(0.0, (min(deadlines) - now) / 1000))
            self._timer_due_ms = now + int(sleep_s * 1000)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), sleep_s)
            try:
                await self.tick_all()
            except Exception:
                log.exception("group coordinator timer failed")

    # --- requests (protobuf in, protobuf out) ---------------------------------------------------

    async def heartbeat(self, request: pb.ConsumerGroupHeartbeatRequest, peer: str) -> Any:
        req = heartbeat_from_proto(request, peer)
        topics = self.broker.topic_partitions()
        reply = await self.call(req.group_id, lambda c, now: c.heartbeat(req, now, topics))
        resp = pb.ConsumerGroupHeartbeatResponse()
        if reply.error is not None:
            resp.error.CopyFrom(error_to_proto(reply.error))
            resp.member_id = request.member_id
            resp.member_epoch = request.member_epoch
            return resp
        hb = reply.response
        assert hb is not None
        resp.member_id = hb.member_id
        resp.member_epoch = hb.member_epoch
        resp.heartbeat_interval_ms = hb.heartbeat_interval_ms
        resp.has_assignment = True
        resp.assignment.extend(tps_to_proto(hb.assignment))
        return resp

    async def offset_commit(self, request: pb.OffsetCommitRequest) -> Any:
        req = OffsetCommitRequest(
            group_id=request.group_id,
            member_id=request.member_id,
            member_epoch=request.member_epoch,
            partitions=tuple(
                OffsetCommitPartition(p.topic, p.partition, p.offset, p.leader_epoch, p.metadata)
                for p in request.partitions
            ),
        )
        reply = await self.call(
            req.group_id,
            lambda c, now: (c.commit_offsets if req.member_id else c.admin_commit_offsets)(
                req, now, self.broker.high_watermark
            ),
        )
        resp = pb.OffsetCommitResponse()
        if reply.error is not None:
            resp.error.CopyFrom(error_to_proto(reply.error))
            for p in request.partitions:
                resp.partitions.add(
                    topic=p.topic, partition=p.partition, error=error_to_proto(reply.error)
                )
            return resp
        result = reply.response
        assert result is not None
        errors = {(e.topic, e.partition): e.error for e in result.errors}
        first: Any = None
        for p in request.partitions:
            err = errors.get((p.topic, p.partition))
            item = resp.partitions.add(topic=p.topic, partition=p.partition)
            if err is not None:
                item.error.CopyFrom(error_to_proto(err))
                first = first or err
            elif errors:
                item.error.CopyFrom(
                    error_to_proto(InvalidRequestError("not committed: other partitions failed"))
                )
        if first is not None:
            resp.error.CopyFrom(error_to_proto(first))
        return resp

    async def offset_fetch(self, request: pb.OffsetFetchRequest) -> Any:
        wanted = [TopicPartition(p.topic, p.partition) for p in request.partitions] or None
        reply = await self.call(
            request.group_id, lambda c, now: c.fetch_offsets(request.group_id, wanted)
        )
        resp = pb.OffsetFetchResponse()
        if reply.error is not None:
            resp.error.CopyFrom(error_to_proto(reply.error))
            return resp
        assert reply.response is not None
        for tp, om in reply.response.items():
            item = resp.partitions.add(topic=tp.topic, partition=tp.partition, offset=-1)
            if om is not None:
                item.offset = om.offset
                item.metadata = om.metadata
                item.commit_timestamp_ms = om.commit_timestamp_ms
        return resp

    async def list_groups(self) -> Any:
        resp = pb.ListGroupsResponse()
        for slot in self._slots:
            if slot.coord is None:
                continue
            for g in slot.coord.list_groups():
                resp.groups.add(group_id=g.group_id, state=g.state.value, members=g.members)
        resp.groups.sort(key=lambda g: g.group_id)
        return resp

    async def describe_groups(self, request: pb.DescribeGroupsRequest) -> Any:
        resp = pb.DescribeGroupsResponse()
        for gid in request.group_ids:
            out = resp.groups.add(group_id=gid)
            try:
                slot = self._slot_for(gid)
                if slot.coord is None:
                    raise self._not_serving(slot)
                desc = slot.coord.describe_group(gid)
            except RilkeError as exc:
                out.error.CopyFrom(error_to_proto(exc))
                out.state = "Dead"
                continue
            describe_to_proto(desc, out)
        return resp

    async def delete_groups(self, request: pb.DeleteGroupsRequest) -> Any:
        by_slot: dict[int, list[str]] = {}
        results: dict[str, RilkeError | None] = {}
        for gid in request.group_ids:
            if not self._slots:
                results[gid] = GroupIdNotFoundError(f"no group {gid!r}")
                continue
            by_slot.setdefault(self.partition_for(gid), []).append(gid)
        for p, gids in by_slot.items():

            def delete(
                c: GroupCoordinator, now: int, g: list[str] = gids
            ) -> Reply[dict[str, RilkeError | None]]:
                return c.delete_groups(g)

            try:
                reply = await self._run(self._slots[p], delete)
            except RilkeError as exc:
                results.update(dict.fromkeys(gids, exc))
                continue
            if reply.error is not None:
                results.update(dict.fromkeys(gids, reply.error))
            else:
                assert reply.response is not None
                results.update(reply.response)
        resp = pb.DeleteGroupsResponse()
        for gid in request.group_ids:
            item = resp.results.add(group_id=gid)
            err = results.get(gid)
            if err is not None:
                item.error.CopyFrom(error_to_proto(err))
        return resp


# --- conversions --------------------------------------------------------------------------------


def error_to_proto(exc: BaseException) -> Any:
    code = getattr(exc, "code", 1)
    return pb.Error(code=int(code), message=str(exc))


def tps_to_proto(tps: Iterable[TopicPartition]) -> list[Any]:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(tps):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [pb.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def tps_from_proto(items: Iterable[Any]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(i.topic, p) for i in items for p in i.partitions)


def heartbeat_from_proto(request: Any, peer: str = "") -> HeartbeatRequest:
    """The coordinator's request for a ConsumerGroupHeartbeat. Rilke clients send their full
    subscription and owned partitions on every heartbeat; 0 timeouts mean "unchanged"."""
    subscribed = bool(request.subscribed_topic_names or request.subscribed_topic_regex)
    return HeartbeatRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        member_epoch=request.member_epoch,
        instance_id=request.instance_id or None,
        client_id=request.client_id,
        client_host=peer,
        rebalance_timeout_ms=request.rebalance_timeout_ms or None,
        session_timeout_ms=request.session_timeout_ms or None,
        max_poll_interval_ms=request.max_poll_interval_ms or None,
        # Both empty: "unchanged" (proto3 cannot say null); a member that wants nothing leaves.
        subscribed_topics=tuple(request.subscribed_topic_names) if subscribed else None,
        subscribed_regex=request.subscribed_topic_regex if subscribed else None,
        assignor=request.assignor,
        owned_partitions=tps_from_proto(request.owned_partitions),
        poll_age_ms=max(0, request.poll_age_ms),
    )


def peer_host(peer: str) -> str:
    """The client's address from a gRPC peer string ("ipv4:10.0.0.1:5000" -> "10.0.0.1",
    "ipv6:[::1]:5000" -> "::1")."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return peer
    host = rest.rpartition(":")[0] or rest
    return host.strip("[]")


def describe_to_proto(desc: GroupDescription, out: Any) -> None:
    out.state = desc.state.value
    out.group_epoch = desc.group_epoch
    out.assignment_epoch = desc.assignment_epoch
    out.assignor = desc.assignor
    for m in desc.members:
        pm = out.members.add(
            member_id=m.member_id,
            instance_id=m.instance_id or "",
            client_id=m.client_id,
            client_host=m.client_host,
            member_epoch=m.member_epoch,
            state=m.state.value,
            left_static=m.left_static,
            subscribed_topic_regex=m.subscribed_regex or "",
        )
        pm.subscribed_topic_names.extend(m.subscribed_topics)
        pm.assignment.extend(tps_to_proto(m.assignment))
        pm.owned_partitions.extend(tps_to_proto(m.owned_partitions))
        pm.target_assignment.extend(tps_to_proto(m.target_assignment))
        pm.pending_revocation.extend(tps_to_proto(m.pending_revocation))
    for tp, om in desc.offsets.items():
        out.offsets.add(
            topic=tp.topic,
            partition=tp.partition,
            offset=om.offset,
            metadata=om.metadata,
            commit_timestamp_ms=om.commit_timestamp_ms,
        )


# --- the gRPC service ---------------------------------------------------------------------------


class GroupService:
    """The ``rilke.v1.Group`` servicer over a :class:`GroupManager`."""

    def __init__(
        self,
        manager: GroupManager,
        advertised: tuple[str, int],
        node_id: int = 0,
        metadata_view: Callable[[], MetadataView] | None = None,
    ):
        from rilke.server.group_placement import CoordinatorLocator

        self.manager = manager
        self.advertised = advertised
        self.node_id = node_id
        # With a metadata view (a node of a cluster), FindCoordinator names the leader of the
        # group's offsets partition; without it, this node (the single node leads them all).
        self.locator = CoordinatorLocator(manager, node_id, advertised, metadata_view)

    async def _guard(self, make: Callable[[], Awaitable[Any]], empty: Callable[[], Any]) -> Any:
        """Answer coordinator-level failures (loading, write failed) as the response's error."""
        try:
            return await make()
        except RilkeError as exc:
            resp = empty()
            resp.error.CopyFrom(error_to_proto(exc))
            return resp

    async def FindCoordinator(self, request: Any, context: Any) -> Any:
        resp = pb.FindCoordinatorResponse()
        try:
            found = self.locator.coordinator_for(request.group_id)
        except RilkeError as exc:
            resp.error.CopyFrom(error_to_proto(exc))
            return resp
        resp.offsets_partition = found.offsets_partition
        resp.coordinator.node_id = found.node_id
        resp.coordinator.host = found.host
        resp.coordinator.port = found.port
        return resp

    async def ConsumerGroupHeartbeat(self, request: Any, context: Any) -> Any:
        peer = ""
        with contextlib.suppress(Exception):
            peer = peer_host(str(context.peer()))
        return await self._guard(
            lambda: self.manager.heartbeat(request, peer), pb.ConsumerGroupHeartbeatResponse
        )

    async def OffsetCommit(self, request: Any, context: Any) -> Any:
        return await self._guard(
            lambda: self.manager.offset_commit(request), pb.OffsetCommitResponse
        )

    async def OffsetFetch(self, request: Any, context: Any) -> Any:
        return await self._guard(lambda: self.manager.offset_fetch(request), pb.OffsetFetchResponse)

    async def ListGroups(self, request: Any, context: Any) -> Any:
        return await self._guard(self.manager.list_groups, pb.ListGroupsResponse)

    async def DescribeGroups(self, request: Any, context: Any) -> Any:
        return await self.manager.describe_groups(request)

    async def DeleteGroups(self, request: Any, context: Any) -> Any:
        return await self.manager.delete_groups(request)


def topic_counts(topics: Mapping[str, int]) -> dict[str, int]:
    """Helper for BrokerView implementations: drop internal topics."""
    return {t: n for t, n in topics.items() if not t.startswith("__")}
