"""The transport between nodes: one gRPC stream per pair of nodes, for every Raft group.

Each pair of nodes shares one bidirectional ``Raft.Stream``: the node with the lower id dials
the other, both send on it. Whatever the runtime hands :meth:`Transport.send` for a peer within
one turn of the loop travels as one payload (:mod:`rilke.replication.wire`), so the heartbeats
of all groups between two nodes are one message per tick; payloads larger than
``max_chunk_bytes`` are split into chunks (``more`` set on all but the last) and joined by the
receiver, up to ``max_payload_bytes``. An empty frame is the node-level heartbeat, sent every
tick when nothing else was: it tells the peer this node is alive (:meth:`Transport.is_alive`),
which lets idle groups go quiet.

Handshake: each side's first frame is a :class:`RaftHello` (cluster id, node id, a random
incarnation per process start, protocol version, and an ``identity`` field kept for an
authenticated identity). The acceptor refuses, with a refusal frame and one ERROR log line on
both sides: a node of another cluster, a node claiming this node's own id, a node id that is
not a member, and a node id already connected from a live process of another incarnation.

Flow control: each stream has a send queue bounded by ``max_queue_bytes``; a send that does not
fit is dropped and reported (``send`` returns False), so the runtime tells the group's core the
peer is unreachable and the leader falls back to probing that follower instead of queueing
without bound. A broken stream drops its queue (Raft retransmits). The dialer reconnects with
exponential backoff and jitter.

Runs on one asyncio loop; not thread-safe.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import grpc

from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc
from rilke.replication import wire
from rilke.replication.wire import WireItem

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 1


@dataclass(frozen=True)
class TransportConfig:
    """This node's side of the transport."""

    cluster_id: str
    node_id: int
    addr: str
    """The address the other nodes dial (``host:port``)."""
    incarnation: int = field(default_factory=lambda: random.getrandbits(63))
    """Random per process start (see the module docstring)."""
    max_chunk_bytes: int = 1 << 20
    """Largest frame sent: under gRPC's default 4 MiB receive limit with room to spare."""
    max_payload_bytes: int = 256 << 20
    """Largest payload a peer may send in chunks; beyond, the stream is closed."""
    max_queue_bytes: int = 32 << 20
    """Bound of each stream's send queue (payload bytes waiting to be written)."""
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 2.0
    handshake_timeout_s: float = 5.0
    liveness_timeout_s: float = 1.5
    """A peer heard from within this is alive (it heartbeats every tick)."""


@dataclass
class LinkStats:
    """Counters of one peer's link (for tests, benchmarks and metrics)."""

    payloads_sent: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    payloads_dropped: int = 0
    payloads_received: int = 0
    connects: int = 0
    refusals: int = 0


class _Session:
    """One live stream to a peer: its send queue and writer."""

    def __init__(
        self, peer: int, incarnation: int, write: Callable[[pb.RaftFrame], Awaitable[Any]]
    ) -> None:
        self.peer = peer
        self.incarnation = incarnation
        self.write = write
        self.queue: deque[tuple[pb.RaftFrame, int]] = deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.sent_since_heartbeat = False
        self.closed = False


@dataclass
class _Link:
    peer: int
    addr: str
    session: _Session | None = None
    last_heard: float = float("-inf")
    stats: LinkStats = field(default_factory=LinkStats)
    dialer: asyncio.Task[None] | None = None


Deliver = Callable[[int, list[WireItem]], None]
"""Called with (peer node id, items) for every payload received, on the loop."""

OpenStream = Callable[[str, TransportConfig], AbstractAsyncContextManager[Any]]
"""Opens a ``Raft.Stream`` call to an address: an async context manager that yields the call
(``write(frame)``, ``read()`` -> a frame or ``grpc.aio.EOF``, ``cancel()``) and ends the call
and its channel on exit. The default dials gRPC; the simulation injects its network."""


@contextlib.asynccontextmanager
async def _grpc_stream(addr: str, config: TransportConfig) -> AsyncIterator[Any]:
    options = [
        ("grpc.max_send_message_length", config.max_chunk_bytes + (64 << 10)),
        ("grpc.max_receive_message_length", config.max_chunk_bytes + (64 << 10)),
    ]
    async with grpc.aio.insecure_channel(addr, options=options) as channel:
        stub = pb_grpc.RaftStub(channel)  # type: ignore[no-untyped-call]
        yield stub.Stream()  # the dialer cancels the call when it is done with it


