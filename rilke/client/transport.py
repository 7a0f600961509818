"""One gRPC channel per broker address, every call with a deadline, failures mapped to errors.

A call through :class:`Transport` checks the broker's circuit breaker, sends the request with
a gRPC timeout, and turns a transport failure into a typed, usually retriable, Rilke error:
UNAVAILABLE -> :class:`BrokerNotAvailableError`, DEADLINE_EXCEEDED ->
:class:`RequestTimedOutError`, RESOURCE_EXHAUSTED -> :class:`MessageSizeTooLargeError`,
INVALID_ARGUMENT -> :class:`InvalidRequestError`.

Runs on one asyncio event loop (grpc.aio channels belong to the loop that made them).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import grpc
import grpc.aio

from rilke.client.backoff import CircuitBreaker
from rilke.errors import (
    BrokerNotAvailableError,
    InvalidRequestError,
    MessageSizeTooLargeError,
    ProtocolError,
    RequestTimedOutError,
    RilkeError,
    ShuttingDownError,
    for_code,
)
from rilke.proto import rilke_pb2_grpc

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest gRPC message a client sends or accepts (produce requests, fetch responses)."""

_SERVICES: dict[str, Any] = {
    "Broker": rilke_pb2_grpc.BrokerStub,
    "Admin": rilke_pb2_grpc.AdminStub,
    "Group": rilke_pb2_grpc.GroupStub,
}


def error_from_proto(error: Any, context: str = "") -> RilkeError | None:
    """The typed exception for a response's ``Error`` message, or None when it is success.

    The message is the broker's, prefixed with ``context`` (what the client was doing).
    """
    if error is None or error.code == 0:
        return None
    cls = for_code(error.code)
    message = error.message or cls.description
    if context:
        message = f"{context}: {message}"
    return cls(message)


def error_from_rpc(exc: grpc.aio.AioRpcError, address: str, method: str) -> RilkeError:
    """Map a failed gRPC call to a Rilke error that says what to do."""
    code = exc.code()
    details = exc.details() or ""
    where = f"{method} to {address}"
    if code == grpc.StatusCode.UNAVAILABLE:
        return BrokerNotAvailableError(
            f"{where} failed: broker unavailable ({details}); check that it is running and "
            f"reachable (it will be retried)"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RequestTimedOutError(
            f"{where} did not answer before its deadline; the broker may be overloaded "
            f"(raise request_timeout_ms if this persists)"
        )
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return MessageSizeTooLargeError(
            f"{where} refused: {details} (lower batch_size or max_request_size)"
        )
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidRequestError(f"{where} refused as malformed: {details}")
    if code == grpc.StatusCode.CANCELLED:
        return ShuttingDownError(f"{where} was cancelled: {details}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return ProtocolError(f"{where}: the broker does not implement it ({details})")
    return ProtocolError(f"{where} failed with gRPC status {code.name}: {details}")


class Transport:
    """Channels and circuit breakers by broker address ("host:port")."""

    def __init__(self, *, client_id: str = "rilke-python", breaker_threshold: int = 3) -> None:
        self._client_id = client_id
        self._breaker_threshold = breaker_threshold
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, str], Any] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self.answered = False
        """Whether any broker has ever answered a call (so the addresses were right once)."""

    def breaker(self, address: str) -> CircuitBreaker:
        b = self._breakers.get(address)
        if b is None:
            b = CircuitBreaker(address, failure_threshold=self._breaker_threshold)
            self._breakers[address] = b
        return b

    def _stub(self, address: str, service: str) -> Any:
        stub = self._stubs.get((address, service))
        if stub is None:
            channel = self._channels.get(address)
            if channel is None:
                channel = grpc.aio.insecure_channel(
                    address,
                    options=[
                        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                        ("grpc.primary_user_agent", self._client_id),
                        ("grpc.enable_retries", 0),
                        # gRPC's own reconnect backoff grows to 120 s by default: a broker
                        # back from a restart would stay unreachable that long. Our retries
                        # and circuit breaker pace the attempts instead.
                        ("grpc.initial_reconnect_backoff_ms", 100),
                        ("grpc.min_reconnect_backoff_ms", 100),
                        ("grpc.max_reconnect_backoff_ms", 2000),
                    ],
                )
                self._channels[address] = channel
            stub = _SERVICES[service](channel)
            self._stubs[(address, service)] = stub
        return stub

    async def call(
        self, address: str, service: str, method: str, request: Any, timeout_s: float
    ) -> Any:
        """Send ``request`` to ``service.method`` at ``address`` and return the response.

        Raises :class:`BrokerNotAvailableError` at once when the broker's circuit is open,
        and the mapped error (see the module docstring) when the call fails.
        """
        breaker = self.breaker(address)
        breaker.check(time.monotonic())
        rpc = getattr(self._stub(address, service), method)
        try:
            response = await rpc(request, timeout=max(0.001, timeout_s))
        except grpc.aio.AioRpcError as exc:
            err = error_from_rpc(exc, address, f"{service}.{method}")
            if isinstance(err, BrokerNotAvailableError | RequestTimedOutError):
                breaker.record_failure(time.monotonic(), exc.details() or exc.code().name)
            else:
                self.answered = True
                breaker.record_success()
            raise err from None
        except BaseException:
            breaker.trial_in_flight = False
            raise
        self.answered = True
        breaker.record_success()
        return response

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        self._stubs.clear()
        for channel in channels:
            try:
                await channel.close(grace=None)
            except Exception:  # closing must not fail the caller
                log.debug("error closing a channel", exc_info=True)
