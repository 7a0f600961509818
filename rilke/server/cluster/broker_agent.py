"""BrokerAgent: this node as a broker of the cluster, registered and heartbeating.

It registers with the controller leader (its advertised address and rack, and its advertised
Kafka listener if it has one; the answer is the broker epoch), then heartbeats every ``HEARTBEAT_INTERVAL_S`` with that epoch. A broker
starts fenced; its first heartbeat unfences it. When the controller answers that the epoch
is stale or the broker unknown (another incarnation registered, or the leader's state was
rebuilt), it registers again. A heartbeat that fails otherwise is retried at the next
interval: the controller fences a broker whose session (9 s) passed without one.

Each heartbeat carries the leaderships this node's Raft groups hold that the applied
metadata does not show yet (``leaderships()``: leader, term, in-sync replicas), so the
controller records what Raft elected and every node's Metadata converges on it. When one of
this node's groups becomes leader, ``report_soon()`` sends the next heartbeat at once rather
than at the next interval (coalesced: changes while a heartbeat is under way make one more,
at most one per ``REPORT_GAP_S``), so clients learn a failover's new leader from any node
within a round trip of the election.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence

from rilke.errors import BrokerNotRegisteredError, RilkeError, StaleBrokerEpochError
from rilke.proto import rilke_pb2 as pb
from rilke.server.cluster.forward import ControllerClient

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 1.0
"""Kafka's broker.heartbeat.interval.ms is 2 s with a 9 s session; 1 s fences a dead broker
no later and lets a restarted one unfence within a second."""

REPORT_GAP_S = 0.05
"""The least time between two heartbeats that ``report_soon`` brought forward: a burst of
elections (a node's restart moves many leaderships at once) costs a few heartbeats, not one
each."""


class BrokerAgent:
    def __init__(
        self,
        client: ControllerClient,
        cluster_id: str,
        node_id: int,
        advertised: tuple[str, int],
        *,
        rack: str = "",
        leaderships: Callable[[], Sequence[pb.PartitionLeadership]] = tuple,
    ) -> None:
        self._client = client
        self._leaderships = leaderships
        self._request = pb.RegisterBrokerRequest(
            cluster_id=cluster_id,
            broker_id=node_id,
            host=advertised[0],
            port=advertised[1],
            rack=rack,
        )
        self.node_id = node_id
        self.epoch = -1
        self.fenced = True
        self._task: asyncio.Task[None] | None = None
        self._soon = asyncio.Event()

    def report_soon(self) -> None:
        """Send the next heartbeat (with its leadership report) now, not at the interval."""
        self._soon.set()

    def set_kafka_listener(self, host: str, port: int) -> None:
        """The advertised Kafka listener to register (call before :meth:`start`)."""
        self._request.kafka_host = host
        self._request.kafka_port = port

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                if self.epoch < 0:
                    response = await self._client.call("RegisterBroker", self._request)
                    self.epoch = response.broker_epoch
                    log.info("node %d: registered as broker, epoch %d", self.node_id, self.epoch)
                response = await self._client.call(
                    "BrokerHeartbeat",
                    pb.BrokerHeartbeatRequest(
                        broker_id=self.node_id,
                        broker_epoch=self.epoch,
                        leaderships=self._leaderships(),
                    ),
                    timeout_s=5.0,
                )
                if self.fenced != response.fenced:
                    log.info(
                        "node %d: broker %s", self.node_id, "fenced" if response.fenced else "alive"
                    )
                self.fenced = response.fenced
            except (StaleBrokerEpochError, BrokerNotRegisteredError) as e:
                log.info("node %d: registering again: %s", self.node_id, e)
                self.epoch = -1
                continue
            except RilkeError as e:
                log.warning("node %d: heartbeat to the controller failed: %s", self.node_id, e)
            await self._wait_next()

    async def _wait_next(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._soon.wait(), HEARTBEAT_INTERVAL_S)
            await asyncio.sleep(REPORT_GAP_S)
        self._soon.clear()