class Transport:
    """The Raft transport of one node (see the module docstring)."""

    def __init__(
        self,
        config: TransportConfig,
        peers: Mapping[int, str],
        deliver: Deliver,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        open_stream: OpenStream = _grpc_stream,
    ) -> None:
        """``peers``: node id -> address of every other node. ``deliver`` gets what arrives.
        ``monotonic`` (liveness), ``rng`` (reconnect jitter) and ``open_stream`` (dialing)
        default to the real ones; the deterministic simulation passes its own."""
        self.config = config
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._open_stream = open_stream
        self._deliver = deliver
        self._links: dict[int, _Link] = {}
        self._closed = False
        self._started = False
        self._accepted: set[asyncio.Task[Any]] = set()
        """The handler tasks of the streams this node accepted (ended by :meth:`close`)."""
        for node, addr in peers.items():
            self.add_peer(node, addr)

    # --- membership -------------------------------------------------------------------------

    def add_peer(self, node: int, addr: str) -> None:
        """Know (and, if this node dials it, connect to) ``node`` at ``addr``."""
        if node == self.config.node_id or node in self._links:
            return
        link = _Link(node, addr)
        self._links[node] = link
        if self._started:
            self._start_dialer(link)

    def remove_peer(self, node: int) -> None:
        link = self._links.pop(node, None)
        if link is not None:
            if link.dialer is not None:
                link.dialer.cancel()
            if link.session is not None:
                link.session.closed = True
                link.session.wake.set()

    @property
    def peers(self) -> list[int]:
        return sorted(self._links)

    def stats(self, node: int) -> LinkStats:
        return self._links[node].stats

    def add_to_server(self, server: grpc.aio.Server) -> None:
        """Register the ``Raft`` service on ``server`` (the broker's gRPC server)."""
        pb_grpc.add_RaftServicer_to_server(_Servicer(self), server)  # type: ignore[no-untyped-call]

    async def start(self) -> None:
        """Start dialing the peers with a higher node id."""
        self._started = True
        for link in self._links.values():
            self._start_dialer(link)

    def _start_dialer(self, link: _Link) -> None:
        if link.peer > self.config.node_id and link.dialer is None:
            link.dialer = asyncio.get_running_loop().create_task(self._dial_forever(link))

    async def close(self) -> None:
        """Stop dialing and end every stream, the accepted ones too, so that stopping the
        gRPC server afterwards finds no Raft handler to cancel (grpc logs a CancelledError
        traceback for each one it cancels). Call before ``server.stop``. Idempotent."""
        self._closed = True
        tasks: list[asyncio.Task[Any]] = []
        for link in self._links.values():
            if link.dialer is not None:
                link.dialer.cancel()
                tasks.append(link.dialer)
            if link.session is not None:
                link.session.closed = True
                link.session.wake.set()
        for task in self._accepted:
            task.cancel()  # accept() returns normally once the transport is closed
            tasks.append(task)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- sending ------------------------------------------------------------------------------

    def is_connected(self, node: int) -> bool:
        link = self._links.get(node)
        return link is not None and link.session is not None

    def is_alive(self, node: int, now: float | None = None) -> bool:
        """Whether ``node`` was heard from within ``liveness_timeout_s`` on a live stream."""
        link = self._links.get(node)
        if link is None or link.session is None:
            return False
        now = self._monotonic() if now is None else now
        return now - link.last_heard < self.config.liveness_timeout_s

    def send(self, node: int, items: list[WireItem]) -> bool:
        """Queue ``items`` for ``node`` as one payload. False (nothing queued) when there is no
        stream to it or its queue would pass ``max_queue_bytes``: the caller reports the peer
        unreachable to the groups concerned."""
        link = self._links.get(node)
        session = link.session if link is not None else None
        if link is None or session is None or session.closed:
            return False
        payload = wire.encode(items)
        size = len(payload)
        if session.queued_bytes and session.queued_bytes + size > self.config.max_queue_bytes:
            link.stats.payloads_dropped += 1
            return False
        chunk = self.config.max_chunk_bytes
        if size <= chunk:
            session.queue.append((pb.RaftFrame(chunk=payload), size))
        else:
            last = (size - 1) // chunk
            for i in range(last + 1):
                piece = payload[i * chunk : (i + 1) * chunk]
                session.queue.append((pb.RaftFrame(chunk=piece, more=i < last), len(piece)))
        session.queued_bytes += size
        session.sent_since_heartbeat = True
        link.stats.payloads_sent += 1
        session.wake.set()
        return True

    def heartbeat(self) -> None:
        """Once per tick: an empty frame to every connected peer sent nothing since the last."""
        for link in self._links.values():
            session = link.session
            if session is None or session.closed:
                continue
            if not session.sent_since_heartbeat and not session.queue:
                session.queue.append((pb.RaftFrame(), 0))
                session.wake.set()
            session.sent_since_heartbeat = False

    # --- streams ------------------------------------------------------------------------------

    def _hello(self) -> pb.RaftFrame:
        config = self.config
        return pb.RaftFrame(
            hello=pb.RaftHello(
                cluster_id=config.cluster_id,
                node_id=config.node_id,
                incarnation=config.incarnation,
                protocol_version=PROTOCOL_VERSION,
            )
        )

    def _refusal(self, hello: pb.RaftHello) -> str | None:
        """Why the acceptor refuses ``hello``, or None."""
        config = self.config
        if hello.cluster_id != config.cluster_id:
            return (
                f"cluster id {hello.cluster_id!r} is not this cluster's {config.cluster_id!r}: "
                "a node of another cluster"
            )
        if hello.protocol_version != PROTOCOL_VERSION:
            return f"protocol version {hello.protocol_version}, this node speaks {PROTOCOL_VERSION}"
        if hello.node_id == config.node_id:
            return f"node id {hello.node_id} is this node's own id: two nodes with one id"
        link = self._links.get(hello.node_id)
        if link is None:
            return f"node id {hello.node_id} is not a member this node knows"
        session = link.session
        if (
            session is not None
            and session.incarnation != hello.incarnation
            and self.is_alive(hello.node_id)
        ):
            return (
                f"node id {hello.node_id} is already taken by a live process (incarnation "
                f"{session.incarnation:x}; this one {hello.incarnation:x})"
            )
        return None

    async def _run_session(
        self,
        link: _Link,
        incarnation: int,
        read: Callable[[], Awaitable[Any]],
        write: Callable[[pb.RaftFrame], Awaitable[Any]],
    ) -> None:
        """Serve one established stream until it ends (or a newer one replaces it)."""
        old = link.session
        if old is not None:
            old.closed = True
            old.wake.set()
        session = _Session(link.peer, incarnation, write)
        link.session = session
        link.last_heard = self._monotonic()
        link.stats.connects += 1
        logger.info(
            "raft transport node %d: connected to node %d (%s)",
            self.config.node_id,
            link.peer,
            link.addr,
        )
        writer = asyncio.get_running_loop().create_task(self._write_loop(session))
        buffer = bytearray()
        try:
            while not session.closed:
                frame = await read()
                if frame is grpc.aio.EOF or session.closed:
                    break
                link.last_heard = self._monotonic()
                if not frame.chunk and not frame.more:
                    continue  # node heartbeat
                buffer += frame.chunk
                if len(buffer) > self.config.max_payload_bytes:
                    logger.error(
                        "raft transport node %d: node %d sent a payload over %d bytes; "
                        "closing the stream",
                        self.config.node_id,
                        link.peer,
                        self.config.max_payload_bytes,
                    )
                    break
                if frame.more:
                    continue
                try:
                    items = wire.decode(bytes(buffer))
                except wire.WireError as exc:
                    logger.error(
                        "raft transport node %d: unreadable payload from node %d (%s); "
                        "closing the stream",
                        self.config.node_id,
                        link.peer,
                        exc,
                    )
                    break
                buffer.clear()
                link.stats.payloads_received += 1
                self._deliver(link.peer, items)
        finally:
            session.closed = True
            session.wake.set()
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
            if link.session is session:
                link.session = None
                logger.info(
                    "raft transport node %d: stream to node %d ended",
                    self.config.node_id,
                    link.peer,
                )

    async def _write_loop(self, session: _Session) -> None:
        link = self._links.get(session.peer)
        while not session.closed:
            if not session.queue:
                session.wake.clear()
                await session.wake.wait()
                continue
            frame, size = session.queue.popleft()
            try:
                await session.write(frame)
            except Exception as exc:  # a broken stream: the reader side ends the session
                logger.debug("raft transport: write to node %d failed: %s", session.peer, exc)
                session.closed = True
                break
            finally:
                session.queued_bytes -= size
            if link is not None:
                link.stats.frames_sent += 1
                link.stats.bytes_sent += size
        session.queue.clear()
        session.queued_bytes = 0

    async def _dial_forever(self, link: _Link) -> None:
        config = self.config
        backoff = config.reconnect_min_s
        while not self._closed and self._links.get(link.peer) is link:
            refused = False
            async with self._open_stream(link.addr, config) as call:
                try:
                    await call.write(self._hello())
                    reply = await asyncio.wait_for(call.read(), config.handshake_timeout_s)
                    if reply is grpc.aio.EOF:
                        raise ConnectionError("stream closed during the handshake")
                    if reply.HasField("refusal"):
                        refused = True
                        link.stats.refusals += 1
                        logger.error(
                            "raft transport node %d: node %d at %s refused this node: %s",
                            config.node_id,
                            link.peer,
                            link.addr,
                            reply.refusal.reason,
                        )
                    else:
                        reason = self._check_reply(link, reply.hello)
                        if reason is not None:
                            refused = True
                            link.stats.refusals += 1
                            logger.error(
                                "raft transport node %d: refusing the node at %s: %s",
                                config.node_id,
                                link.addr,
                                reason,
                            )
                        else:
                            backoff = config.reconnect_min_s
                            await self._run_session(
                                link, reply.hello.incarnation, call.read, call.write
                            )
                except asyncio.CancelledError:
                    call.cancel()
                    raise
                except (grpc.aio.AioRpcError, ConnectionError, TimeoutError, OSError) as exc:
                    logger.debug(
                        "raft transport node %d: node %d at %s: %s",
                        config.node_id,
                        link.peer,
                        link.addr,
                        exc,
                    )
                finally:
                    call.cancel()
            if self._closed:
                return
            if refused:
                backoff = config.reconnect_max_s
            await asyncio.sleep(backoff * self._rng.uniform(0.5, 1.5))
            backoff = min(backoff * 2, config.reconnect_max_s)

    def _check_reply(self, link: _Link, hello: pb.RaftHello) -> str | None:
        if hello.cluster_id != self.config.cluster_id:
            return (
                f"it is of cluster {hello.cluster_id!r}, not this cluster's "
                f"{self.config.cluster_id!r}"
            )
        if hello.node_id != link.peer:
            return f"it says it is node {hello.node_id}, not node {link.peer}"
        if hello.protocol_version != PROTOCOL_VERSION:
            return f"it speaks protocol version {hello.protocol_version}"
        return None

    async def accept(self, context: Any) -> None:
        """Serve an incoming ``Raft.Stream`` (the servicer's body) until it ends or the
        transport closes (then it returns normally: the peer sees the stream end)."""
        task = asyncio.current_task()
        assert task is not None
        self._accepted.add(task)
        try:
            await self._accept(context)
        except asyncio.CancelledError:
            if not self._closed:
                raise
        finally:
            self._accepted.discard(task)

    async def _accept(self, context: Any) -> None:
        config = self.config
        try:
            first = await asyncio.wait_for(context.read(), config.handshake_timeout_s)
        except TimeoutError:
            return
        if first is grpc.aio.EOF or not first.HasField("hello"):
            return
        hello = first.hello
        reason = None if not self._closed else "the node is shutting down"
        reason = reason or self._refusal(hello)
        if reason is not None:
            logger.error(
                "raft transport node %d: refused node %d from %s: %s",
                config.node_id,
                hello.node_id,
                context.peer(),
                reason,
            )
            link = self._links.get(hello.node_id)
            if link is not None:
                link.stats.refusals += 1
            await context.write(pb.RaftFrame(refusal=pb.RaftRefusal(reason=reason)))
            return
        await context.write(self._hello())
        await self._run_session(
            self._links[hello.node_id], hello.incarnation, context.read, context.write
        )


class _Servicer(pb_grpc.RaftServicer):
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    async def Stream(self, request_iterator: Any, context: Any) -> None:
        del request_iterator  # read through the context
        await self._transport.accept(context)
