"""A simulated network under the production transport: streams that behave as TCP does.

:meth:`SimNetwork.opener` is a node's :data:`rilke.replication.transport.OpenStream`: dialing
an address makes a :class:`_Connection` whose acceptor side is served by the target node's
``Transport.accept`` (as gRPC's servicer would). Within a connection frames arrive in order
(per-direction FIFO), each after a seeded delay; nothing is lost or duplicated inside a
connection, as TCP promises. Faults are what TCP allows: a connection reset (both sides' reads
end, every frame in flight is lost), a dial that finds no listener (the node is down) or no
route (a partition: the dialer's read fails after ``connect_timeout_s``), and a partition of a
live connection, which holds its frames (TCP retransmits) until it heals, or resets it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import grpc

from rilke.proto import rilke_pb2 as pb
from rilke.replication.transport import TransportConfig


@dataclass
class NetworkKnobs:
    delay_min_s: float = 0.0005
    delay_max_s: float = 0.005
    reset_probability: float = 0.0
    """Per frame: the connection resets instead of delivering it."""
    connect_timeout_s: float = 0.5
    reset_on_partition: float = 0.5
    """Chance that a partition resets a live connection rather than holding its frames."""


@dataclass
class NetworkStats:
    frames: int = 0
    connections: int = 0
    resets: int = 0
    refused_dials: int = 0
    held_frames: int = 0


class _Direction:
    """One direction of a connection: frames in flight, in order."""

    def __init__(self, conn: _Connection, src: int, dst: int) -> None:
        self.conn = conn
        self.src = src
        self.dst = dst
        self.inbox: deque[pb.RaftFrame] = deque()
        self.readers: deque[asyncio.Future[None]] = deque()
        self.last_due = 0.0

    def wake(self) -> None:
        while self.readers:
            reader = self.readers.popleft()
            if not reader.done():
                reader.set_result(None)

    async def read(self) -> pb.RaftFrame | None:
        """The next frame, or None once the connection is closed."""
        while True:
            if self.inbox:
                return self.inbox.popleft()
            if self.conn.closed:
                return None
            waiter = asyncio.get_running_loop().create_future()
            self.readers.append(waiter)
            await waiter


class _Connection:
    def __init__(self, net: SimNetwork, dialer: int, acceptor: int) -> None:
        self.net = net
        self.dialer = dialer
        self.acceptor = acceptor
        self.closed = False
        self.to_acceptor = _Direction(self, dialer, acceptor)
        self.to_dialer = _Direction(self, acceptor, dialer)

    def send(self, direction: _Direction, frame: pb.RaftFrame) -> None:
        net = self.net
        if self.closed:
            raise ConnectionError("connection reset")
        if net.rng.random() < net.knobs.reset_probability:
            net.reset(self)
            raise ConnectionError("connection reset")
        net.stats.frames += 1
        loop = asyncio.get_running_loop()
        delay = net.rng.uniform(net.knobs.delay_min_s, net.knobs.delay_max_s)
        due = max(loop.time() + delay, direction.last_due)  # FIFO
        direction.last_due = due
        loop.call_at(due, self._arrive, direction, frame)

    def _arrive(self, direction: _Direction, frame: pb.RaftFrame) -> None:
        if self.closed:
            return
        net = self.net
        if net.blocked(direction.src, direction.dst):
            net.stats.held_frames += 1
            net.held.append((self, direction, frame))
            return
        direction.inbox.append(frame)
        direction.wake()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.to_acceptor.inbox.clear()
        self.to_dialer.inbox.clear()
        self.to_acceptor.wake()
        self.to_dialer.wake()


class _DialerCall:
    """The dialer's side, shaped as a gRPC stream-stream call."""

    def __init__(self, conn: _Connection | None, timeout_s: float) -> None:
        self._conn = conn
        self._timeout_s = timeout_s

    async def write(self, frame: pb.RaftFrame) -> None:
        conn = self._conn
        if conn is None:
            return  # buffered by the channel until the connect fails
        conn.send(conn.to_acceptor, frame)

    async def read(self) -> Any:
        conn = self._conn
        if conn is None:
            await asyncio.sleep(self._timeout_s)
            raise ConnectionError("no route to the node")
        frame = await conn.to_dialer.read()
        if frame is None:
            raise ConnectionError("connection reset")
        return frame

    def cancel(self) -> bool:
        if self._conn is not None:
            self._conn.net.reset(self._conn)
        return True


