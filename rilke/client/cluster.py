"""The client's view of the cluster: bootstrap, cached metadata, and calls to the right broker.

:class:`Cluster` keeps the last Metadata answer (brokers, topics, partitions, leaders) and
refreshes it when a caller reports an invalid-metadata error (NOT_LEADER, unknown topic, ...)
and when it is older than ``metadata_max_age_ms``. Calls retry retriable errors with
exponential backoff and jitter until their deadline, except that they give up at once with
:class:`NoBrokersAvailableError` when no broker is reachable (see :meth:`Cluster.unreachable`):
a dead or misnamed broker fails a call in about a second instead of at its deadline.

Runs on one asyncio event loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from rilke.client.backoff import backoff_s
from rilke.client.config import parse_bootstrap_servers
from rilke.client.structs import BrokerMetadata, PartitionMetadata, TopicPartition
from rilke.client.transport import Transport, error_from_proto
from rilke.errors import (
    BrokerNotAvailableError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NoBrokersAvailableError,
    RilkeError,
    UnknownTopicOrPartitionError,
)
from rilke.proto import rilke_pb2 as pb

log = logging.getLogger(__name__)

T = TypeVar("T")

_UNREACHABLE_ERRORS = (BrokerNotAvailableError, NoBrokersAvailableError)

RECONNECT_GRACE_S = 5.0
"""How long every broker must have refused calls (circuit open) before a call gives up on a
cluster that answered before: long enough to ride out a broker restart, much shorter than a
request timeout. Before any broker ever answered there is no grace: the addresses may well
be wrong, and the user should hear so at once."""


class Cluster:
    """Bootstrap servers, the metadata cache, and the transport to every broker."""

    def __init__(
        self,
        bootstrap_servers: str | Iterable[str],
        *,
        client_id: str = "rilke-python",
        request_timeout_ms: int = 30_000,
        metadata_max_age_ms: int = 300_000,
        retry_backoff_ms: int = 100,
        retry_backoff_max_ms: int = 1_000,
        rng: random.Random | None = None,
    ) -> None:
        self.bootstrap = parse_bootstrap_servers(bootstrap_servers)
        self.transport = Transport(client_id=client_id)
        self.request_timeout_s = request_timeout_ms / 1000.0
        self.metadata_max_age_s = metadata_max_age_ms / 1000.0
        self.retry_backoff_ms = retry_backoff_ms
        self.retry_backoff_max_ms = retry_backoff_max_ms
        self.rng = rng or random.Random()
        self.brokers: dict[int, BrokerMetadata] = {}
        self.controller_id = -1
        self.cluster_id = ""
        # topic -> partitions ordered by partition id; absent topic: not known (yet).
        self.topics: dict[str, list[PartitionMetadata]] = {}
        self.topic_errors: dict[str, RilkeError] = {}
        self._updated_at = 0.0
        self._need_update = True
        self._wanted_topics: set[str] = set()
        self._refresh_task: asyncio.Task[None] | None = None

    # --- addresses -----------------------------------------------------------------------

    def address_of(self, node_id: int) -> str:
        broker = self.brokers.get(node_id)
        if broker is None:
            raise LeaderNotAvailableError(f"broker {node_id} is not in the cluster metadata")
        return broker.address

    def candidate_addresses(self) -> list[str]:
        """Known brokers first (whose breaker is closed first), then the bootstrap list."""
        known = [b.address for b in self.brokers.values()]
        seen: set[str] = set()
        out: list[str] = []
        for addr in known + self.bootstrap:
            if addr not in seen:
                seen.add(addr)
                out.append(addr)
        out.sort(key=lambda a: self.transport.breaker(a).is_open)
        return out

    def unreachable(self) -> bool:
        """True when no broker is worth waiting for: every candidate's circuit breaker is open
        and has been for :data:`RECONNECT_GRACE_S` (for any time at all if no broker has ever
        answered this client)."""
        grace_s = RECONNECT_GRACE_S if self.transport.answered else 0.0
        now = time.monotonic()
        for address in self.candidate_addresses():
            down_s = self.transport.breaker(address).down_for(now)
            if down_s is None or down_s < grace_s:
                return False
        return True

    def unreachable_error(self) -> NoBrokersAvailableError:
        """The error for :meth:`unreachable`: which brokers, and what their last failure was."""
        parts = []
        for address in self.candidate_addresses():
            b = self.transport.breaker(address)
            reason = f": {b.last_failure}" if b.last_failure else ""
            parts.append(f"{address} ({b.failures} failed calls in a row{reason})")
        return NoBrokersAvailableError(
            f"no broker is reachable: {'; '.join(parts)}. Check that a broker is running "
            f"there (rilke server) and that bootstrap_servers names it"
        )

    # --- metadata ------------------------------------------------------------------------

    def request_update(self) -> None:
        """Mark the metadata stale: the next :meth:`maybe_refresh` fetches it again."""
        self._need_update = True

    def is_stale(self) -> bool:
        return self._need_update or time.monotonic() - self._updated_at > self.metadata_max_age_s

    def leader_for(self, tp: TopicPartition) -> int:
        """The leader's node id from the cache, -1 if unknown or leaderless."""
        parts = self.topics.get(tp.topic)
        if parts is None or not 0 <= tp.partition < len(parts):
            return -1
        return parts[tp.partition].leader

    def partitions_for(self, topic: str) -> int | None:
        """The number of partitions of ``topic`` in the cache, or None if unknown."""
        parts = self.topics.get(topic)
        return None if parts is None else len(parts)

    async def refresh(
        self, topics: Iterable[str] | None = None, timeout_s: float | None = None
    ) -> None:
        """Fetch metadata (for ``topics`` plus those already wanted; None: all topics).

        Tries each candidate broker once, then backs off and tries again until the deadline.
        Raises :class:`NoBrokersAvailableError` when none answers in time, or earlier when
        none is reachable (:meth:`unreachable`).
        """
        if topics is not None:
            self._wanted_topics.update(topics)
        request = pb.MetadataRequest(
            topics=sorted(self._wanted_topics) if topics is not None else []
        )
        timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
        started = time.monotonic()
        deadline = started + timeout_s
        attempt = 0
        last_error: RilkeError | None = None
        while True:
            if self.unreachable():
                raise self.unreachable_error()
            for address in self.candidate_addresses():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    response = await self.transport.call(
                        address,
                        "Broker",
                        "Metadata",
                        request,
                        min(remaining, self.request_timeout_s),
                    )
                except RilkeError as exc:
                    last_error = exc
                    log.debug("metadata from %s failed: %s", address, exc)
                    continue
                self._apply(response, full=topics is None)
                return
            attempt += 1
            delay = backoff_s(attempt, self.retry_backoff_ms, self.retry_backoff_max_ms, self.rng)
            if self.unreachable():
                raise self.unreachable_error()
            if time.monotonic() + delay >= deadline:
                raise NoBrokersAvailableError(
                    f"no broker in {','.join(self.candidate_addresses())} answered within "
                    f"{time.monotonic() - started:.1f}s (last error: {last_error}); check that "
                    f"a broker is running there"
                )
            await asyncio.sleep(delay)

    def _apply(self, response: Any, *, full: bool) -> None:
        self.brokers = {
            b.node_id: BrokerMetadata(b.node_id, b.host, b.port, b.rack) for b in response.brokers
        }
        self.controller_id = response.controller_id
        self.cluster_id = response.cluster_id
        if full:
            self.topics = {}
            self.topic_errors = {}
        for t in response.topics:
            err = error_from_proto(t.error, f"topic {t.name!r}")
            if err is not None:
                self.topics.pop(t.name, None)
                self.topic_errors[t.name] = err
                continue
            self.topic_errors.pop(t.name, None)
            parts = sorted(t.partitions, key=lambda p: p.partition)
            self.topics[t.name] = [
                PartitionMetadata(
                    t.name,
                    p.partition,
                    p.leader_id if not (p.error and p.error.code) else -1,
                    p.leader_epoch,
                    tuple(p.replicas),
                    tuple(p.isr),
                    p.error.code if p.error else 0,
                )
                for p in parts
            ]
        self._updated_at = time.monotonic()
        self._need_update = False

    async def maybe_refresh(self, timeout_s: float | None = None) -> None:
        """Refresh if stale; concurrent callers share one refresh."""
        if not self.is_stale():
            return
        task = self._refresh_task
        if task is None or task.done():
            task = asyncio.ensure_future(self.refresh(self._wanted_topics or None, timeout_s))
            self._refresh_task = task
        await asyncio.shield(task)

    async def wait_for_topic(self, topic: str, timeout_s: float) -> int:
        """The number of partitions of ``topic``, fetching metadata as needed.

        Raises :class:`UnknownTopicOrPartitionError` (or the broker's error for the topic)
        when the broker does not know the topic, :class:`KafkaTimeoutError` on the deadline.
        """
        deadline = time.monotonic() + timeout_s
        self._wanted_topics.add(topic)
        n = self.partitions_for(topic)
        if n is not None and not self.is_stale():
            return n
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise KafkaTimeoutError(
                    f"metadata for topic {topic!r} not available in {timeout_s:.1f}s"
                )
            await self.refresh([topic], remaining)
            n = self.partitions_for(topic)
            if n is not None and n > 0:
                return n
            err = self.topic_errors.get(topic)
            if err is not None and not err.retriable:
                if isinstance(err, UnknownTopicOrPartitionError):
                    raise UnknownTopicOrPartitionError(
                        f"topic {topic!r} does not exist: create it first "
                        f"(rilke topic create {topic}) or enable auto-creation on the broker"
                    )
                raise err
            attempt += 1
            await asyncio.sleep(
                min(
                    max(0.0, deadline - time.monotonic()),
                    backoff_s(attempt, self.retry_backoff_ms, self.retry_backoff_max_ms, self.rng),
                )
            )

    # --- calls ---------------------------------------------------------------------------

    async def call_any(
        self, service: str, method: str, request: Any, timeout_s: float | None = None
    ) -> Any:
        """Send to any reachable broker (controller first), retrying retriable failures."""

        async def once(remaining: float) -> Any:
            addresses = self.candidate_addresses()
            if self.controller_id in self.brokers:
                ctrl = self.brokers[self.controller_id].address
                addresses.remove(ctrl)
                addresses.insert(0, ctrl)
            last: RilkeError | None = None
            for address in addresses:
                try:
                    return await self.transport.call(
                        address, service, method, request, min(remaining, self.request_timeout_s)
                    )
                except RilkeError as exc:
                    if not exc.retriable:
                        raise
                    last = exc
            assert last is not None
            raise last

        return await self.retrying(once, timeout_s)

    async def call_node(
        self, node_id: int, service: str, method: str, request: Any, timeout_s: float
    ) -> Any:
        """One call to broker ``node_id`` (no retry)."""
        return await self.transport.call(
            self.address_of(node_id), service, method, request, timeout_s
        )

    async def retrying(
        self, op: Callable[[float], Awaitable[T]], timeout_s: float | None = None
    ) -> T:
        """Run ``op(remaining_s)`` until it succeeds, retrying retriable errors with backoff.

        Invalid-metadata errors trigger a metadata refresh before the next try. The last error
        is raised when the deadline (``timeout_s``, default request_timeout_ms) passes, and
        :class:`NoBrokersAvailableError` as soon as no broker is reachable (:meth:`unreachable`).
        """
        timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        attempt = 0
        while True:
            remaining = deadline - time.monotonic()
            try:
                return await op(max(0.001, remaining))
            except RilkeError as exc:
                if not exc.retriable:
                    raise
                if isinstance(exc, _UNREACHABLE_ERRORS) and self.unreachable():
                    raise self.unreachable_error() from None
                if exc.invalid_metadata:
                    self.request_update()
                attempt += 1
                delay = backoff_s(
                    attempt, self.retry_backoff_ms, self.retry_backoff_max_ms, self.rng
                )
                if time.monotonic() + delay >= deadline:
                    raise
                log.debug("retrying after %s (attempt %d, %.3fs)", exc, attempt, delay)
                await asyncio.sleep(delay)
                if self.is_stale():
                    try:
                        await self.refresh(
                            self._wanted_topics or None, max(0.001, deadline - time.monotonic())
                        )
                    except RilkeError:
                        pass

    async def close(self) -> None:
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_task.cancel()
        await self.transport.close()
