"""Group admin calls whose errors are per group (DescribeGroups, DeleteGroups): a
NOT_COORDINATOR there (the coordinator moved, as in a cluster's failover) makes the client
find the coordinator again and retry, instead of failing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from rilke.client import group_admin
from rilke.errors import GroupIdNotFoundError, NotCoordinatorError, RilkeError
from rilke.proto import rilke_pb2 as pb

T = TypeVar("T")


class MovedCoordinatorCluster:
    """FindCoordinator names node "old" first, then "new"; "old" answers per-group
    NOT_COORDINATOR (it lost the offsets partition's leadership)."""

    def __init__(self) -> None:
        self.transport = self
        self.rng = random.Random(1)
        self.finds = 0
        self.calls: list[tuple[str, str]] = []

    async def call_any(self, service: str, method: str, request: Any, timeout_s: float) -> Any:
        assert method == "FindCoordinator"
        self.finds += 1
        resp = pb.FindCoordinatorResponse()
        resp.coordinator.host = "old" if self.finds == 1 else "new"
        resp.coordinator.port = 1
        return resp

    async def call(
        self, address: str, service: str, method: str, request: Any, timeout_s: float
    ) -> Any:
        self.calls.append((address, method))
        moved = pb.Error(code=NotCoordinatorError.code, message="node 2 leads it")
        if method == "DescribeGroups":
            resp = pb.DescribeGroupsResponse()
            group = resp.groups.add(group_id="g", state="Stable")
            if address == "old:1":
                group.error.CopyFrom(moved)
            return resp
        assert method == "DeleteGroups"
        result = pb.DeleteGroupsResponse()
        item = result.results.add(group_id="g")
        if address == "old:1":
            item.error.CopyFrom(moved)
        else:
            item.error.CopyFrom(pb.Error(code=GroupIdNotFoundError.code, message="no group"))
        return result

    async def retrying(self, op: Callable[[float], Awaitable[T]], timeout_s: float) -> T:
        for _ in range(5):
            try:
                return await op(timeout_s)
            except RilkeError as exc:
                if not exc.retriable:
                    raise
        raise AssertionError("still failing after 5 tries")


def test_describe_retries_at_the_new_coordinator() -> None:
    cluster: Any = MovedCoordinatorCluster()
    desc = asyncio.run(group_admin._describe_raw(cluster, "g", 5.0))
    assert desc.state == "Stable"  # type: ignore[attr-defined]
    assert cluster.calls == [("old:1", "DescribeGroups"), ("new:1", "DescribeGroups")]


def test_delete_retries_at_the_new_coordinator_and_keeps_other_errors() -> None:
    cluster: Any = MovedCoordinatorCluster()
    out = asyncio.run(group_admin.delete_groups(cluster, ["g"], 5.0))
    assert isinstance(out["g"], GroupIdNotFoundError)  # answered by the new one, not retried
    assert cluster.calls == [("old:1", "DeleteGroups"), ("new:1", "DeleteGroups")]