class _AcceptorContext:
    """The acceptor's side, shaped as the servicer's context."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    async def read(self) -> Any:
        frame = await self._conn.to_acceptor.read()
        return grpc.aio.EOF if frame is None else frame

    async def write(self, frame: pb.RaftFrame) -> None:
        self._conn.send(self._conn.to_dialer, frame)

    def peer(self) -> str:
        return f"sim:n{self._conn.dialer}"


class _Open:
    def __init__(self, net: SimNetwork, src: int, dst: int) -> None:
        self._net, self._src, self._dst = net, src, dst

    async def __aenter__(self) -> _DialerCall:
        return self._net._dial(self._src, self._dst)

    async def __aexit__(self, *exc: object) -> None:
        return None


Accept = Callable[[Any], Coroutine[Any, Any, None]]
Spawn = Callable[[int, Coroutine[Any, Any, None]], None]
"""Start a coroutine as a task of node N (so that the node's crash cancels it)."""


class SimNetwork:
    """Every node's streams (see the module docstring). Addresses are ``"n<id>"``."""

    def __init__(self, rng: random.Random, knobs: NetworkKnobs, spawn: Spawn) -> None:
        self.rng = rng
        self.knobs = knobs
        self.stats = NetworkStats()
        self._spawn = spawn
        self._accept: dict[int, Accept] = {}
        """Node id -> its transport's ``accept``, while the node is up."""
        self._connections: list[_Connection] = []
        self._blocked: set[tuple[int, int]] = set()
        self.held: list[tuple[_Connection, _Direction, pb.RaftFrame]] = []

    @staticmethod
    def addr(node: int) -> str:
        return f"n{node}"

    # --- nodes ---------------------------------------------------------------------------------

    def listen(self, node: int, accept: Accept) -> None:
        self._accept[node] = accept

    def down(self, node: int) -> None:
        """The node's process is gone: its connections reset, nobody accepts for it."""
        self._accept.pop(node, None)
        for conn in list(self._connections):
            if node in (conn.dialer, conn.acceptor):
                self.reset(conn)

    def opener(self, node: int) -> Callable[[str, TransportConfig], Any]:
        """Node ``node``'s OpenStream. A class, not an async generator: a generator left open
        by a cancelled dialer would be closed whenever the garbage collector runs, a
        callback at a time no seed decides."""

        def open_stream(addr: str, config: TransportConfig) -> _Open:
            del config
            return _Open(self, node, int(addr.removeprefix("n")))

        return open_stream

    def _dial(self, src: int, dst: int) -> _DialerCall:
        accept = self._accept.get(dst)
        if accept is None or self.blocked(src, dst) or self.blocked(dst, src):
            self.stats.refused_dials += 1
            return _DialerCall(None, self.knobs.connect_timeout_s)
        conn = _Connection(self, src, dst)
        self._connections.append(conn)
        self.stats.connections += 1
        self._spawn(dst, accept(_AcceptorContext(conn)))
        return _DialerCall(conn, self.knobs.connect_timeout_s)

    # --- faults --------------------------------------------------------------------------------

    def reset(self, conn: _Connection) -> None:
        if conn.closed:
            return
        self.stats.resets += 1
        conn.close()
        with contextlib.suppress(ValueError):
            self._connections.remove(conn)

    def reset_between(self, a: int, b: int) -> None:
        for conn in list(self._connections):
            if {conn.dialer, conn.acceptor} == {a, b}:
                self.reset(conn)

    def blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self._blocked

    def block(self, src: int, dst: int) -> None:
        """Frames from ``src`` to ``dst`` stop arriving (held, or the connections reset)."""
        self._blocked.add((src, dst))
        if self.rng.random() < self.knobs.reset_on_partition:
            self.reset_between(src, dst)

    def unblock(self, src: int, dst: int) -> None:
        """Frames from ``src`` to ``dst`` arrive again, the held ones first, in order."""
        self._blocked.discard((src, dst))
        held, self.held = self.held, []
        for conn, direction, frame in held:
            if (direction.src, direction.dst) != (src, dst):
                self.held.append((conn, direction, frame))
            elif not conn.closed:
                direction.inbox.append(frame)
                direction.wake()

    def heal(self) -> None:
        """Every partition ends; held frames of live connections arrive, in order."""
        self._blocked.clear()
        held, self.held = self.held, []
        for conn, direction, frame in held:
            if not conn.closed:
                direction.inbox.append(frame)
                direction.wake()
