"""The Kafka group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
OffsetCommit, OffsetFetch, on the same coordinators (and ``__consumer_offsets``) as Rilke's
own Group service.

The classic protocol's state lives in each coordinator's ``classic`` part
(:mod:`rilke.server.coordinator.classic`); this module holds what is asynchronous: the
JoinGroup and SyncGroup calls waiting for their round (futures, each with a deadline), and a
timer that ticks the classic groups (rebalance deadlines, session expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

from rilke.errors import CoordinatorNotAvailableError, RebalanceInProgressError, RilkeError
from rilke.replication.controller import MetadataView
from rilke.server.coordinator import (
    GroupCoordinator,
    OffsetCommitPartition,
    OffsetCommitRequest,
    Reply,
    TopicPartition,
)
from rilke.server.coordinator.classic import (
    JoinRequest,
    JoinResponse,
    SyncResponse,
)
from rilke.server.group_placement import CoordinatorLocator
from rilke.server.group_service import GroupManager
from rilke.server.kafka import errors as ec
from rilke.server.kafka.cluster import kafka_brokers
from rilke.server.kafka.codec import RequestHeader
from rilke.server.kafka.types import Message

log = logging.getLogger(__name__)

T = TypeVar("T")
# How often classic groups are ticked (rebalance deadlines and session expiry are checked).
CLASSIC_TICK_S = 0.1
# A waiting JoinGroup/SyncGroup is answered REBALANCE_IN_PROGRESS if its round has not ended
# this long after the member's rebalance timeout (the round's own deadline ends it before).
WAIT_SLACK_S = 5.0
KEY_TYPE_GROUP = 0

_Outcome = JoinResponse | SyncResponse | RilkeError


def _tick(c: GroupCoordinator, now_ms: int) -> set[str]:
    """Tick a coordinator's classic groups; the ids of those that still exist."""
    c.classic.tick(now_ms)
    return set(c.classic.groups)


def _code(exc: BaseException) -> int:
    code = ec.kafka_code(exc)
    if code == ec.UNKNOWN_SERVER_ERROR:
        log.error("unexpected error in a Kafka group request", exc_info=exc)
    return code


