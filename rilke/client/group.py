"""Consumer group membership for the consumer (KIP-848-style, server-side assignment).

:class:`GroupMembership` lives on the consumer's event loop. A heartbeat task joins the group
(member epoch 0), heartbeats every ``heartbeat_interval_ms`` the coordinator asks for,
reporting the partitions the consumer owns and how long ago the application last polled, and
keeps the coordinator's latest answer: the partitions this member may consume now.

Reconciliation runs inside ``poll()``, where the application can commit:

1. partitions that were taken away: ``on_revoke(partitions)``; with auto-commit, their
   positions are committed; then they leave the fetcher and the next heartbeat (sent at once)
   acknowledges the revocation, so the coordinator may hand them to their new owner;
2. partitions that were added: they join the fetcher, starting from the group's committed
   offsets (or ``auto_offset_reset``), then ``on_assign(partitions)``.

Partitions that stay are never touched, so they keep being consumed through a rebalance.
A fenced member (session expired, removed for not polling) loses its partitions at once
without committing (``on_revoke`` is called for them) and rejoins. ``close()`` commits
(auto-commit), calls ``on_revoke`` and leaves at once (epoch -1, or -2 for a static member,
which keeps its partitions for its session timeout).

The consumer module calls :data:`rilke.client.consumer.GROUP_FACTORY` (set here) with its core.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rilke.client.backoff import backoff_s
from rilke.client.cluster import Cluster
from rilke.client.structs import OffsetAndMetadata, TopicPartition
from rilke.client.transport import error_from_proto
from rilke.errors import (
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    FencedMemberEpochError,
    IllegalStateError,
    KafkaTimeoutError,
    NotCoordinatorError,
    RilkeError,
    StaleMemberEpochError,
    UnknownMemberIdError,
)
from rilke.proto import rilke_pb2 as pb

log = logging.getLogger(__name__)

RebalanceCallback = Callable[[set[TopicPartition]], Any]

GROUP_SETTINGS = {
    "session_timeout_ms": 45_000,
    "max_poll_interval_ms": 300_000,
    "rebalance_timeout_ms": None,  # default: max_poll_interval_ms, as Kafka does
    "group_instance_id": None,
    "group_remote_assignor": "",  # "sticky" (the broker's default), "range", "roundrobin"
    "heartbeat_interval_ms": None,  # the coordinator decides; a local cap if set
}

_COORDINATOR_ERRORS = (
    NotCoordinatorError,
    CoordinatorNotAvailableError,
    CoordinatorLoadInProgressError,
)
COORDINATOR_ERRORS = _COORDINATOR_ERRORS  # moved, loading, unavailable: find it again


def tps_to_proto(tps: Iterable[TopicPartition]) -> list[Any]:
    by_topic: dict[str, list[int]] = {}
    for tp in sorted(tps):
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    return [pb.TopicPartitions(topic=t, partitions=ps) for t, ps in by_topic.items()]


def tps_from_proto(items: Iterable[Any]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(i.topic, p) for i in items for p in i.partitions)


class GroupCoordinatorClient:
    """Finds the group's coordinator and calls it, rediscovering it when it moved."""

    def __init__(self, cluster: Cluster, group_id: str) -> None:
        self.cluster = cluster
        self.group_id = group_id
        self.address: str | None = None

    async def find(self, timeout_s: float) -> str:
        resp = await self.cluster.call_any(
            "Group", "FindCoordinator", pb.FindCoordinatorRequest(group_id=self.group_id), timeout_s
        )
        err = error_from_proto(resp.error, f"finding the coordinator of group {self.group_id!r}")
        if err is not None:
            raise err
        self.address = f"{resp.coordinator.host}:{resp.coordinator.port}"
        return self.address

    async def call_once(self, method: str, request: Any, timeout_s: float) -> Any:
        """One call to the coordinator. A coordinator-level error in the answer (moved,
        loading, unavailable) or an unreachable coordinator is raised (retriable), and the
        coordinator is looked up again next time."""
        deadline = time.monotonic() + timeout_s
        address = self.address or await self.find(timeout_s)
        try:
            resp = await self.cluster.transport.call(
                address, "Group", method, request, max(0.001, deadline - time.monotonic())
            )
        except RilkeError as exc:
            if exc.retriable:
                self.address = None
            raise
        if "error" in resp.DESCRIPTOR.fields_by_name and resp.HasField("error"):
            err = error_from_proto(resp.error)
            if isinstance(err, _COORDINATOR_ERRORS):
                self.address = None
                raise err
        return resp

    async def call(self, method: str, request: Any, timeout_s: float) -> Any:
        """Call with retries of retriable failures (backoff with jitter) until the deadline."""
        return await self.cluster.retrying(
            lambda remaining: self.call_once(method, request, remaining), timeout_s
        )


