"""One consumer group: members, epochs, target assignment, reconciliation, committed offsets.

The reconciliation follows Kafka's KIP-848. The group epoch rises whenever membership,
subscriptions or the subscribed topics' partitions change; the target assignment is then
recomputed at once by the group's assignor (so the target assignment epoch equals the group
epoch). Each member moves towards its target on its own heartbeats:

* partitions it holds that are no longer in its target are revoked first: the answer leaves
  them out, the member commits and stops consuming them, and acknowledges by reporting
  ``owned_partitions`` without them. Its epoch stays the same until then;
* then its epoch becomes the target epoch and it receives the partitions of its target that no
  other member holds (assigned or pending revocation); partitions still held by others are
  "unreleased" and arrive on a later heartbeat, once their old owner let go of them.

Partitions that stay with a member are never taken away from it in between, so it keeps
consuming them through a rebalance.

The invariant, checked wherever it changes (``_set_partitions``): every partition is held by at
most one member, where "held" means in its ``assigned`` or ``pending_revocation`` set. ``owner``
is the index of that relation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rilke.errors import (
    FencedInstanceIdError,
    FencedMemberEpochError,
    GroupMaxSizeReachedError,
    IllegalGenerationError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    StaleMemberEpochError,
    UnknownMemberIdError,
)

from . import codec
from .assignors import AssignmentMember, get_assignor
from .types import (
    EMPTY_ASSIGNMENT,
    JOIN_EPOCH,
    LEAVE_EPOCH,
    STATIC_LEAVE_EPOCH,
    Assignment,
    CoordinatorConfig,
    Event,
    EventKind,
    GroupDescription,
    GroupState,
    HeartbeatRequest,
    HeartbeatResponse,
    MemberDescription,
    MemberState,
    OffsetAndMetadata,
    Output,
    Record,
    TopicPartition,
)


@dataclass
class Member:
    """A member as the coordinator sees it.

    ``assigned`` is what it may consume now; ``pending_revocation`` what it was told to give
    up and has not yet acknowledged. The two never intersect. ``member_epoch`` equals the
    group's target assignment epoch once the member has no revocations pending.
    """

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    subscribed_topics: tuple[str, ...]
    subscribed_regex: str | None
    assignor: str | None
    rebalance_timeout_ms: int
    session_timeout_ms: int
    max_poll_interval_ms: int
    member_epoch: int = JOIN_EPOCH
    previous_member_epoch: int = LEAVE_EPOCH
    state: MemberState = MemberState.STABLE
    assigned: Assignment = EMPTY_ASSIGNMENT
    pending_revocation: Assignment = EMPTY_ASSIGNMENT
    left_static: bool = False
    # Volatile: not written to the log; restarted when the coordinator loads.
    owned_reported: Assignment = EMPTY_ASSIGNMENT
    last_heartbeat_ms: int = 0
    last_poll_ms: int = 0
    revocation_deadline_ms: int | None = None
    _regex: re.Pattern[str] | None = field(default=None, repr=False)

    def regex(self) -> re.Pattern[str] | None:
        if self.subscribed_regex and self._regex is None:
            self._regex = re.compile(self.subscribed_regex)
        return self._regex

    def topics(self, all_topics: Mapping[str, int]) -> frozenset[str]:
        """The topics this member subscribes to: its names plus those its regex matches
        (internal topics, starting with ``__``, only by name)."""
        names = set(self.subscribed_topics)
        rx = self.regex()
        if rx is not None:
            names.update(t for t in all_topics if not t.startswith("__") and rx.fullmatch(t))
        return frozenset(names)

    def session_deadline_ms(self) -> int:
        return self.last_heartbeat_ms + self.session_timeout_ms

    def poll_deadline_ms(self) -> int | None:
        return None if self.left_static else self.last_poll_ms + self.max_poll_interval_ms

    def snapshot(self, target: Assignment) -> dict[str, Any]:
        return {
            "id": self.member_id,
            "instance_id": self.instance_id,
            "client_id": self.client_id,
            "client_host": self.client_host,
            "topics": list(self.subscribed_topics),
            "regex": self.subscribed_regex,
            "assignor": self.assignor,
            "rebalance_timeout_ms": self.rebalance_timeout_ms,
            "session_timeout_ms": self.session_timeout_ms,
            "max_poll_interval_ms": self.max_poll_interval_ms,
            "epoch": self.member_epoch,
            "previous_epoch": self.previous_member_epoch,
            "state": self.state.value,
            "assigned": _tps_to_json(self.assigned),
            "pending": _tps_to_json(self.pending_revocation),
            "target": _tps_to_json(target),
            "left_static": self.left_static,
        }


def _tps_to_json(tps: Assignment) -> list[list[Any]]:
    return [[tp.topic, tp.partition] for tp in sorted(tps)]


def _tps_from_json(raw: Any) -> Assignment:
    return frozenset(TopicPartition(str(t), int(p)) for t, p in raw)


def validate_regex(pattern: str) -> None:
    try:
        re.compile(pattern)
    except re.error as exc:
        raise InvalidRequestError(f"invalid subscription regex {pattern!r}: {exc}") from None


class Group:
    """A consumer group. Methods validate first and raise a GroupError before changing
    anything; after a change they append what must be logged and written to ``out``."""

    def __init__(self, group_id: str, config: CoordinatorConfig) -> None:
        self.group_id = group_id
        self.config = config
        self.group_epoch = 0
        # The epoch of the target assignment; == group_epoch after every change.
        self.assignment_epoch = 0
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # instance id -> member id
        self.target: dict[str, Assignment] = {}
        # partition -> the member holding it (assigned or pending revocation); see module doc.
        self.owner: dict[TopicPartition, str] = {}
        self.offsets: dict[TopicPartition, OffsetAndMetadata] = {}
        # Partition counts of the subscribed topics when the target was last computed.
        self.subscribed_partitions: dict[str, int] = {}
        self.empty_since_ms: int | None = None
        self.dead = False
        self._written_snapshot: dict[str, Any] | None = None

    # --- views --------------------------------------------------------------------------

    @property
    def state(self) -> GroupState:
        if self.dead:
            return GroupState.DEAD
        if not self.members:
            return GroupState.EMPTY
        if self.group_epoch > self.assignment_epoch:
            return GroupState.ASSIGNING
        for m in self.members.values():
            if m.state is not MemberState.STABLE or m.member_epoch != self.assignment_epoch:
                return GroupState.RECONCILING
        return GroupState.STABLE

    def assignor_name(self) -> str:
        """The assignor most members ask for (ties: the configured default, then by name)."""
        votes = Counter(m.assignor or self.config.default_assignor for m in self.members.values())
        if not votes:
            return self.config.default_assignor
        best = max(votes.values())
        tied = sorted(name for name, n in votes.items() if n == best)
        return self.config.default_assignor if self.config.default_assignor in tied else tied[0]

    def describe(self) -> GroupDescription:
        members = tuple(
            MemberDescription(
                member_id=m.member_id,
                instance_id=m.instance_id,
                client_id=m.client_id,
                client_host=m.client_host,
                member_epoch=m.member_epoch,
                state=m.state,
                left_static=m.left_static,
                subscribed_topics=m.subscribed_topics,
                subscribed_regex=m.subscribed_regex,
                assignment=m.assigned,
                pending_revocation=m.pending_revocation,
                target_assignment=self.target.get(m.member_id, EMPTY_ASSIGNMENT),
                owned_partitions=m.owned_reported,
            )
            for m in sorted(self.members.values(), key=lambda m: m.member_id)
        )
        return GroupDescription(
            group_id=self.group_id,
            state=self.state,
            group_epoch=self.group_epoch,
            assignment_epoch=self.assignment_epoch,
            assignor=self.assignor_name(),
            members=members,
            offsets=dict(sorted(self.offsets.items())),
        )

    def subscribed_topic_names(self, all_topics: Mapping[str, int]) -> frozenset[str]:
        names: set[str] = set()
        for m in self.members.values():
            names |= m.topics(all_topics)
        return frozenset(names)

    def check_invariants(self) -> None:
        """Assert the ownership invariant (tests call this after every step)."""
        seen: dict[TopicPartition, str] = {}
        for m in self.members.values():
            assert not (m.assigned & m.pending_revocation), m.member_id
            for tp in m.assigned | m.pending_revocation:
                assert tp not in seen, f"{tp} held by {seen[tp]} and {m.member_id}"
                seen[tp] = m.member_id
        assert seen == self.owner, (seen, self.owner)
        for iid, mid in self.static_members.items():
            assert self.members[mid].instance_id == iid
        assert set(self.target) <= set(self.members)
        assert self.assignment_epoch == self.group_epoch

    # --- snapshots: the group metadata record -------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "epoch": self.group_epoch,
            "assignment_epoch": self.assignment_epoch,
            "empty_since_ms": self.empty_since_ms,
            "subscribed_partitions": dict(sorted(self.subscribed_partitions.items())),
            "members": [
                m.snapshot(self.target.get(m.member_id, EMPTY_ASSIGNMENT))
                for m in sorted(self.members.values(), key=lambda m: m.member_id)
            ],
        }

    def maybe_write_snapshot(self, out: Output) -> bool:
        """Append a group metadata record to ``out`` if the durable state changed since the
        last one; says whether it did."""
        if self.dead:
            return False
        snap = self.snapshot()
        if snap == self._written_snapshot:
            return False
        self._written_snapshot = snap
        out.records.append(Record(codec.group_key(self.group_id), codec.group_value(snap)))
        return True

    def restore(self, snap: Mapping[str, Any]) -> None:
        """Replace the membership state with a replayed snapshot (offsets are untouched)."""
        self.group_epoch = int(snap["epoch"])
        self.assignment_epoch = int(snap["assignment_epoch"])
        raw_empty = snap.get("empty_since_ms")
        self.empty_since_ms = None if raw_empty is None else int(raw_empty)
        self.subscribed_partitions = {
            str(t): int(n) for t, n in snap.get("subscribed_partitions", {}).items()
        }
        self.members.clear()
        self.static_members.clear()
        self.target.clear()
        self.owner.clear()
        for raw in snap["members"]:
            m = Member(
                member_id=str(raw["id"]),
                instance_id=raw.get("instance_id"),
                client_id=str(raw.get("client_id", "")),
                client_host=str(raw.get("client_host", "")),
                subscribed_topics=tuple(raw.get("topics", ())),
                subscribed_regex=raw.get("regex"),
                assignor=raw.get("assignor"),
                rebalance_timeout_ms=int(raw["rebalance_timeout_ms"]),
                session_timeout_ms=int(raw["session_timeout_ms"]),
                max_poll_interval_ms=int(raw["max_poll_interval_ms"]),
                member_epoch=int(raw["epoch"]),
                previous_member_epoch=int(raw["previous_epoch"]),
                state=MemberState(raw["state"]),
                left_static=bool(raw.get("left_static", False)),
            )
            self.members[m.member_id] = m
            if m.instance_id is not None:
                self.static_members[m.instance_id] = m.member_id
            self.target[m.member_id] = _tps_from_json(raw.get("target", []))
            self._set_partitions(
                m, _tps_from_json(raw.get("assigned", [])), _tps_from_json(raw.get("pending", []))
            )
        self.dead = False
        self._written_snapshot = self.snapshot()

    def start_timers(self, now_ms: int) -> None:
        """After loading: every member's session, poll and revocation timers start now."""
        for m in self.members.values():
            m.last_heartbeat_ms = now_ms
            m.last_poll_ms = now_ms
            if m.state is MemberState.UNREVOKED_PARTITIONS:
                m.revocation_deadline_ms = now_ms + m.rebalance_timeout_ms

    # --- ownership ------------------------------------------------------------------------

    def _set_partitions(self, m: Member, assigned: Assignment, pending: Assignment) -> None:
        """Give ``m`` exactly these partitions; the single place ``owner`` changes."""
        assert not (assigned & pending)
        new = assigned | pending
        for tp in new:
            holder = self.owner.get(tp)
            assert holder is None or holder == m.member_id, (
                f"{tp} would be held by {holder} and {m.member_id}"
            )
        for tp in (m.assigned | m.pending_revocation) - new:
            del self.owner[tp]
        for tp in new:
            self.owner[tp] = m.member_id
        m.assigned = assigned
        m.pending_revocation = pending

    # --- epochs and the target assignment -----------------------------------------------

    def _bump_epoch(self, all_topics: Mapping[str, int], reason: str, out: Output) -> None:
        """Raise the group epoch and recompute the target assignment for it."""
        self.group_epoch += 1
        subscribed = self.subscribed_topic_names(all_topics)
        self.subscribed_partitions = {
            t: all_topics[t] for t in sorted(subscribed) if all_topics.get(t, 0) > 0
        }
        members = {
            m.member_id: AssignmentMember(m.member_id, m.instance_id, m.topics(all_topics))
            for m in self.members.values()
        }
        assign = get_assignor(self.assignor_name())
        self.target = dict(assign(members, self.subscribed_partitions, self.target))
        self.assignment_epoch = self.group_epoch
        out.events.append(
            Event(
                EventKind.GROUP_EPOCH_BUMPED,
                self.group_id,
                f"group {self.group_id}: epoch {self.group_epoch} ({reason}); "
                f"{len(self.members)} members, "
                f"{sum(self.subscribed_partitions.values())} partitions",
            )
        )

    def maybe_refresh_metadata(self, all_topics: Mapping[str, int], out: Output) -> bool:
        """Bump the epoch if the subscribed topics or their partition counts changed (a topic
        created that a regex matches, partitions added, a topic deleted)."""
        if not self.members:
            return False
        subscribed = self.subscribed_topic_names(all_topics)
        now = {t: all_topics[t] for t in sorted(subscribed) if all_topics.get(t, 0) > 0}
        if now == self.subscribed_partitions:
            return False
        self._bump_epoch(all_topics, "subscribed topics changed", out)
        return True

    # --- reconciliation -------------------------------------------------------------------

    def _reconcile(self, m: Member, owned: Assignment | None, now_ms: int) -> None:
        """Move ``m`` one step towards its target assignment (KIP-848's member states)."""
        if m.state is MemberState.UNREVOKED_PARTITIONS:
            if owned is None or owned & m.pending_revocation:
                return  # still consuming what it must give up
            # Acknowledged: the revoked partitions are free for their new owners.
            self._set_partitions(m, m.assigned, EMPTY_ASSIGNMENT)
            m.revocation_deadline_ms = None
            m.state = MemberState.STABLE
        if m.state is MemberState.STABLE and m.member_epoch == self.assignment_epoch:
            return
        target = self.target.get(m.member_id, EMPTY_ASSIGNMENT)
        revoke = m.assigned - target
        if revoke:
            self._set_partitions(m, m.assigned & target, revoke)
            m.state = MemberState.UNREVOKED_PARTITIONS
            m.revocation_deadline_ms = now_ms + m.rebalance_timeout_ms
            return
        wanted = target - m.assigned
        free = frozenset(tp for tp in wanted if tp not in self.owner)
        self._set_partitions(m, m.assigned | free, EMPTY_ASSIGNMENT)
        if m.member_epoch != self.assignment_epoch:
            m.previous_member_epoch = m.member_epoch
            m.member_epoch = self.assignment_epoch
        m.state = MemberState.UNRELEASED_PARTITIONS if wanted - free else MemberState.STABLE

    # --- membership -----------------------------------------------------------------------

    def _remove_member(self, m: Member) -> None:
        self._set_partitions(m, EMPTY_ASSIGNMENT, EMPTY_ASSIGNMENT)
        del self.members[m.member_id]
        self.target.pop(m.member_id, None)
        if m.instance_id is not None and self.static_members.get(m.instance_id) == m.member_id:
            del self.static_members[m.instance_id]

    def remove_members(
        self,
        removed: list[tuple[Member, str]],
        kind: EventKind,
        all_topics: Mapping[str, int],
        now_ms: int,
        out: Output,
    ) -> None:
        """Remove members (with a reason each), then bump the epoch once."""
        if not removed:
            return
        for m, reason in removed:
            self._remove_member(m)
            out.events.append(
                Event(kind, self.group_id, f"group {self.group_id}: member {m.member_id} {reason}")
            )
        if not self.members:
            self.empty_since_ms = now_ms
        self._bump_epoch(all_topics, f"{len(removed)} member(s) removed", out)

    def _validate_settings(self, req: HeartbeatRequest) -> None:
        cfg = self.config
        if req.session_timeout_ms is not None and not (
            cfg.min_session_timeout_ms <= req.session_timeout_ms <= cfg.max_session_timeout_ms
        ):
            raise InvalidSessionTimeoutError(
                f"session_timeout_ms {req.session_timeout_ms} is outside the broker's range "
                f"[{cfg.min_session_timeout_ms}, {cfg.max_session_timeout_ms}]"
            )
        for name in ("rebalance_timeout_ms", "max_poll_interval_ms"):
            value = getattr(req, name)
            if value is not None and value <= 0:
                raise InvalidRequestError(f"{name} must be positive, not {value}")
        if req.poll_age_ms < 0:
            raise InvalidRequestError(f"poll_age_ms must not be negative, not {req.poll_age_ms}")
        if req.assignor:
            get_assignor(req.assignor)
        if req.subscribed_regex:
            validate_regex(req.subscribed_regex)
        if req.subscribed_topics is not None:
            for t in req.subscribed_topics:
                if not t:
                    raise InvalidRequestError("empty topic name in the subscription")

    def heartbeat(
        self,
        req: HeartbeatRequest,
        now_ms: int,
        all_topics: Mapping[str, int],
        new_member_id: Callable[[], str],
        out: Output,
    ) -> HeartbeatResponse:
        """Handle a join, heartbeat or leave; see HeartbeatRequest. Raises a GroupError (and
        changes nothing) for an unknown member, a fenced epoch, or bad settings."""
        self._validate_settings(req)
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            return self._leave(req, now_ms, all_topics, out)
        if req.member_epoch == JOIN_EPOCH:
            m = self._join(req, now_ms, all_topics, new_member_id, out)
        else:
            m = self._known_member(req)
            self._apply_settings(m, req, all_topics, out)
        m.last_heartbeat_ms = now_ms
        m.last_poll_ms = max(m.last_poll_ms, now_ms - req.poll_age_ms)
        if req.owned_partitions is not None:
            m.owned_reported = req.owned_partitions
        self.maybe_refresh_metadata(all_topics, out)
        self._reconcile(m, req.owned_partitions, now_ms)
        self.maybe_write_snapshot(out)
        interval = min(self.config.heartbeat_interval_ms, max(1, m.session_timeout_ms // 3))
        if m.state is MemberState.UNRELEASED_PARTITIONS:
            interval = min(interval, self.config.unreleased_heartbeat_interval_ms)
        return HeartbeatResponse(m.member_id, m.member_epoch, interval, m.assigned)

    def _known_member(self, req: HeartbeatRequest) -> Member:
        m = self.members.get(req.member_id)
        if m is None:
            if req.instance_id and req.instance_id in self.static_members:
                raise FencedInstanceIdError(
                    f"instance id {req.instance_id!r} now belongs to another member of group "
                    f"{self.group_id!r}"
                )
            raise UnknownMemberIdError(
                f"member {req.member_id!r} is not in group {self.group_id!r}: rejoin with epoch 0"
            )
        if m.left_static:
            raise FencedMemberEpochError(
                f"member {m.member_id!r} left the group: rejoin with epoch 0"
            )
        if req.member_epoch == m.member_epoch:
            return m
        # A lost answer: the member did not hear of its new epoch. Accept the previous epoch
        # if the member owns nothing it should not.
        if (
            req.member_epoch == m.previous_member_epoch
            and req.owned_partitions is not None
            and req.owned_partitions <= m.assigned
        ):
            return m
        raise FencedMemberEpochError(
            f"member {m.member_id!r} sent epoch {req.member_epoch}, the coordinator holds "
            f"{m.member_epoch}: drop all partitions and rejoin with epoch 0"
        )

    def _apply_settings(
        self, m: Member, req: HeartbeatRequest, all_topics: Mapping[str, int], out: Output
    ) -> None:
        """Take the request's changed settings; bump the epoch if the subscription changed."""
        if req.client_id:
            m.client_id = req.client_id
        if req.client_host:
            m.client_host = req.client_host
        if req.rebalance_timeout_ms is not None:
            m.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.session_timeout_ms is not None:
            m.session_timeout_ms = req.session_timeout_ms
        if req.max_poll_interval_ms is not None:
            m.max_poll_interval_ms = req.max_poll_interval_ms
        changed = False
        if req.subscribed_topics is not None:
            topics = tuple(sorted(set(req.subscribed_topics)))
            changed |= topics != m.subscribed_topics
            m.subscribed_topics = topics
        if req.subscribed_regex is not None:
            regex = req.subscribed_regex or None
            changed |= regex != m.subscribed_regex
            m.subscribed_regex = regex
            m._regex = None
        if req.assignor is not None:
            assignor = req.assignor or None
            changed |= assignor != m.assignor
            m.assignor = assignor
        if changed:
            self._bump_epoch(all_topics, f"member {m.member_id} changed its subscription", out)

    def _join(
        self,
        req: HeartbeatRequest,
        now_ms: int,
        all_topics: Mapping[str, int],
        new_member_id: Callable[[], str],
        out: Output,
    ) -> Member:
        if not req.subscribed_topics and not req.subscribed_regex:
            raise InvalidRequestError("a join must subscribe to topic names or a regex")
        cfg = self.config
        replaced: Member | None = None
        existing: Member | None = None
        if req.instance_id is not None and req.instance_id in self.static_members:
            # A static member coming back (after a -2 leave, or a restart that the session
            # timeout has not noticed yet) takes over its predecessor's place and partitions
            # without a rebalance; the predecessor is fenced.
            replaced = self.members[self.static_members[req.instance_id]]
        elif req.member_id:
            existing = self.members.get(req.member_id)
        if existing is None and replaced is None and len(self.members) >= cfg.max_group_size:
            raise GroupMaxSizeReachedError(
                f"group {self.group_id!r} has {len(self.members)} members, the maximum"
            )
        if existing is not None and existing.instance_id != req.instance_id:
            raise InvalidRequestError(
                f"member {existing.member_id!r} cannot change its instance id on a rejoin"
            )
        if (
            replaced is not None
            and req.member_id
            and req.member_id != replaced.member_id
            and req.member_id in self.members
        ):
            raise InvalidRequestError(f"member id {req.member_id!r} is in use by another member")
        # Validation is over: from here on, change things.
        if existing is not None:
            # A member that rejoins with epoch 0 has dropped everything it held.
            self.remove_members(
                [(existing, "rejoined")], EventKind.MEMBER_LEFT, all_topics, now_ms, out
            )
        member_id = req.member_id
        while not member_id or (
            member_id in self.members and (replaced is None or member_id != replaced.member_id)
        ):
            # Ids must be unique in the group; a factory restarted with the coordinator (a
            # counter) could repeat one, so draw again.
            member_id = new_member_id()
        assert (replaced is not None and replaced.member_id == member_id) or (
            member_id not in self.members
        ), member_id
        topics = tuple(sorted(set(req.subscribed_topics or ())))
        m = Member(
            member_id=member_id,
            instance_id=req.instance_id,
            client_id=req.client_id,
            client_host=req.client_host,
            subscribed_topics=topics,
            subscribed_regex=req.subscribed_regex or None,
            assignor=req.assignor or None,
            rebalance_timeout_ms=req.rebalance_timeout_ms or cfg.default_rebalance_timeout_ms,
            session_timeout_ms=req.session_timeout_ms or cfg.default_session_timeout_ms,
            max_poll_interval_ms=req.max_poll_interval_ms or cfg.default_max_poll_interval_ms,
            last_heartbeat_ms=now_ms,
            last_poll_ms=now_ms - req.poll_age_ms,
        )
        self.empty_since_ms = None
        if replaced is not None:
            self._replace_static(replaced, m, all_topics, out)
            return m
        self.members[member_id] = m
        if m.instance_id is not None:
            self.static_members[m.instance_id] = member_id
        out.events.append(
            Event(
                EventKind.MEMBER_JOINED,
                self.group_id,
                f"group {self.group_id}: member {member_id} joined"
                + (f" (instance {m.instance_id})" if m.instance_id else ""),
            )
        )
        self._bump_epoch(all_topics, f"member {member_id} joined", out)
        return m

    def _replace_static(
        self, old: Member, new: Member, all_topics: Mapping[str, int], out: Output
    ) -> None:
        """``new`` takes over ``old``'s epoch, target and partitions. What ``old`` was giving
        up counts as given up: the new process holds nothing."""
        target = self.target.get(old.member_id, EMPTY_ASSIGNMENT)
        assigned = old.assigned
        self._remove_member(old)
        new.member_epoch = old.member_epoch
        new.previous_member_epoch = old.previous_member_epoch
        new.state = old.state
        self.members[new.member_id] = new
        assert new.instance_id is not None
        self.static_members[new.instance_id] = new.member_id
        self.target[new.member_id] = target
        self._set_partitions(new, assigned, EMPTY_ASSIGNMENT)
        out.events.append(
            Event(
                EventKind.MEMBER_JOINED,
                self.group_id,
                f"group {self.group_id}: static instance {new.instance_id} came back as "
                f"{new.member_id} (was {old.member_id}); no rebalance",
            )
        )
        if (
            new.subscribed_topics != old.subscribed_topics
            or new.subscribed_regex != old.subscribed_regex
            or new.assignor != old.assignor
        ):
            self._bump_epoch(all_topics, f"static member {new.member_id} changed subscription", out)

    def _leave(
        self, req: HeartbeatRequest, now_ms: int, all_topics: Mapping[str, int], out: Output
    ) -> HeartbeatResponse:
        m = self.members.get(req.member_id)
        if m is None:
            raise UnknownMemberIdError(
                f"member {req.member_id!r} is not in group {self.group_id!r}"
            )
        interval = self.config.heartbeat_interval_ms
        if req.member_epoch == STATIC_LEAVE_EPOCH and m.instance_id is not None:
            # Keep its place and partitions for its session timeout; what it was giving up
            # is given up (it stopped consuming before leaving).
            self._set_partitions(m, m.assigned, EMPTY_ASSIGNMENT)
            m.left_static = True
            m.last_heartbeat_ms = now_ms
            m.revocation_deadline_ms = None
            out.events.append(
                Event(
                    EventKind.MEMBER_LEFT,
                    self.group_id,
                    f"group {self.group_id}: static member {m.member_id} (instance "
                    f"{m.instance_id}) left for now; partitions kept for "
                    f"{m.session_timeout_ms} ms",
                )
            )
            self.maybe_write_snapshot(out)
            return HeartbeatResponse(m.member_id, STATIC_LEAVE_EPOCH, interval, EMPTY_ASSIGNMENT)
        self.remove_members([(m, "left")], EventKind.MEMBER_LEFT, all_topics, now_ms, out)
        self.maybe_write_snapshot(out)
        return HeartbeatResponse(m.member_id, LEAVE_EPOCH, interval, EMPTY_ASSIGNMENT)

    # --- timers ---------------------------------------------------------------------------

    def expire_members(self, now_ms: int, all_topics: Mapping[str, int], out: Output) -> None:
        """Remove members whose session, poll interval or revocation deadline has passed."""
        removed: list[tuple[Member, str]] = []
        for m in sorted(self.members.values(), key=lambda m: m.member_id):
            if now_ms >= m.session_deadline_ms():
                what = "static leave ended" if m.left_static else "session timed out"
                removed.append((m, f"removed: {what} ({m.session_timeout_ms} ms)"))
                continue
            poll_deadline = m.poll_deadline_ms()
            if poll_deadline is not None and now_ms >= poll_deadline:
                removed.append((m, f"removed: did not poll within {m.max_poll_interval_ms} ms"))
                continue
            if m.revocation_deadline_ms is not None and now_ms >= m.revocation_deadline_ms:
                removed.append((m, f"removed: did not revoke within {m.rebalance_timeout_ms} ms"))
        self.remove_members(removed, EventKind.MEMBER_REMOVED, all_topics, now_ms, out)

    def next_member_deadline_ms(self) -> int | None:
        best: int | None = None
        for m in self.members.values():
            for d in (m.session_deadline_ms(), m.poll_deadline_ms(), m.revocation_deadline_ms):
                if d is not None and (best is None or d < best):
                    best = d
        return best

    # --- offsets --------------------------------------------------------------------------

    def check_member_commit(self, member_id: str, member_epoch: int) -> None:
        """Raise unless ``member_id`` at ``member_epoch`` may commit offsets."""
        m = self.members.get(member_id)
        if m is None or m.left_static:
            raise UnknownMemberIdError(
                f"member {member_id!r} is not in group {self.group_id!r}: rejoin"
            )
        if member_epoch < m.member_epoch:
            raise StaleMemberEpochError(
                f"commit at epoch {member_epoch}, member {member_id!r} is at {m.member_epoch}"
            )
        if member_epoch > m.member_epoch:
            raise FencedMemberEpochError(
                f"commit at epoch {member_epoch}, member {member_id!r} is at {m.member_epoch}"
            )

    def check_member_holds(self, member_id: str, tps: list[TopicPartition]) -> None:
        """Raise unless the member holds every partition of ``tps`` (assigned or being
        revoked): a member commits only what it consumes."""
        m = self.members[member_id]
        held = m.assigned | m.pending_revocation
        foreign = sorted(tp for tp in tps if tp not in held)
        if foreign:
            names = ", ".join(f"{tp.topic}-{tp.partition}" for tp in foreign[:5])
            raise IllegalGenerationError(
                f"member {member_id!r} commits partitions it does not hold: {names}"
            )

    def offset_expiry_ms(self, tp: TopicPartition, om: OffsetAndMetadata) -> int | None:
        """When the committed offset of ``tp`` expires, or None while it cannot.

        An empty group's offsets expire retention after the later of their commit and the
        group becoming empty. A group with members keeps the offsets of topics some member
        subscribes to; others expire retention after their commit (Kafka's KIP-211 rules).
        """
        retention = self.config.offsets_retention_ms
        if not self.members:
            base = max(om.commit_timestamp_ms, self.empty_since_ms or om.commit_timestamp_ms)
            return base + retention
        if tp.topic in self.subscribed_partitions or any(
            tp.topic in m.subscribed_topics for m in self.members.values()
        ):
            return None
        return om.commit_timestamp_ms + retention

    def expire_offsets(self, now_ms: int, out: Output) -> None:
        expired = sorted(
            tp
            for tp, om in self.offsets.items()
            if (d := self.offset_expiry_ms(tp, om)) is not None and now_ms >= d
        )
        if not expired:
            return
        for tp in expired:
            del self.offsets[tp]
            out.records.append(Record(codec.offset_key(self.group_id, tp), None))
        names = ", ".join(f"{tp.topic}-{tp.partition}" for tp in expired[:10])
        more = f" and {len(expired) - 10} more" if len(expired) > 10 else ""
        out.events.append(
            Event(
                EventKind.OFFSETS_EXPIRED,
                self.group_id,
                f"group {self.group_id}: {len(expired)} committed offset(s) expired after "
                f"{self.config.offsets_retention_ms} ms of retention: {names}{more}",
            )
        )

    def next_offset_deadline_ms(self) -> int | None:
        best: int | None = None
        for tp, om in self.offsets.items():
            d = self.offset_expiry_ms(tp, om)
            if d is not None and (best is None or d < best):
                best = d
        return best

    def delete(self, out: Output) -> None:
        """Tombstone every offset and the group itself. The group must be empty."""
        assert not self.members
        for tp in sorted(self.offsets):
            out.records.append(Record(codec.offset_key(self.group_id, tp), None))
        self.offsets.clear()
        out.records.append(Record(codec.group_key(self.group_id), None))
        self.dead = True
        self._written_snapshot = None
