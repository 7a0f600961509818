"""A TCP listener on the broker's event loop that keeps track of its connections, so that
stopping it closes every one (the Kafka listener and the metrics endpoint are two)."""

from __future__ import annotations

import asyncio
import contextlib


class TcpListener:
    """Subclasses answer a connection in :meth:`_handle`; the listener counts it while it is
    open, closes its writer when ``_handle`` returns or raises, and cancels it on
    :meth:`stop`. ``read_limit``: the StreamReader's buffer limit (asyncio's default if
    None)."""

    def __init__(self, *, read_limit: int | None = None) -> None:
        self._read_limit = read_limit
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind and serve; returns the bound (host, port). Raises OSError when it cannot bind."""
        if self._read_limit is None:
            self._server = await asyncio.start_server(self._accept, host, port, reuse_address=True)
        else:
            self._server = await asyncio.start_server(
                self._accept, host, port, reuse_address=True, limit=self._read_limit
            )
        self.address = (host, int(self._server.sockets[0].getsockname()[1]))
        return self.address

    @property
    def connection_count(self) -> int:
        """Client connections open now."""
        return len(self._connections)

    async def stop(self) -> None:
        """Stop accepting and close every connection."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        for task in list(self._connections):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle(reader, writer)
        except asyncio.CancelledError:
            pass  # the listener stops (asyncio's accept callback must not see it)
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)
