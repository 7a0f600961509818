"""The linearizable flag of Metadata/DescribeTopics: a node of a cluster waits for its read
barrier; when it cannot have one the call ends UNAVAILABLE with the reason (clients retry at
another node); a single node (no cluster admin) answers at once."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from rilke.errors import NotLeaderError
from rilke.server.services import linearizable_barrier


class _Aborted(Exception):
    pass


class _Context:
    def __init__(self) -> None:
        self.status: tuple[Any, str] | None = None

    async def abort(self, code: Any, details: str) -> None:
        self.status = (code, details)
        raise _Aborted


class _Admin:
    def __init__(self, error: BaseException | None) -> None:
        self.error = error
        self.calls = 0

    async def read_barrier(self) -> None:
        self.calls += 1
        if self.error is not None:
            raise self.error


def test_the_barrier_is_awaited_and_its_failure_is_unavailable() -> None:
    async def main() -> None:
        context = _Context()
        await linearizable_barrier(None, context)  # a single node
        ok = _Admin(None)
        await linearizable_barrier(ok, context)  # type: ignore[arg-type]
        assert ok.calls == 1 and context.status is None
        for error in (NotLeaderError("no controller leader is known"), TimeoutError("5 s")):
            with pytest.raises(_Aborted):
                await linearizable_barrier(_Admin(error), context)  # type: ignore[arg-type]
            assert context.status is not None
            code, details = context.status
            assert code is grpc.StatusCode.UNAVAILABLE
            assert "no linearizable metadata on this node now" in details
            assert str(error) in details

    asyncio.run(main())
