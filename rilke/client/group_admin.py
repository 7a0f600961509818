"""Consumer group administration: list, describe with lag, delete, and reset offsets.

Used by :class:`rilke.client.admin.AIOAdmin` (and the blocking Admin) and by ``rilke group``.
Lag per partition is the log end offset minus the committed offset (in records), and the age
of the oldest unconsumed record (in seconds: now minus the timestamp of the record at the
committed offset; 0 when nothing is left to consume).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rilke.client.cluster import Cluster
from rilke.client.group import (
    COORDINATOR_ERRORS,
    GroupCoordinatorClient,
    fetch_committed,
    tps_from_proto,
)
from rilke.client.offsets import EARLIEST, LATEST, list_offsets
from rilke.client.structs import TopicPartition
from rilke.client.transport import error_from_proto
from rilke.errors import InvalidRequestError, NonEmptyGroupError, RilkeError
from rilke.proto import rilke_pb2 as pb


class GroupListing(NamedTuple):
    group_id: str
    state: str
    members: int


@dataclass(frozen=True)
class MemberInfo:
    member_id: str
    instance_id: str
    client_id: str
    client_host: str
    member_epoch: int
    state: str
    assignment: frozenset[TopicPartition]
    target_assignment: frozenset[TopicPartition]
    pending_revocation: frozenset[TopicPartition]
    left_static: bool


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: nothing committed
    log_end_offset: int
    lag: int | None  # records; None when nothing is committed
    lag_seconds: float | None  # age of the oldest unconsumed record; 0.0 when caught up
    member_id: str  # who consumes it now ("" when nobody)


@dataclass(frozen=True)
class GroupInfo:
    group_id: str
    state: str
    group_epoch: int
    assignor: str
    members: list[MemberInfo] = field(default_factory=list)
    partitions: list[PartitionLag] = field(default_factory=list)

    @property
    def total_lag(self) -> int:
        return sum(p.lag or 0 for p in self.partitions)


async def list_groups(cluster: Cluster, timeout_s: float) -> list[GroupListing]:
    """Every group of every broker in the cluster."""
    await cluster.refresh(None, timeout_s)
    seen: dict[str, GroupListing] = {}
    addresses = [b.address for b in cluster.brokers.values()] or cluster.bootstrap[:1]
    for address in addresses:
        resp = await cluster.transport.call(
            address, "Group", "ListGroups", pb.ListGroupsRequest(), timeout_s
        )
        err = error_from_proto(resp.error, "listing groups")
        if err is not None:
            raise err
        for g in resp.groups:
            seen[g.group_id] = GroupListing(g.group_id, g.state, g.members)
    return [seen[k] for k in sorted(seen)]


async def _call_per_group(
    coordinator: GroupCoordinatorClient,
    method: str,
    request: Any,
    items: Callable[[Any], Iterable[Any]],
    timeout_s: float,
) -> Any:
    """``coordinator.call`` for a method whose errors are per group (DescribeGroups,
    DeleteGroups): a coordinator error there (moved, loading) is retried too, at the
    coordinator found again, until the deadline."""

    async def once(remaining_s: float) -> Any:
        resp = await coordinator.call_once(method, request, remaining_s)
        for item in items(resp):
            err = error_from_proto(item.error)
            if isinstance(err, COORDINATOR_ERRORS):
                coordinator.address = None
                raise err
        return resp

    return await coordinator.cluster.retrying(once, timeout_s)


async def _describe_raw(cluster: Cluster, group_id: str, timeout_s: float) -> object:
    coordinator = GroupCoordinatorClient(cluster, group_id)
    resp = await _call_per_group(
        coordinator,
        "DescribeGroups",
        pb.DescribeGroupsRequest(group_ids=[group_id]),
        lambda r: r.groups,
        timeout_s,
    )
    [desc] = resp.groups
    err = error_from_proto(desc.error, f"describing group {group_id!r}")
    if err is not None:
        raise err
    return desc


async def oldest_unconsumed_timestamp(
    cluster: Cluster, tp: TopicPartition, offset: int, timeout_s: float
) -> int | None:
    """The timestamp of the first record at or after ``offset`` (None if there is none)."""
    from rilke.records import read_records

    await cluster.refresh([tp.topic], timeout_s)
    leader = cluster.leader_for(tp)
    if leader < 0:
        return None
    req = pb.FetchRequest(max_wait_ms=0, min_bytes=0, max_bytes=64 * 1024, replica_id=-1)
    req.partitions.add(
        topic=tp.topic, partition=tp.partition, fetch_offset=offset, partition_max_bytes=64 * 1024
    )
    resp = await cluster.call_node(leader, "Broker", "Fetch", req, timeout_s)
    for p in resp.partitions:
        if error_from_proto(p.error) is not None:
            return None
        for rec in read_records(p.records, skip_control=True):
            if rec.offset >= offset:
                return int(rec.timestamp)
    return None


async def describe_group(
    cluster: Cluster, group_id: str, timeout_s: float, now_ms: int | None = None
) -> GroupInfo:
    """The group's state, members and per-partition lag. Raises GroupIdNotFoundError."""
    desc = await _describe_raw(cluster, group_id, timeout_s)
    members = [
        MemberInfo(
            member_id=m.member_id,
            instance_id=m.instance_id,
            client_id=m.client_id,
            client_host=m.client_host,
            member_epoch=m.member_epoch,
            state=m.state,
            assignment=tps_from_proto(m.assignment),
            target_assignment=tps_from_proto(m.target_assignment),
            pending_revocation=tps_from_proto(m.pending_revocation),
            left_static=m.left_static,
        )
        for m in desc.members  # type: ignore[attr-defined]
    ]
    owner: dict[TopicPartition, str] = {}
    for m in members:
        for tp in m.assignment | m.pending_revocation:
            owner[tp] = m.member_id
    committed = {
        TopicPartition(o.topic, o.partition): o.offset
        for o in desc.offsets  # type: ignore[attr-defined]
    }
    tps = sorted(set(committed) | set(owner))
    ends: dict[TopicPartition, int] = {}
    if tps:
        got = await list_offsets(cluster, dict.fromkeys(tps, LATEST), timeout_s)
        ends = {tp: ot.offset for tp, ot in got.items()}
    now = int(time.time() * 1000) if now_ms is None else now_ms
    parts: list[PartitionLag] = []
    for tp in tps:
        end = ends.get(tp, -1)
        c = committed.get(tp)
        lag = None if c is None else max(0, end - c)
        lag_s: float | None = None
        if c is not None:
            lag_s = 0.0
            if lag:
                ts = await oldest_unconsumed_timestamp(cluster, tp, c, timeout_s)
                lag_s = None if ts is None else max(0.0, (now - ts) / 1000)
        parts.append(PartitionLag(tp.topic, tp.partition, c, end, lag, lag_s, owner.get(tp, "")))
    return GroupInfo(
        group_id=group_id,
        state=desc.state,  # type: ignore[attr-defined]
        group_epoch=desc.group_epoch,  # type: ignore[attr-defined]
        assignor=desc.assignor,  # type: ignore[attr-defined]
        members=members,
        partitions=parts,
    )


