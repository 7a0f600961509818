"""The metrics listener: plain HTTP on the broker's event loop, for Prometheus and health checks.

``GET /metrics`` answers the registry in Prometheus' text format (prometheus_client's
``generate_latest``; collected on the loop, so the collector reads the broker's state without
locks, see rilke.server.metrics). ``GET /health`` answers 200 ``ok`` while the broker serves
and 503 ``not serving`` otherwise (starting, shutting down): for load balancers and Docker's
HEALTHCHECK. HEAD works for both; any other path is 404, any other method 405, a request
line or headers over MAX_REQUEST_HEAD_BYTES 431, a malformed request 400. Each connection
answers one request and closes (HTTP/1.0 style): a scrape every few seconds needs no more.
Every read has a deadline (REQUEST_READ_TIMEOUT_S).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from rilke.server.tcp_listener import TcpListener

log = logging.getLogger(__name__)

MAX_REQUEST_HEAD_BYTES = 16 << 10
REQUEST_READ_TIMEOUT_S = 10.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class MetricsServer(TcpListener):
    """Serves ``registry`` at /metrics and ``serving()`` at /health."""

    def __init__(self, registry: CollectorRegistry, serving: Callable[[], bool]) -> None:
        super().__init__(read_limit=MAX_REQUEST_HEAD_BYTES)
        self._registry = registry
        self._serving = serving

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body, head_only = await self._answer(reader)
            header = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n"
            ).encode("ascii")
            writer.write(header if head_only else header + body)
            await asyncio.wait_for(writer.drain(), REQUEST_READ_TIMEOUT_S)
        except (ConnectionError, TimeoutError):
            pass
        except Exception:
            log.exception("metrics listener: unexpected error")

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str, bytes, bool]:
        text = "text/plain; charset=utf-8"
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_READ_TIMEOUT_S)
        except asyncio.LimitOverrunError:
            return 431, text, b"request head too large\n", False
        except asyncio.IncompleteReadError as e:
            head = e.partial  # a client that sent only a request line and closed
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return 400, text, b"not an HTTP request\n", False
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method not in (b"GET", b"HEAD"):
            return 405, text, b"only GET and HEAD\n", False
        head_only = method == b"HEAD"
        if target == b"/metrics":
            try:
                body = generate_latest(self._registry)
            except Exception:
                log.exception("metrics listener: collecting the metrics failed")
                return 500, text, b"collecting the metrics failed\n", head_only
            return 200, CONTENT_TYPE_LATEST, body, head_only
        if target == b"/health":
            if self._serving():
                return 200, text, b"ok\n", head_only
            return 503, text, b"not serving\n", head_only
        return 404, text, b"not found: try /metrics or /health\n", head_only