class GroupApis:
    """``view``: on a node of a cluster, its metadata (FindCoordinator names the node that
    :class:`CoordinatorLocator` says, by its Kafka listener); None on a single node."""

    def __init__(
        self,
        manager: GroupManager,
        node_id: int,
        advertised: Callable[[], tuple[str, int]],
        view: Callable[[], MetadataView] | None = None,
    ) -> None:
        self._manager = manager
        self._view = view
        # Only the node id of its answer is used: the address is the node's Kafka listener.
        self._locator = CoordinatorLocator(manager, node_id, ("", 0), view)
        self._node_id = node_id
        self._advertised = advertised
        self._joins: dict[tuple[str, str], asyncio.Future[_Outcome]] = {}
        self._syncs: dict[tuple[str, str], asyncio.Future[_Outcome]] = {}
        self._classic_groups: set[str] = set()  # ids seen, so the timer knows whom to tick
        self._timer: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._timer = asyncio.ensure_future(self._run_timer())

    async def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        for future in [*self._joins.values(), *self._syncs.values()]:
            if not future.done():
                future.set_result(CoordinatorNotAvailableError("the broker is shutting down"))

    # --- the classic state, driven -------------------------------------------------------

    async def _call(self, group_id: str, fn: Callable[[GroupCoordinator, int], T]) -> T:
        """Run ``fn`` on the group's coordinator and deliver the classic answers it made."""

        def step(c: GroupCoordinator, now: int) -> Reply[T]:
            reply: Reply[T] = Reply()
            try:
                reply.response = fn(c, now)
            except RilkeError as e:
                reply.error = e
            self._deliver(c)
            return reply

        reply = await self._manager.call(group_id, step)
        if reply.error is not None:
            raise reply.error
        return reply.response  # type: ignore[return-value]

    def _deliver(self, c: GroupCoordinator) -> None:
        for group_id, member_id, outcome in c.classic.completed:
            waiters = self._syncs if not isinstance(outcome, JoinResponse) else self._joins
            if isinstance(outcome, RilkeError):
                # A new round: waiting SyncGroups learn of it (a JoinGroup is never failed so).
                waiters = self._syncs
            future = waiters.pop((group_id, member_id), None)
            if future is not None and not future.done():
                future.set_result(outcome)
        c.classic.completed.clear()

    async def _run_timer(self) -> None:
        while True:
            await asyncio.sleep(CLASSIC_TICK_S)
            by_partition: dict[int, list[str]] = {}
            for gid in self._classic_groups:
                by_partition.setdefault(self._manager.partition_for(gid), []).append(gid)
            for gids in by_partition.values():
                try:
                    alive = await self._call(gids[0], _tick)
                except RilkeError:
                    continue
                except Exception:
                    log.exception("ticking classic groups failed")
                    continue
                self._classic_groups.difference_update(set(gids) - alive)

    async def _wait(
        self,
        waiters: dict[tuple[str, str], asyncio.Future[_Outcome]],
        key: tuple[str, str],
        timeout_ms: int,
    ) -> _Outcome:
        future = waiters[key]
        try:
            return await asyncio.wait_for(future, timeout_ms / 1000 + WAIT_SLACK_S)
        except TimeoutError:
            return RebalanceInProgressError("the round did not complete in time: rejoin")
        finally:
            if waiters.get(key) is future:
                del waiters[key]

    # --- FindCoordinator -----------------------------------------------------------------

    async def find_coordinator(self, header: RequestHeader, body: Message, peer: str) -> Message:
        host, port = self._advertised()
        out: Message = {
            "throttle_time_ms": 0,
            "error_code": ec.NONE,
            "error_message": None,
            "node_id": self._node_id,
            "host": host,
            "port": port,
        }
        if body.get("key_type", KEY_TYPE_GROUP) != KEY_TYPE_GROUP:
            out.update(
                error_code=ec.COORDINATOR_NOT_AVAILABLE,
                error_message="transactions are not supported",
                node_id=-1,
                host="",
                port=-1,
            )
            return out
        try:
            # The first group request creates __consumer_offsets, as in Kafka.
            node = self._locator.coordinator_for(body["key"]).node_id
        except Exception as e:
            out.update(error_code=_code(e), error_message=str(e), node_id=-1, host="", port=-1)
            return out
        if node == self._node_id or self._view is None:
            return out
        broker = kafka_brokers(self._view()).get(node)
        if broker is None or broker.kafka_host is None:
            out.update(
                error_code=ec.COORDINATOR_NOT_AVAILABLE,
                error_message=f"node {node} coordinates group {body['key']!r} but Kafka "
                "clients cannot reach it (no Kafka listener known)",
                node_id=-1,
                host="",
                port=-1,
            )
            return out
        out.update(node_id=node, host=broker.kafka_host, port=broker.kafka_port)
        return out

    # --- JoinGroup, SyncGroup, Heartbeat, LeaveGroup ---------------------------------------

    async def join_group(self, header: RequestHeader, body: Message, peer: str) -> Message:
        group_id = body["group_id"]
        req = JoinRequest(
            group_id=group_id,
            member_id=body["member_id"],
            session_timeout_ms=body["session_timeout_ms"],
            rebalance_timeout_ms=body["rebalance_timeout_ms"],
            protocol_type=body["protocol_type"],
            protocols=tuple((p["name"], p["metadata"]) for p in body["protocols"]),
            client_id=header.client_id or "",
            client_host=peer.rpartition(":")[0] or peer,  # the host, as Kafka shows it
        )
        failed: Message = {
            "throttle_time_ms": 0,
            "generation_id": -1,
            "protocol_name": "",
            "leader": "",
            "member_id": body["member_id"],
            "members": [],
        }

        def join(c: GroupCoordinator, now: int) -> tuple[str, JoinResponse | None]:
            member_id, response = c.classic.join(req, now)
            if response is None:
                self._joins[(group_id, member_id)] = asyncio.get_running_loop().create_future()
            return member_id, response

        try:
            member_id, response = await self._call(group_id, join)
            self._classic_groups.add(group_id)
            if response is None:
                outcome = await self._wait(
                    self._joins, (group_id, member_id), req.rebalance_timeout_ms
                )
                if isinstance(outcome, RilkeError):
                    raise outcome
                assert isinstance(outcome, JoinResponse)
                response = outcome
        except RilkeError as e:
            return {**failed, "error_code": _code(e)}
        return {
            "throttle_time_ms": 0,
            "error_code": ec.NONE,
            "generation_id": response.generation_id,
            "protocol_name": response.protocol_name,
            "leader": response.leader,
            "member_id": response.member_id,
            "members": [{"member_id": m, "metadata": md} for m, md in response.members],
        }

    async def sync_group(self, header: RequestHeader, body: Message, peer: str) -> Message:
        group_id, member_id = body["group_id"], body["member_id"]
        assignments = {a["member_id"]: a["assignment"] for a in body["assignments"]}
        timeout_ms = 0

        def sync(c: GroupCoordinator, now: int) -> SyncResponse | None:
            nonlocal timeout_ms
            response = c.classic.sync(group_id, member_id, body["generation_id"], assignments, now)
            if response is None:
                g = c.classic.describe(group_id)
                assert g is not None
                timeout_ms = g.members[member_id].rebalance_timeout_ms
                self._syncs[(group_id, member_id)] = asyncio.get_running_loop().create_future()
            return response

        try:
            response = await self._call(group_id, sync)
            if response is None:
                outcome = await self._wait(self._syncs, (group_id, member_id), timeout_ms)
                if isinstance(outcome, RilkeError):
                    raise outcome
                assert isinstance(outcome, SyncResponse)
                response = outcome
        except RilkeError as e:
            return {"throttle_time_ms": 0, "error_code": _code(e), "assignment": b""}
        return {"throttle_time_ms": 0, "error_code": ec.NONE, "assignment": response.assignment}

    async def heartbeat(self, header: RequestHeader, body: Message, peer: str) -> Message:
        try:
            await self._call(
                body["group_id"],
                lambda c, now: c.classic.heartbeat(
                    body["group_id"], body["member_id"], body["generation_id"], now
                ),
            )
        except RilkeError as e:
            return {"throttle_time_ms": 0, "error_code": _code(e)}
        return {"throttle_time_ms": 0, "error_code": ec.NONE}

    async def leave_group(self, header: RequestHeader, body: Message, peer: str) -> Message:
        try:
            await self._call(
                body["group_id"],
                lambda c, now: c.classic.leave(body["group_id"], body["member_id"], now),
            )
        except RilkeError as e:
            return {"throttle_time_ms": 0, "error_code": _code(e)}
        return {"throttle_time_ms": 0, "error_code": ec.NONE}

    # --- offsets -------------------------------------------------------------------------

    async def offset_commit(self, header: RequestHeader, body: Message, peer: str) -> Message:
        """A classic member's commit is checked against its group (member, generation,
        state), then stored as the group's commit in the same coordinator; a commit of no
        member (generation -1, as assign()-mode consumers send) only while it has none."""
        group_id = body["group_id"]
        partitions = tuple(
            OffsetCommitPartition(
                t["name"],
                p["partition_index"],
                p["committed_offset"],
                -1,
                p["committed_metadata"] or "",
            )
            for t in body["topics"]
            for p in t["partitions"]
        )
        high_watermark = self._manager.broker.high_watermark
        member_id, generation = body["member_id"], body["generation_id_or_member_epoch"]

        def commit(c: GroupCoordinator, now: int) -> Reply[dict[tuple[str, int], int]]:
            out: Reply[dict[tuple[str, int], int]] = Reply()
            try:
                c.classic.check_commit(group_id, member_id, generation)
            except RilkeError as e:
                out.error = e
                return out
            reply = c.commit_offsets(
                OffsetCommitRequest(group_id, "", -1, partitions), now, high_watermark
            )
            out.output, out.error = reply.output, reply.error
            if reply.response is not None:
                codes = {(e.topic, e.partition): _code(e.error) for e in reply.response.errors}
                # All or nothing: with any refusal, the other partitions were not committed.
                fallback = ec.INVALID_COMMIT_OFFSET_SIZE if codes else ec.NONE
                out.response = {
                    (p.topic, p.partition): codes.get((p.topic, p.partition), fallback)
                    for p in partitions
                }
            return out

        codes: dict[tuple[str, int], int] = {}
        group_code = ec.NONE
        try:
            reply = await self._manager.call(group_id, commit)
            if reply.error is not None:
                raise reply.error
            codes = reply.response or {}
        except RilkeError as e:
            group_code = _code(e)
        topics: dict[str, list[Message]] = {}
        for p in partitions:
            code = codes.get((p.topic, p.partition), group_code)
            topics.setdefault(p.topic, []).append(
                {"partition_index": p.partition, "error_code": code}
            )
        return {
            "throttle_time_ms": 0,
            "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()],
        }

    async def offset_fetch(self, header: RequestHeader, body: Message, peer: str) -> Message:
        group_id = body["group_id"]
        wanted = body["topics"]
        tps = (
            None
            if wanted is None
            else [TopicPartition(t["name"], p) for t in wanted for p in t["partition_indexes"]]
        )
        group_code = ec.NONE
        found: dict[TopicPartition, object] = {}
        try:
            reply = await self._manager.call(
                group_id, lambda c, now: c.fetch_offsets(group_id, tps)
            )
            if reply.error is not None:
                raise reply.error
            assert reply.response is not None
            found = dict(reply.response)
        except RilkeError as e:
            group_code = _code(e)
            found = dict.fromkeys(tps or [])
        topics: dict[str, list[Message]] = {}
        for tp, om in found.items():
            topics.setdefault(tp.topic, []).append(
                {
                    "partition_index": tp.partition,
                    "committed_offset": getattr(om, "offset", -1),
                    "metadata": getattr(om, "metadata", ""),
                    "error_code": group_code,
                }
            )
        return {
            "throttle_time_ms": 0,
            "topics": [{"name": t, "partitions": ps} for t, ps in topics.items()],
            "error_code": group_code,
        }