async def delete_groups(
    cluster: Cluster, group_ids: Iterable[str], timeout_s: float
) -> dict[str, RilkeError | None]:
    """Delete empty groups and their offsets; per group None or its error."""
    out: dict[str, RilkeError | None] = {}
    for gid in group_ids:
        coordinator = GroupCoordinatorClient(cluster, gid)
        resp = await _call_per_group(
            coordinator,
            "DeleteGroups",
            pb.DeleteGroupsRequest(group_ids=[gid]),
            lambda r: r.results,
            timeout_s,
        )
        for r in resp.results:
            out[r.group_id] = error_from_proto(r.error, f"deleting group {r.group_id!r}")
    return out


async def committed_offsets(
    cluster: Cluster, group_id: str, timeout_s: float
) -> dict[TopicPartition, int]:
    got = await fetch_committed(GroupCoordinatorClient(cluster, group_id), group_id, [], timeout_s)
    return {tp: om.offset for tp, om in got.items() if om is not None}


@dataclass(frozen=True)
class ResetSpec:
    """Where to move offsets: ``kind`` is earliest, latest, offset, timestamp or shift."""

    kind: str
    value: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("earliest", "latest", "offset", "timestamp", "shift"):
            raise ValueError(f"unknown reset kind {self.kind!r}")
        if self.kind in ("offset", "timestamp") and self.value < 0:
            raise ValueError(f"--to-{self.kind} needs a value >= 0, not {self.value}")