class GroupMembership:
    """One consumer's membership of its group; see the module docstring."""

    def __init__(self, core: Any) -> None:
        self.core = core
        self.group_id: str = core.group_id
        settings = dict(GROUP_SETTINGS)
        unknown = set(core.group_settings) - set(settings)
        if unknown:
            raise TypeError(f"unknown consumer settings: {', '.join(sorted(unknown))}")
        settings.update(core.group_settings)
        self.session_timeout_ms = int(settings["session_timeout_ms"])  # type: ignore[arg-type]
        self.max_poll_interval_ms = int(settings["max_poll_interval_ms"])  # type: ignore[arg-type]
        rebalance = settings["rebalance_timeout_ms"]
        self.rebalance_timeout_ms = int(rebalance) if rebalance else self.max_poll_interval_ms
        self.instance_id: str | None = settings["group_instance_id"]  # type: ignore[assignment]
        self.assignor = str(settings["group_remote_assignor"] or "")
        cap = settings["heartbeat_interval_ms"]
        self._interval_cap_s = int(cap) / 1000 if cap else None
        for name, value in (
            ("session_timeout_ms", self.session_timeout_ms),
            ("max_poll_interval_ms", self.max_poll_interval_ms),
            ("rebalance_timeout_ms", self.rebalance_timeout_ms),
        ):
            if value <= 0:
                raise ValueError(f"{name} must be positive, not {value}")
        self.auto_commit = bool(core.enable_auto_commit)
        self.auto_commit_interval_s = core.auto_commit_interval_ms / 1000
        self.request_timeout_s: float = core.request_timeout_s
        self.cluster: Cluster = core.cluster
        self.fetcher = core.fetcher
        self.fetcher.initial_position = self._initial_positions
        self.client_id: str = str(getattr(core, "_cluster_args", {}).get("client_id", ""))
        self.coordinator = GroupCoordinatorClient(self.cluster, self.group_id)

        self.member_id = ""
        self.epoch = 0
        self.owned: set[TopicPartition] = set()
        self.target: frozenset[TopicPartition] | None = None  # the coordinator's last answer
        self.topics: tuple[str, ...] = ()
        self.pattern: str | None = None
        self.on_assign: RebalanceCallback | None = None
        self.on_revoke: RebalanceCallback | None = None
        self._lost = False
        # Set (on the loop) when the assignment changed or was lost: poll() has work.
        self._changed = False
        self._fatal: RilkeError | None = None
        self._interval_s = 0.3
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_poll = time.monotonic()
        self._next_auto_commit = time.monotonic() + self.auto_commit_interval_s
        self._auto_commit_task: asyncio.Task[None] | None = None
        self._closed = False
        self._in_poll = False
        # Set by poll_needed() (any thread) when it saw max_poll_interval_ms expired: it resets
        # the poll clock, so poll() could not see the expiry itself any more.
        self._expired_seen = False

    # --- subscription --------------------------------------------------------------------------

    def subscribe(
        self,
        topics: Iterable[str] = (),
        pattern: str | None = None,
        on_assign: RebalanceCallback | None = None,
        on_revoke: RebalanceCallback | None = None,
    ) -> None:
        """Subscribe to topic names and/or a regex (Python ``re`` syntax, matched in full
        against topic names by the coordinator). Replaces the previous subscription; the
        change reaches the coordinator on the next heartbeat, sent at once."""
        topics = tuple(sorted(set(topics)))
        if not topics and not pattern:
            raise ValueError("subscribe to at least one topic or a pattern")
        if pattern is not None:
            import re

            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid pattern {pattern!r}: {exc}") from None
        self.topics = topics
        self.pattern = pattern
        self.on_assign = on_assign
        self.on_revoke = on_revoke
        if self._task is None:
            self._task = asyncio.ensure_future(self._heartbeat_loop())
        self._wake.set()

    # --- heartbeats ----------------------------------------------------------------------------

    def _heartbeat_request(self, epoch: int) -> Any:
        req = pb.ConsumerGroupHeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=epoch,
            instance_id=self.instance_id or "",
            rebalance_timeout_ms=self.rebalance_timeout_ms,
            session_timeout_ms=self.session_timeout_ms,
            max_poll_interval_ms=self.max_poll_interval_ms,
            subscribed_topic_names=list(self.topics),
            subscribed_topic_regex=self.pattern or "",
            assignor=self.assignor,
            poll_age_ms=int((time.monotonic() - self._last_poll) * 1000),
            client_id=self.client_id,
        )
        if epoch > 0:
            req.owned_partitions.extend(tps_to_proto(self.owned))
        return req

    def _hb_timeout_s(self) -> float:
        return max(0.5, min(self.request_timeout_s, self.session_timeout_ms / 2000))

    async def _heartbeat_once(self) -> None:
        """Send one heartbeat and take its answer. Raises retriable errors for the loop's
        backoff; fencing and fatal errors are handled here."""
        resp = await self.coordinator.call_once(
            "ConsumerGroupHeartbeat", self._heartbeat_request(self.epoch), self._hb_timeout_s()
        )
        err = error_from_proto(resp.error, f"heartbeat of group {self.group_id!r}")
        if err is None:
            self.member_id = resp.member_id
            self.epoch = resp.member_epoch
            if resp.heartbeat_interval_ms > 0:
                self._interval_s = resp.heartbeat_interval_ms / 1000
            if resp.has_assignment:
                new = tps_from_proto(resp.assignment)
                if new != self.target:
                    self.target = new
                    self._changed = True
                    self._wake_poll()
            return
        if isinstance(err, UnknownMemberIdError | FencedMemberEpochError):
            log.warning("group %s: %s; rejoining", self.group_id, err)
            self.epoch = 0
            self.target = None
            self._changed = True
            if self.owned:
                # Another member may own these already: stop reading them at once.
                self._lost = True
                self.fetcher.assign([])
                self._wake_poll()
            self._wake.set()
            return
        if err.retriable:
            raise err
        log.error("group %s: %s", self.group_id, err)
        self._fatal = err
        self._wake_poll()

    def _poll_expired(self) -> bool:
        return (time.monotonic() - self._last_poll) * 1000 > self.max_poll_interval_ms

    async def _heartbeat_loop(self) -> None:
        attempt = 0
        while not self._closed and self._fatal is None:
            if self.epoch <= 0 and self._poll_expired():
                # The application has not polled within max_poll_interval_ms: the coordinator
                # would remove us again at once (and rebalance everyone). Rejoin on the next
                # poll() instead, as Kafka's consumer does.
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # bounded: the condition is re-checked
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue
            try:
                await self._heartbeat_once()
                attempt = 0
                delay = self._interval_s
            except RilkeError as exc:
                attempt += 1
                delay = backoff_s(attempt, 100, 1000, self.cluster.rng)
                log.debug("group %s: heartbeat failed (%s); retrying", self.group_id, exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                attempt += 1
                delay = 1.0
                log.exception("group %s: heartbeat failed", self.group_id)
            if self._closed:
                return
            if self._interval_cap_s is not None:
                delay = min(delay, self._interval_cap_s)
            if self._wake.is_set():
                self._wake.clear()
                if attempt == 0:
                    continue
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
            self._wake.clear()

    def _wake_poll(self) -> None:
        """Wake a poll() that waits for records, so it reconciles now."""
        fetcher = self.fetcher
        fetcher.aio_data_ready.set()
        with fetcher.data_ready:
            fetcher.data_ready.notify_all()

    # --- inside poll ---------------------------------------------------------------------------

    def poll_needed(self) -> bool:
        """Note that the application polled, and say whether :meth:`poll` has work to do
        (a changed assignment, a due auto-commit, a rejoin to allow). Safe from any thread:
        the blocking consumer calls it so that it hops to the event loop only when needed."""
        now = time.monotonic()
        expired = (now - self._last_poll) * 1000 > self.max_poll_interval_ms
        self._last_poll = now
        if expired:
            self._expired_seen = True
        return (
            expired
            or self._changed
            or self._fatal is not None
            or (self.auto_commit and now >= self._next_auto_commit)
        )

    async def poll(self) -> None:
        """Called at the start of every poll(): note processing liveness, reconcile the
        assignment (callbacks run here), and auto-commit when due."""
        expired = self._poll_expired() or self._expired_seen
        self._expired_seen = False
        self._last_poll = time.monotonic()
        if expired:
            self._wake.set()  # a heartbeat loop waiting to rejoin may go now
        if self._fatal is not None:
            raise self._fatal
        if self._closed or self._in_poll:
            return
        self._in_poll = True
        try:
            self._changed = False
            await self._reconcile()
            manual = self._task is None
            if self.auto_commit and time.monotonic() >= self._next_auto_commit:
                self._next_auto_commit = time.monotonic() + self.auto_commit_interval_s
                if ((self.owned and self.epoch > 0) or (manual and self.fetcher.partitions)) and (
                    self._auto_commit_task is None or self._auto_commit_task.done()
                ):
                    self._auto_commit_task = asyncio.ensure_future(self._auto_commit())
        finally:
            self._in_poll = False

    async def _reconcile(self) -> None:
        if self._lost:
            lost = set(self.owned)
            self.owned.clear()
            self._lost = False
            self.fetcher.assign([])
            log.info("group %s: lost %s", self.group_id, _names(lost))
            await self._callback(self.on_revoke, lost)
        target = self.target
        if target is None or self.epoch <= 0:
            return
        revoked = self.owned - target
        if revoked:
            log.info("group %s: revoking %s", self.group_id, _names(revoked))
            await self._callback(self.on_revoke, revoked)
            if self.auto_commit:
                try:
                    await self.commit(self._positions(revoked))
                except RilkeError as exc:
                    log.warning("group %s: commit on revocation failed: %s", self.group_id, exc)
            self.owned -= revoked
            self.fetcher.assign(sorted(self.owned))
            self._wake.set()  # acknowledge at once
        target = self.target
        if target is None or self.epoch <= 0:
            return
        added = set(target) - self.owned
        if added:
            log.info("group %s: assigned %s", self.group_id, _names(added))
            self.owned |= added
            self.fetcher.assign(sorted(self.owned))
            await self._callback(self.on_assign, added)
            self._wake.set()

    async def _callback(
        self, fn: RebalanceCallback | None, partitions: set[TopicPartition]
    ) -> None:
        if fn is None or not partitions:
            return
        try:
            if getattr(self.core, "callbacks_in_thread", False):
                # The blocking consumer's caller thread is waiting in poll(): run the callback
                # on a worker thread so that it may call the consumer (commit) without
                # deadlocking the event loop.
                await asyncio.get_running_loop().run_in_executor(None, fn, set(partitions))
            else:
                result = fn(set(partitions))
                if inspect.isawaitable(result):
                    await result
        except Exception:
            log.exception("group %s: rebalance callback %r failed", self.group_id, fn)

    # --- offsets -------------------------------------------------------------------------------

    def _positions(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        with self.fetcher.lock:
            for tp in tps:
                st = self.fetcher.partitions.get(tp)
                if st is not None and st.position is not None:
                    out[tp] = st.position
        return out

    async def _auto_commit(self) -> None:
        try:
            await self.commit(None)
        except RilkeError as exc:
            log.warning("group %s: auto-commit failed: %s", self.group_id, exc)

    async def commit(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata] | None = None
    ) -> None:
        """Commit ``offsets`` (the next offset to read per partition), or the positions of
        every owned partition. Raises the coordinator's error (UnknownMemberIdError and
        FencedMemberEpochError when this member was fenced: rejoin is automatic; the offsets
        are not committed).

        A consumer that assign()ed its partitions (no subscription) commits as a standalone
        client, which the coordinator allows only while the group has no members
        (NonEmptyGroupError otherwise), as Kafka does."""
        manual = self._task is None
        if offsets is None:
            offsets = self._positions(self.fetcher.partitions if manual else self.owned)
        if not offsets:
            return
        if manual:
            await self._commit_standalone(offsets)
            return
        if self.epoch <= 0:
            raise IllegalStateError(
                f"cannot commit: not a member of group {self.group_id!r} right now (rejoining)"
            )
        deadline = time.monotonic() + self.request_timeout_s
        attempt = 0
        while True:
            req = pb.OffsetCommitRequest(
                group_id=self.group_id, member_id=self.member_id, member_epoch=self.epoch
            )
            for tp, value in offsets.items():
                om = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(value)
                req.partitions.add(
                    topic=tp[0], partition=tp[1], offset=om.offset, metadata=om.metadata
                )
            resp = await self.coordinator.call(
                "OffsetCommit", req, max(0.001, deadline - time.monotonic())
            )
            err = error_from_proto(resp.error, f"commit of group {self.group_id!r}")
            if err is None:
                return
            if (
                isinstance(err, StaleMemberEpochError)
                and not self._closed  # heartbeats still run and will bring the new epoch
                and time.monotonic() < deadline
            ):
                # A heartbeat answer crossed the commit: retry with the newer epoch.
                attempt += 1
                await asyncio.sleep(backoff_s(attempt, 20, 200, self.cluster.rng))
                continue
            raise err

    async def _commit_standalone(
        self, offsets: Mapping[TopicPartition, int | OffsetAndMetadata]
    ) -> None:
        req = pb.OffsetCommitRequest(group_id=self.group_id, member_id="", member_epoch=-1)
        for tp, value in offsets.items():
            om = value if isinstance(value, OffsetAndMetadata) else OffsetAndMetadata(value)
            req.partitions.add(topic=tp[0], partition=tp[1], offset=om.offset, metadata=om.metadata)
        resp = await self.coordinator.call("OffsetCommit", req, self.request_timeout_s)
        err = error_from_proto(resp.error, f"commit of group {self.group_id!r}")
        if err is not None:
            raise err

    async def committed(
        self, partitions: Iterable[TopicPartition] | None = None
    ) -> dict[TopicPartition, OffsetAndMetadata | None]:
        """The group's committed offsets for ``partitions`` (default: owned ones, or the
        assigned ones of a consumer that uses assign())."""
        if partitions is None:
            partitions = self.fetcher.partitions if self._task is None else self.owned
        tps = sorted(set(partitions))
        return await fetch_committed(self.coordinator, self.group_id, tps, self.request_timeout_s)

    async def _initial_positions(
        self, tps: list[TopicPartition]
    ) -> dict[TopicPartition, int | None]:
        got = await self.committed(tps)
        return {tp: (om.offset if om is not None else None) for tp, om in got.items()}

    # --- leaving -------------------------------------------------------------------------------

    async def close(self) -> None:
        """Commit (with auto-commit), call on_revoke, and leave the group at once."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        if self._task is not None:
            # Let a heartbeat in flight finish rather than cancel it: the coordinator changes
            # this member's epoch only in answers to its own heartbeats, so once none is in
            # flight our epoch is the coordinator's and the final commit is not stale.
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self._hb_timeout_s())
            except (TimeoutError, asyncio.CancelledError, Exception):
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._task
        if self._auto_commit_task is not None and not self._auto_commit_task.done():
            try:
                await asyncio.wait_for(self._auto_commit_task, self.request_timeout_s)
            except (TimeoutError, RilkeError, asyncio.CancelledError):
                pass
        if self._task is None and self.auto_commit and self.fetcher.partitions:
            try:
                await self.commit(None)  # assign()ed partitions: a standalone commit
            except RilkeError as exc:
                log.warning("group %s: commit on close failed: %s", self.group_id, exc)
        if not self.member_id or self.epoch <= 0:
            return
        if self.owned:
            if self.auto_commit:
                try:
                    await self.commit(None)
                except RilkeError as exc:
                    log.warning("group %s: commit on close failed: %s", self.group_id, exc)
            await self._callback(self.on_revoke, set(self.owned))
        leave_epoch = -2 if self.instance_id else -1
        req = self._heartbeat_request(leave_epoch)
        try:
            await self.coordinator.call_once(
                "ConsumerGroupHeartbeat", req, min(self.request_timeout_s, 5.0)
            )
        except RilkeError as exc:
            log.warning(
                "group %s: leaving failed (%s); the session will expire", self.group_id, exc
            )
        self.owned.clear()
        self.epoch = leave_epoch


async def fetch_committed(
    coordinator: GroupCoordinatorClient,
    group_id: str,
    tps: list[TopicPartition],
    timeout_s: float,
) -> dict[TopicPartition, OffsetAndMetadata | None]:
    """OffsetFetch for ``tps`` (empty: every partition the group committed)."""
    req = pb.OffsetFetchRequest(group_id=group_id)
    for tp in tps:
        req.partitions.add(topic=tp.topic, partition=tp.partition)
    resp = await coordinator.call("OffsetFetch", req, timeout_s)
    err = error_from_proto(resp.error, f"fetching committed offsets of group {group_id!r}")
    if err is not None:
        raise err
    out: dict[TopicPartition, OffsetAndMetadata | None] = dict.fromkeys(tps)
    for p in resp.partitions:
        tp = TopicPartition(p.topic, p.partition)
        perr = error_from_proto(p.error)
        if perr is not None:
            raise perr
        out[tp] = OffsetAndMetadata(p.offset, p.metadata) if p.offset >= 0 else None
    return out


def _names(tps: Iterable[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(tps)) or "nothing"


def _factory(core: Any) -> GroupMembership:
    return GroupMembership(core)


def _install() -> None:
    import rilke.client.consumer as consumer_module

    consumer_module.GROUP_FACTORY = _factory


_install()

__all__ = [
    "GroupCoordinatorClient",
    "GroupMembership",
    "KafkaTimeoutError",
    "fetch_committed",
]
