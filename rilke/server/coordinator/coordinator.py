"""The group coordinator of one ``__consumer_offsets`` partition, as a sans-I/O state machine.

It reads no clock and does no I/O: every call takes ``now_ms`` and what it needs to know about
topics (partition counts, log end offsets) as arguments, and answers with a :class:`Reply`: the
response or a specific error, plus the records to append to its offsets partition and events to
log. The caller (the broker's Group service) owns the partition, the timers and the sockets:

1. On becoming leader of the partition: create a coordinator, ``replay`` every record of the
   partition in offset order, then ``finish_loading(now_ms)``. Calls before that raise
   CoordinatorLoadInProgressError.
2. For every request: call the method, append ``reply.output.records`` to the partition (one
   batch, acks=all) and only then send the answer. If the append fails, drop the coordinator
   and load it again: its memory may be ahead of its log.
3. Call ``tick(now_ms, topics)`` at ``next_deadline_ms()`` (or periodically): it removes members
   whose session, poll interval or revocation time ran out, and expires offsets.

Not thread-safe: the caller serialises calls (one asyncio task or a lock).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from rilke.errors import (
    CoordinatorLoadInProgressError,
    GroupIdNotFoundError,
    InvalidCommitOffsetError,
    InvalidGroupIdError,
    InvalidRequestError,
    NonEmptyGroupError,
    RilkeError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)

from . import codec
from .classic import ClassicGroups, InconsistentGroupProtocolError
from .classic_describe import describe_classic
from .group import Group
from .types import (
    CoordinatorConfig,
    Event,
    EventKind,
    GroupDescription,
    GroupListing,
    GroupState,
    HeartbeatRequest,
    HeartbeatResponse,
    OffsetAndMetadata,
    OffsetCommitRequest,
    Output,
    PartitionError,
    Record,
    TopicPartition,
)

T = TypeVar("T")

MAX_GROUP_ID_BYTES = 255
MAX_OFFSET_METADATA_BYTES = 4096  # offset.metadata.max.bytes

# (topic, partition) -> the partition's log end offset, or None if it does not exist.
LogEndLookup = Callable[[TopicPartition], "int | None"]


@dataclass
class Reply(Generic[T]):
    """A call's answer: ``response`` or ``error`` (a RilkeError to send back), and ``output``
    (records to append before answering, events to log), which may be non-empty either way."""

    response: T | None = None
    error: RilkeError | None = None
    output: Output = field(default_factory=Output)


@dataclass(frozen=True)
class OffsetCommitResult:
    committed: dict[TopicPartition, OffsetAndMetadata]
    # Per-partition refusals; when this is non-empty nothing was committed.
    errors: tuple[PartitionError, ...] = ()


def _counter_ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"member-{next(counter)}"


def validate_group_id(group_id: str) -> None:
    if not group_id:
        raise InvalidGroupIdError("the group id is empty")
    if len(group_id.encode("utf-8")) > MAX_GROUP_ID_BYTES:
        raise InvalidGroupIdError(f"the group id is longer than {MAX_GROUP_ID_BYTES} bytes")


class GroupCoordinator:
    """Every group whose id maps to one ``__consumer_offsets`` partition.

    ``member_id_factory`` makes ids for joining members that bring none; the broker passes a
    UUID-based one, tests a counter (the default).
    """

    def __init__(
        self,
        config: CoordinatorConfig | None = None,
        *,
        partition: int = 0,
        member_id_factory: Callable[[], str] | None = None,
    ) -> None:
        self.config = config or CoordinatorConfig()
        self.partition = partition
        self._new_member_id = member_id_factory or _counter_ids()
        self.groups: dict[str, Group] = {}
        self.loaded = False
        # Groups of Kafka's classic protocol (JoinGroup/SyncGroup), beside Rilke's own.
        self.classic = ClassicGroups(self.config, self._new_member_id, self._member_count)

    def _member_count(self, group_id: str) -> int:
        g = self._live_group(group_id)
        return 0 if g is None else len(g.members)

    # --- loading ---------------------------------------------------------------------------

    def replay(self, key: bytes, value: bytes | None) -> None:
        """Apply one record of the offsets partition (in offset order). Raises
        CorruptRecordError for a record it cannot read; the caller decides whether to skip."""
        parsed = codec.decode_key(key)
        gid = parsed.group_id
        if isinstance(parsed, codec.GroupKey):
            if value is None:
                self.groups.pop(gid, None)
                return
            snap = codec.decode_group_value(value)
            group = self.groups.get(gid) or self._new_group(gid)
            group.restore(snap)
            return
        if value is None:
            existing = self.groups.get(gid)
            if existing is not None:
                existing.offsets.pop(parsed.tp, None)
            return
        om = codec.decode_offset_value(value)
        group = self.groups.get(gid) or self._new_group(gid)
        group.offsets[parsed.tp] = om

    def finish_loading(self, now_ms: int) -> None:
        """Loading is over: start every member's timers at ``now_ms`` and take requests."""
        for g in self.groups.values():
            g.start_timers(now_ms)
            if not g.members and g.empty_since_ms is None:
                g.empty_since_ms = now_ms
        self.loaded = True

    def _new_group(self, group_id: str) -> Group:
        g = Group(group_id, self.config)
        self.groups[group_id] = g
        return g

    def _check_loaded(self) -> None:
        if not self.loaded:
            raise CoordinatorLoadInProgressError(
                f"coordinator of {codec.OFFSETS_TOPIC}-{self.partition} is loading"
            )

    def _live_group(self, group_id: str) -> Group | None:
        g = self.groups.get(group_id)
        return None if g is None or g.dead else g

    # --- membership ------------------------------------------------------------------------

    def heartbeat(
        self, req: HeartbeatRequest, now_ms: int, topics: Mapping[str, int]
    ) -> Reply[HeartbeatResponse]:
        """A ConsumerGroupHeartbeat (join, heartbeat, leave). ``topics`` maps every topic
        name to its partition count (for subscriptions and regexes)."""
        reply: Reply[HeartbeatResponse] = Reply()
        try:
            self._check_loaded()
            validate_group_id(req.group_id)
            if self.classic.has_members(req.group_id):
                raise InconsistentGroupProtocolError(
                    f"group {req.group_id!r} has members of Kafka's classic protocol "
                    "(JoinGroup); a Rilke consumer cannot join it"
                )
            g = self._live_group(req.group_id)
            created = g is None
            if g is None:
                if req.member_epoch != 0:
                    raise UnknownMemberIdError(
                        f"group {req.group_id!r} does not exist: join with epoch 0"
                    )
                g = Group(req.group_id, self.config)
            resp = g.heartbeat(req, now_ms, topics, self._new_member_id, reply.output)
            if created:
                self.groups[req.group_id] = g
            reply.response = resp
        except RilkeError as exc:
            reply.error = exc
        return reply

    # --- offsets ---------------------------------------------------------------------------

    def commit_offsets(
        self, req: OffsetCommitRequest, now_ms: int, log_end_offset: LogEndLookup
    ) -> Reply[OffsetCommitResult]:
        """Commit offsets, all or nothing.

        Group-level refusals come back as ``reply.error`` (unknown member, stale or fenced
        epoch, a commit for partitions the member does not hold, an admin commit while the
        group has members). Partition-level ones (unknown partition, a negative offset, an
        offset past the log end, metadata too large) come back in the result's ``errors``,
        and then nothing is committed. An admin commit (empty member id) creates the group.
        """
        reply: Reply[OffsetCommitResult] = Reply()
        try:
            self._check_loaded()
            validate_group_id(req.group_id)
            g = self._live_group(req.group_id)
            tps = [TopicPartition(p.topic, p.partition) for p in req.partitions]
            if len(set(tps)) != len(tps):
                raise InvalidRequestError("a partition appears twice in the commit")
            if req.member_id:
                if g is None:
                    raise UnknownMemberIdError(
                        f"group {req.group_id!r} has no member {req.member_id!r}"
                    )
                g.check_member_commit(req.member_id, req.member_epoch)
            elif g is not None and g.members:
                raise NonEmptyGroupError(
                    f"group {req.group_id!r} has {len(g.members)} live member(s): stop them "
                    "before setting its offsets"
                )
            errors: list[PartitionError] = []
            for p in req.partitions:
                err = self._check_commit_partition(
                    p.topic, p.partition, p.offset, p.metadata, log_end_offset
                )
                if err is not None:
                    errors.append(PartitionError(p.topic, p.partition, err))
            if errors:
                reply.response = OffsetCommitResult({}, tuple(errors))
                return reply
            if req.member_id:
                assert g is not None
                g.check_member_holds(req.member_id, tps)
            if g is None:
                g = self._new_group(req.group_id)
                g.empty_since_ms = now_ms
            committed: dict[TopicPartition, OffsetAndMetadata] = {}
            for p in req.partitions:
                tp = TopicPartition(p.topic, p.partition)
                om = OffsetAndMetadata(p.offset, p.leader_epoch, p.metadata, now_ms)
                g.offsets[tp] = om
                committed[tp] = om
                reply.output.records.append(
                    Record(codec.offset_key(g.group_id, tp), codec.offset_value(om))
                )
            g.maybe_write_snapshot(reply.output)
            reply.response = OffsetCommitResult(committed)
        except RilkeError as exc:
            reply.error = exc
        return reply

    def admin_commit_offsets(
        self, req: OffsetCommitRequest, now_ms: int, log_end_offset: LogEndLookup
    ) -> Reply[OffsetCommitResult]:
        """:meth:`commit_offsets` for an operator (no member: `rilke group reset-offsets`),
        refused with NonEmptyGroupError while the group has live members of either protocol
        (a classic member's own commits come in as commits of no member too, through the
        Kafka listener, after ``classic.check_commit``: those call commit_offsets)."""
        if self.classic.has_members(req.group_id):
            return Reply(
                error=NonEmptyGroupError(
                    f"group {req.group_id!r} has {self._classic_members(req.group_id)} live "
                    "member(s) of Kafka's classic protocol: stop them before setting its offsets"
                )
            )
        return self.commit_offsets(req, now_ms, log_end_offset)

    @staticmethod
    def _check_commit_partition(
        topic: str, partition: int, offset: int, metadata: str, log_end_offset: LogEndLookup
    ) -> RilkeError | None:
        end = log_end_offset(TopicPartition(topic, partition))
        if end is None:
            return UnknownTopicOrPartitionError(f"no partition {topic}-{partition}")
        if offset < 0:
            return InvalidCommitOffsetError(f"{topic}-{partition}: offset {offset} is negative")
        if offset > end:
            return InvalidCommitOffsetError(
                f"{topic}-{partition}: offset {offset} is past the log end offset {end}"
            )
        if len(metadata.encode("utf-8")) > MAX_OFFSET_METADATA_BYTES:
            return InvalidCommitOffsetError(
                f"{topic}-{partition}: metadata longer than {MAX_OFFSET_METADATA_BYTES} bytes"
            )
        return None

    def fetch_offsets(
        self, group_id: str, partitions: Iterable[TopicPartition] | None = None
    ) -> Reply[dict[TopicPartition, OffsetAndMetadata | None]]:
        """Committed offsets of ``partitions`` (None for those with none), or of every
        partition the group committed. An unknown group has no offsets (not an error)."""
        reply: Reply[dict[TopicPartition, OffsetAndMetadata | None]] = Reply()
        try:
            self._check_loaded()
            validate_group_id(group_id)
            g = self._live_group(group_id)
            offsets = g.offsets if g is not None else {}
            if partitions is None:
                reply.response = dict(sorted(offsets.items()))
            else:
                reply.response = {tp: offsets.get(tp) for tp in partitions}
        except RilkeError as exc:
            reply.error = exc
        return reply

    # --- admin -----------------------------------------------------------------------------

    def _classic_members(self, group_id: str) -> int:
        classic = self.classic.describe(group_id)
        return 0 if classic is None else len(classic.members)

    def list_groups(self) -> list[GroupListing]:
        """Every group: Rilke's own, and classic ones (by their live members, or by the
        offsets they committed)."""
        self._check_loaded()
        listings = {
            g.group_id: GroupListing(g.group_id, g.state, len(g.members))
            for g in self.groups.values()
            if not g.dead
        }
        for gid, classic in self.classic.groups.items():
            if classic.members:
                listings[gid] = GroupListing(
                    gid, describe_classic(classic, {}).state, len(classic.members)
                )
        return [listings[gid] for gid in sorted(listings)]

    def describe_group(self, group_id: str) -> GroupDescription:
        """A group's state, members and committed offsets; a classic group with live members
        is described from its classic state (members, their subscriptions and assignments)
        with the offsets it committed. Raises GroupIdNotFoundError for a group this
        coordinator does not know."""
        self._check_loaded()
        g = self._live_group(group_id)
        classic = self.classic.describe(group_id)
        if classic is not None and classic.members:
            return describe_classic(classic, g.offsets if g is not None else {})
        if g is None:
            raise GroupIdNotFoundError(f"no group {group_id!r}")
        return g.describe()

    def delete_groups(self, group_ids: Iterable[str]) -> Reply[dict[str, RilkeError | None]]:
        """Delete empty groups with their offsets; per group: None, GroupIdNotFoundError or
        NonEmptyGroupError (that group is left as it was)."""
        reply: Reply[dict[str, RilkeError | None]] = Reply(response={})
        try:
            self._check_loaded()
        except RilkeError as exc:
            reply.error = exc
            return reply
        results: dict[str, RilkeError | None] = {}
        for gid in group_ids:
            g = self._live_group(gid)
            if self.classic.has_members(gid):
                results[gid] = NonEmptyGroupError(
                    f"group {gid!r} has {self._classic_members(gid)} live member(s) of Kafka's "
                    "classic protocol"
                )
                continue
            if g is None:
                results[gid] = GroupIdNotFoundError(f"no group {gid!r}")
                continue
            if g.members:
                results[gid] = NonEmptyGroupError(
                    f"group {gid!r} has {len(g.members)} live member(s)"
                )
                continue
            n = len(g.offsets)
            g.delete(reply.output)
            del self.groups[gid]
            reply.output.events.append(
                Event(EventKind.GROUP_DELETED, gid, f"group {gid} deleted with {n} offset(s)")
            )
            results[gid] = None
        reply.response = results
        return reply

    # --- timers ----------------------------------------------------------------------------

    def tick(self, now_ms: int, topics: Mapping[str, int]) -> Output:
        """Expire members (session, poll interval, revocation deadline), notice changed topic
        metadata, expire offsets, and forget empty groups that have nothing left."""
        out = Output()
        if not self.loaded:
            return out
        for gid in sorted(self.groups):
            g = self.groups[gid]
            g.expire_members(now_ms, topics, out)
            g.maybe_refresh_metadata(topics, out)
            g.expire_offsets(now_ms, out)
            if (
                not g.members
                and not g.offsets
                and g.empty_since_ms is not None
                and now_ms >= g.empty_since_ms + self.config.offsets_retention_ms
            ):
                g.delete(out)
                del self.groups[gid]
                out.events.append(
                    Event(EventKind.GROUP_DELETED, gid, f"group {gid} expired: empty, no offsets")
                )
                continue
            g.maybe_write_snapshot(out)
        return out

    def next_deadline_ms(self) -> int | None:
        """The earliest time at which ``tick`` has something to do (None: nothing pending)."""
        best: int | None = None
        for g in self.groups.values():
            cands = [g.next_member_deadline_ms(), g.next_offset_deadline_ms()]
            if not g.members and not g.offsets and g.empty_since_ms is not None:
                cands.append(g.empty_since_ms + self.config.offsets_retention_ms)
            for d in cands:
                if d is not None and (best is None or d < best):
                    best = d
        return best

    def group_state(self, group_id: str) -> GroupState:
        g = self._live_group(group_id)
        return GroupState.DEAD if g is None else g.state
