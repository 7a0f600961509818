"""BrokerAgent: heartbeats at the interval, and at once (coalesced) on report_soon()."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from rilke.proto import rilke_pb2 as pb
from rilke.server.cluster import broker_agent
from rilke.server.cluster.broker_agent import BrokerAgent


class FakeControllerClient:
    """Answers RegisterBroker and BrokerHeartbeat; counts heartbeats."""

    def __init__(self) -> None:
        self.heartbeats: list[pb.BrokerHeartbeatRequest] = []
        self.changed = asyncio.Event()

    async def call(self, method: str, request: Any, *, timeout_s: float = 5.0) -> Any:
        if method == "RegisterBroker":
            return pb.RegisterBrokerResponse(broker_epoch=7)
        assert method == "BrokerHeartbeat"
        self.heartbeats.append(request)
        self.changed.set()
        return pb.BrokerHeartbeatResponse(fenced=False)

    async def wait_heartbeats(self, n: int, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.heartbeats) < n:
                self.changed.clear()
                await self.changed.wait()


def test_report_soon_sends_a_heartbeat_before_the_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An interval far beyond the test's deadline: only report_soon can bring a heartbeat.
    monkeypatch.setattr(broker_agent, "HEARTBEAT_INTERVAL_S", 3600.0)
    asyncio.run(_report_soon())


async def _report_soon() -> None:
    report = [pb.PartitionLeadership(topic="t", partition=0, leader_id=1, leader_epoch=3)]
    client = FakeControllerClient()
    agent = BrokerAgent(
        client,  # type: ignore[arg-type]
        "c",
        1,
        ("127.0.0.1", 1),
        leaderships=lambda: report,
    )
    agent.start()
    try:
        await client.wait_heartbeats(1)
        assert not agent.fenced and agent.epoch == 7
        agent.report_soon()
        await client.wait_heartbeats(2)
        assert list(client.heartbeats[1].leaderships) == report
        # Several changes at once: coalesced into one more heartbeat, then quiet.
        for _ in range(5):
            agent.report_soon()
        await client.wait_heartbeats(3)
        with pytest.raises(TimeoutError):
            await client.wait_heartbeats(4, timeout_s=0.5)
        assert len(client.heartbeats) == 3
    finally:
        await agent.stop()