async def plan_reset(
    cluster: Cluster,
    group_id: str,
    spec: ResetSpec,
    partitions: Iterable[TopicPartition] | None,
    timeout_s: float,
) -> dict[TopicPartition, tuple[int | None, int]]:
    """For each partition, (current committed offset, new offset), clamped to the log's
    [log start, log end]. ``partitions`` None: every partition the group has committed.
    Raises NonEmptyGroupError while the group has members (reset only a stopped group),
    and InvalidRequestError when there is nothing to reset."""
    try:
        desc = await _describe_raw(cluster, group_id, timeout_s)
        n_members = len(desc.members)  # type: ignore[attr-defined]
    except RilkeError as exc:
        from rilke.errors import GroupIdNotFoundError

        if not isinstance(exc, GroupIdNotFoundError) or partitions is None:
            raise
        n_members = 0
    if n_members:
        raise NonEmptyGroupError(
            f"group {group_id!r} has {n_members} live member(s): stop its consumers before "
            "resetting its offsets"
        )
    current = await committed_offsets(cluster, group_id, timeout_s)
    tps = sorted(set(partitions) if partitions is not None else set(current))
    if not tps:
        raise InvalidRequestError(f"group {group_id!r} has no committed offsets to reset")
    starts = await list_offsets(cluster, dict.fromkeys(tps, EARLIEST), timeout_s)
    ends = await list_offsets(cluster, dict.fromkeys(tps, LATEST), timeout_s)
    by_time: dict[TopicPartition, int] = {}
    if spec.kind == "timestamp":
        got = await list_offsets(cluster, dict.fromkeys(tps, spec.value), timeout_s)
        by_time = {tp: ot.offset for tp, ot in got.items()}
    plan: dict[TopicPartition, tuple[int | None, int]] = {}
    for tp in tps:
        lo, hi = starts[tp].offset, ends[tp].offset
        cur = current.get(tp)
        if spec.kind == "earliest":
            new = lo
        elif spec.kind == "latest":
            new = hi
        elif spec.kind == "offset":
            new = spec.value
        elif spec.kind == "timestamp":
            found = by_time.get(tp, -1)
            new = hi if found < 0 else found
        else:
            new = (cur if cur is not None else lo) + spec.value
        plan[tp] = (cur, min(max(new, lo), hi))
    return plan


async def alter_offsets(
    cluster: Cluster, group_id: str, offsets: dict[TopicPartition, int], timeout_s: float
) -> None:
    """Set a stopped group's committed offsets (an admin commit). Raises NonEmptyGroupError
    while the group has members, and the first partition's error (nothing is committed)."""
    req = pb.OffsetCommitRequest(group_id=group_id, member_id="", member_epoch=-1)
    for tp, offset in sorted(offsets.items()):
        req.partitions.add(topic=tp.topic, partition=tp.partition, offset=offset)
    resp = await GroupCoordinatorClient(cluster, group_id).call("OffsetCommit", req, timeout_s)
    err = error_from_proto(resp.error, f"setting offsets of group {group_id!r}")
    if err is not None:
        raise err
