"""The transport over real gRPC streams on 127.0.0.1: handshake refusals, splitting of
oversized payloads, bounded send queues."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc
import pytest

from rilke.replication.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Snapshot,
)
from rilke.replication.transport import Transport, TransportConfig
from rilke.replication.wire import WireItem

from .cluster import wait_until


@dataclass
class _End:
    transport: Transport
    server: grpc.aio.Server
    got: list[tuple[int, list[WireItem]]] = field(default_factory=list)


async def _bind() -> tuple[grpc.aio.Server, str]:
    server = grpc.aio.server()
    port = server.add_insecure_port("127.0.0.1:0")
    return server, f"127.0.0.1:{port}"


async def _end(server: grpc.aio.Server, config: TransportConfig, peers: dict[int, str]) -> _End:
    got: list[tuple[int, list[WireItem]]] = []
    transport = Transport(config, peers, lambda peer, items: got.append((peer, items)))
    transport.add_to_server(server)
    await server.start()
    await transport.start()
    return _End(transport, server, got)


async def _pair(**overrides: int) -> tuple[_End, _End]:
    s1, a1 = await _bind()
    s2, a2 = await _bind()
    one = await _end(s1, TransportConfig("c", 1, a1, **overrides), {2: a2})  # type: ignore[arg-type]
    two = await _end(s2, TransportConfig("c", 2, a2, **overrides), {1: a1})  # type: ignore[arg-type]
    await wait_until(lambda: one.transport.is_connected(2) and two.transport.is_connected(1))
    return one, two


async def _close(*ends: _End) -> None:
    for end in ends:
        await end.transport.close()
        await end.server.stop(None)


def _append(size: int) -> Message:
    return Message(
        MessageType.APPEND, 2, 1, 1, entries=[Entry(1, 1, b"z" * size, EntryKind.NORMAL)]
    )


def test_messages_of_many_groups_travel_as_one_payload() -> None:
    async def scenario() -> None:
        one, two = await _pair()
        try:
            beats = [
                WireItem(f"t-{i}", Message(MessageType.HEARTBEAT, 2, 1, 1)) for i in range(500)
            ]
            assert one.transport.send(2, beats)
            await wait_until(lambda: two.got, what="the payload")
            assert two.got == [(1, beats)]
        finally:
            await _close(one, two)

    asyncio.run(scenario())


def test_oversized_payload_is_split_and_joined() -> None:
    async def scenario() -> None:
        one, two = await _pair(max_chunk_bytes=1024)
        try:
            item = WireItem("t-0", _append(10_000))
            frames = one.transport.stats(2).frames_sent
            assert one.transport.send(2, [item])
            await wait_until(lambda: two.got, what="the joined payload")
            assert two.got == [(1, [item])]
            assert one.transport.stats(2).frames_sent - frames >= 10
        finally:
            await _close(one, two)

    asyncio.run(scenario())


def test_full_send_queue_refuses_instead_of_growing() -> None:
    async def scenario() -> None:
        one, two = await _pair(max_queue_bytes=50_000)
        try:
            # All sent within one turn of the loop: the writer cannot drain meanwhile.
            results = [one.transport.send(2, [WireItem("t-0", _append(10_000))]) for _ in range(20)]
            assert results[0] and not all(results)
            accepted = sum(results)
            assert accepted <= 6
            assert one.transport.stats(2).payloads_dropped == 20 - accepted
            await wait_until(lambda: len(two.got) == accepted, what="the queued payloads")
            # Drained: sending works again.
            assert one.transport.send(2, [WireItem("t-0", _append(10))])
        finally:
            await _close(one, two)

    asyncio.run(scenario())


def test_node_of_another_cluster_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        s1, a1 = await _bind()
        s2, a2 = await _bind()
        one = await _end(s1, TransportConfig("blue", 1, a1), {2: a2})
        two = await _end(s2, TransportConfig("green", 2, a2), {1: a1})
        try:
            await wait_until(lambda: two.transport.stats(1).refusals >= 1, what="a refusal")
            await wait_until(lambda: one.transport.stats(2).refusals >= 1, what="the refused side")
            assert not one.transport.is_connected(2) and not two.transport.is_connected(1)
        finally:
            await _close(one, two)

    with caplog.at_level(logging.ERROR, logger="rilke.replication.transport"):
        asyncio.run(scenario())
    assert any("another cluster" in r.getMessage() for r in caplog.records)


def test_node_id_already_taken_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        one, two = await _pair()
        s3, a3 = await _bind()
        # A second process claiming node id 1 dials node 2 while the first is alive.
        impostor = await _end(s3, TransportConfig("c", 1, a3), {2: two.server and _addr(two)})
        try:
            await wait_until(
                lambda: impostor.transport.stats(2).refusals >= 1, what="the impostor refused"
            )
            assert two.transport.is_connected(1)
            assert one.transport.is_alive(2)
        finally:
            await _close(impostor, one, two)

    with caplog.at_level(logging.ERROR, logger="rilke.replication.transport"):
        asyncio.run(scenario())
    assert any("already taken" in r.getMessage() for r in caplog.records)


def _addr(end: _End) -> str:
    return end.transport.config.addr


def test_shutdown_ends_accepted_streams_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Closing the transport ends the streams it accepted, so stopping the gRPC server has
    no handler left to cancel (grpc logged a CancelledError traceback for each)."""

    async def scenario() -> None:
        one, two = await _pair()
        try:
            # Node 2 accepted node 1's stream: close the acceptor first, as a node that stops.
            await two.transport.close()
            assert not two.transport.is_connected(1)
            await two.server.stop(None)
            await wait_until(lambda: not one.transport.is_connected(2), what="node 1 saw the end")
        finally:
            await _close(two, one)

    with caplog.at_level(logging.WARNING):
        asyncio.run(scenario())
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not noisy, [r.getMessage() for r in noisy]


def test_a_snapshot_larger_than_a_chunk_arrives_whole() -> None:
    """InstallSnapshot of a large metadata state: one SNAPSHOT message, split into chunks of
    ``max_chunk_bytes`` (the default, 1 MiB) and joined by the receiver."""

    async def scenario() -> None:
        one, two = await _pair()
        try:
            data = bytes(range(256)) * (3 * 4096 + 7)  # ~3 MiB
            snap = Snapshot(900, 4, ConfState(frozenset({1, 2}), frozenset({3})), data)
            item = WireItem(
                "__cluster_metadata", Message(MessageType.SNAPSHOT, 2, 1, 4, snapshot=snap)
            )
            frames = one.transport.stats(2).frames_sent
            assert one.transport.send(2, [item])
            await wait_until(lambda: two.got, what="the snapshot")
            assert two.got == [(1, [item])]
            assert one.transport.stats(2).frames_sent - frames >= 3
        finally:
            await _close(one, two)

    asyncio.run(scenario())
