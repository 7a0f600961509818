"""ControllerClient: a node's calls to the controller leader, wherever it is.

A call goes to the leader this node knows: its own Cluster service when it leads (no
network), else over gRPC to the leader's address (from the applied metadata's brokers, or
the initial voters / join answer before that). NotControllerError (the leader moved; the
answer names the one that node knows), UNAVAILABLE and no leader known are retried with
exponential backoff and jitter until the call's deadline; any other error is the answer.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import grpc

from rilke.errors import NotControllerError, RequestTimedOutError, RilkeError, for_code
from rilke.proto import rilke_pb2_grpc as pb_grpc
from rilke.replication.raft.types import NO_NODE
from rilke.server.cluster.controller import ClusterController
from rilke.server.cluster.service import ClusterService

RETRY_MIN_S = 0.05
RETRY_MAX_S = 1.0
RPC_TIMEOUT_S = 20.0


class ControllerClient:
    """See the module docstring. ``address_of(node)`` is the node's HOST:PORT, or None."""

    def __init__(
        self,
        controller: ClusterController,
        local: ClusterService,
        address_of: Callable[[int], str | None],
    ) -> None:
        self._controller = controller
        self._local = local
        self._address_of = address_of
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close()

    def _stub(self, address: str) -> pb_grpc.ClusterStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address)
        return pb_grpc.ClusterStub(channel)  # type: ignore[no-untyped-call]

    async def call(self, method: str, request: Any, *, timeout_s: float = RPC_TIMEOUT_S) -> Any:
        """``method`` of the Cluster service on the controller leader; returns its response
        once it has no ``error``. Raises that error's class (NotControllerError only when
        the deadline passed), RequestTimedOutError when no leader answered in time."""
        deadline = time.monotonic() + timeout_s
        delay = RETRY_MIN_S
        hint = NO_NODE
        last: BaseException | None = None
        while not self._closed:
            # A leader named by the last answer first (once), else the one this node knows.
            leader = hint if hint != NO_NODE else self._controller.leader_id
            hint = NO_NODE
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            response = None
            try:
                if leader == self._controller.node_id and self._controller.is_leader:
                    response = await getattr(self._local, method)(request, None)
                elif leader != NO_NODE and (address := self._address_of(leader)) is not None:
                    rpc = getattr(self._stub(address), method)
                    response = await rpc(request, timeout=min(remaining, timeout_s))
            except grpc.aio.AioRpcError as e:
                if e.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    grpc.StatusCode.CANCELLED,
                ):
                    raise RilkeError(f"controller {leader}: {e.details()}") from None
                last = e
            if response is not None:
                if not response.error.code:
                    return response
                error = for_code(response.error.code)(response.error.message)
                if not isinstance(error, NotControllerError):
                    raise error
                last = error
                if response.controller_id >= 0 and response.controller_id != leader:
                    hint = response.controller_id
                    continue
            pause = min(delay, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(pause * random.uniform(0.5, 1.0))
            delay = min(delay * 2, RETRY_MAX_S)
        raise RequestTimedOutError(
            f"no controller leader answered within {timeout_s:.0f} s"
            + (f" (last: {last})" if last is not None else "")
        )
