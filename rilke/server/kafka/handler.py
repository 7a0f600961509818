"""The Kafka listener: a TCP server whose connections each run one asyncio task.

A connection reads a frame, decodes it (rilke.server.kafka.codec) and starts its handler; the
handlers of requests pipelined on one connection start in arrival order (so Produce appends in
order) and their responses are written in that same order (Kafka's rule), at most
MAX_IN_FLIGHT_PER_CONNECTION at a time. A blocking request (JoinGroup, a long-poll Fetch) thus
holds back only the responses of its own connection.

Bad input is answered or closed as Kafka does, with one WARNING line naming the client's
address and the problem, and nothing written: garbage or a frame over kafka_max_frame_bytes
(closed before its bytes are read), a truncated frame (the client went away), an unknown API
key or version (closed; ApiVersions of an unknown version gets the KIP-511 fallback answer,
error 35 with ApiVersions' own range), a body that does not parse (closed), a client silent
for ``idle_timeout_s`` (closed, as Kafka's connections.max.idle.ms). Other connections and
the broker carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from rilke.server.kafka import schemas as sc
from rilke.server.kafka.apis import KafkaApis
from rilke.server.kafka.codec import (
    Request,
    RequestHeader,
    check_frame_length,
    decode_request,
    encode_response,
    frame_length,
)
from rilke.server.kafka.counting import KafkaCounters
from rilke.server.kafka.errors import (
    UNKNOWN_SERVER_ERROR,
    UNSUPPORTED_VERSION,
    MalformedMessageError,
)
from rilke.server.kafka.types import Message
from rilke.server.stats import BrokerStats
from rilke.server.tcp_listener import TcpListener

log = logging.getLogger(__name__)

# Requests of one connection being handled or waiting for their turn to be answered. librdkafka
# pipelines up to max.in.flight (1M) produce requests; this bounds what one client holds.
MAX_IN_FLIGHT_PER_CONNECTION = 64
# Kafka's connections.max.idle.ms (10 minutes): a connection silent this long is closed.
DEFAULT_IDLE_TIMEOUT_S = 600.0
# A frame whose length has arrived must be complete within this (a client that stalls
# mid-frame holds a buffer).
FRAME_READ_TIMEOUT_S = 60.0


class _Close(Exception):
    """Close this connection (the reason is logged by who raises)."""


class KafkaListener(TcpListener):
    def __init__(
        self,
        apis: KafkaApis,
        max_frame_bytes: int,
        *,
        idle_timeout_s: float | None = None,
        stats: BrokerStats | None = None,
    ) -> None:
        """``stats``: where requests, errors, latency and topic bytes are counted (none if
        None)."""
        super().__init__()
        self._apis = apis
        self._counters = KafkaCounters(stats) if stats is not None else None
        self._max_frame_bytes = max_frame_bytes
        self._idle_timeout_s = DEFAULT_IDLE_TIMEOUT_S if idle_timeout_s is None else idle_timeout_s

    async def stop(self) -> None:
        """Stop accepting, wake long polls, close every connection."""
        self._apis.stop()
        await super().stop()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer_info = writer.get_extra_info("peername")
        peer = f"{peer_info[0]}:{peer_info[1]}" if peer_info else "unknown"
        try:
            await self._serve(reader, writer, peer)
        except _Close:
            pass
        except (ConnectionError, asyncio.IncompleteReadError):
            log.debug("kafka client %s: connection lost", peer)
        except Exception:
            log.exception("kafka client %s: unexpected error; closing the connection", peer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        in_flight: asyncio.Queue[tuple[RequestHeader, asyncio.Future[Message | None]] | None]
        in_flight = asyncio.Queue(MAX_IN_FLIGHT_PER_CONNECTION)
        answering = asyncio.ensure_future(self._answer(in_flight, writer, peer))
        try:
            while not answering.done():
                request = await self._read_request(reader, peer)
                if request is None:
                    break
                started = self._start(request, peer)
                if started is None:
                    continue
                await in_flight.put((request.header, started))
            await in_flight.put(None)
            await answering
        finally:
            if not answering.done():
                answering.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await answering

    async def _read_request(self, reader: asyncio.StreamReader, peer: str) -> Request | None:
        """The next request, or None when the client closed between requests. Raises _Close
        (logged) for bad input."""
        try:
            prefix = await asyncio.wait_for(reader.readexactly(4), self._idle_timeout_s)
        except asyncio.IncompleteReadError as e:
            if e.partial:
                log.warning(
                    "kafka client %s: truncated frame (%d of 4 length bytes); closing",
                    peer,
                    len(e.partial),
                )
                raise _Close() from None
            return None
        except TimeoutError:
            log.warning("kafka client %s: idle for %.0f s; closing", peer, self._idle_timeout_s)
            raise _Close() from None
        length = frame_length(prefix)
        try:
            check_frame_length(length, self._max_frame_bytes)
        except MalformedMessageError as e:
            log.warning("kafka client %s: %s (not a Kafka request?); closing", peer, e)
            raise _Close() from None
        try:
            frame = await asyncio.wait_for(reader.readexactly(length), FRAME_READ_TIMEOUT_S)
        except asyncio.IncompleteReadError as e:
            log.warning(
                "kafka client %s: truncated frame (%d of %d bytes); closing",
                peer,
                len(e.partial),
                length,
            )
            raise _Close() from None
        except TimeoutError:
            log.warning(
                "kafka client %s: frame of %d bytes not complete after %.0f s; closing",
                peer,
                length,
                FRAME_READ_TIMEOUT_S,
            )
            raise _Close() from None
        try:
            return decode_request(frame)
        except MalformedMessageError as e:
            log.warning("kafka client %s: request does not parse: %s; closing", peer, e)
            raise _Close() from None

    def _start(self, request: Request, peer: str) -> asyncio.Future[Message | None] | None:
        header = request.header
        loop = asyncio.get_running_loop()
        if request.body is None:
            if header.api_key == sc.API_VERSIONS:
                # KIP-511: answer an unknown ApiVersions version with a v0 body.
                answer: asyncio.Future[Message | None] = loop.create_future()
                low, high = sc.SERVED[sc.API_VERSIONS]
                answer.set_result(
                    {
                        "error_code": UNSUPPORTED_VERSION,
                        "api_keys": [
                            {"api_key": sc.API_VERSIONS, "min_version": low, "max_version": high}
                        ],
                    }
                )
                return answer
            name = sc.API_NAMES.get(header.api_key, "unknown")
            served = sc.SERVED.get(header.api_key)
            log.warning(
                "kafka client %s (%s): api key %d (%s) version %d is not served (%s); closing",
                peer,
                header.client_id,
                header.api_key,
                name,
                header.api_version,
                f"versions {served[0]}-{served[1]}" if served else "unknown api key",
            )
            raise _Close()
        handling = asyncio.ensure_future(self._apis.handle(header, request.body, peer))
        counters = self._counters
        if counters is not None:
            started = time.perf_counter()
            body = request.body

            def count(done: asyncio.Future[Message | None]) -> None:
                seconds = time.perf_counter() - started
                if done.cancelled():
                    return
                if done.exception() is not None:
                    counters.failed(header.api_key, UNKNOWN_SERVER_ERROR, seconds)
                else:
                    counters.answered(header.api_key, body, done.result(), seconds)

            handling.add_done_callback(count)
        return handling

    async def _answer(
        self,
        in_flight: asyncio.Queue[tuple[RequestHeader, asyncio.Future[Message | None]] | None],
        writer: asyncio.StreamWriter,
        peer: str,
    ) -> None:
        while True:
            item = await in_flight.get()
            if item is None:
                return
            header, future = item
            body = await future
            if body is None:
                continue  # Produce with acks=0
            version = header.api_version
            if header.api_key == sc.API_VERSIONS and "throttle_time_ms" not in body:
                version = 0  # the KIP-511 fallback answer
            writer.write(encode_response(header.correlation_id, header.api_key, version, body))
            if in_flight.empty():
                await writer.drain()
