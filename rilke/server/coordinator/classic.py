"""Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), sans-I/O.

The members of a classic group choose their assignor among themselves and the leader member
computes the assignment; the coordinator only runs the rounds. Like the rest of the coordinator
it reads no clock and does no I/O: every call takes ``now_ms``.

A JoinGroup or SyncGroup may have to wait for other members. Such a call answers ``None``
(pending), and the answer comes later in :attr:`ClassicGroups.completed`: a list of
(group id, member id, response) the caller hands to the waiting connections and then clears.
A round completes when every known member has rejoined, or at the rebalance deadline (the
longest rebalance timeout of the members) when those that did not are evicted; a SyncGroup
completes when the leader's assignments arrive. ``tick(now_ms)`` runs deadlines (rebalance,
session expiry) and must be called by ``next_deadline_ms()``.

Committed offsets of classic groups are not kept here: the caller validates a commit with
:meth:`ClassicGroups.check_commit` and stores it as an admin commit of the same
``GroupCoordinator`` (so the offsets live in ``__consumer_offsets`` beside those of Rilke's own
groups). Membership itself is not written to the log: after a coordinator reload the members
get UNKNOWN_MEMBER_ID and rejoin, which Kafka's clients do on their own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from rilke.errors import (
    GroupError,
    IllegalGenerationError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)

from .types import CoordinatorConfig


class InconsistentGroupProtocolError(GroupError):
    """The group is used by the other group protocol (classic JoinGroup vs Rilke's own
    heartbeat), or a joining member shares no assignor, or protocol type, with the group."""

    code = 67  # Rilke's code; Kafka's INCONSISTENT_GROUP_PROTOCOL is 23
    retriable = False
    description = "the group uses another group protocol or no common assignor"


class ClassicState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"


@dataclass(frozen=True)
class JoinRequest:
    group_id: str
    member_id: str  # "" for a new member: one is assigned in the same response (v2)
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: tuple[tuple[str, bytes], ...]  # (assignor name, subscription metadata)
    client_id: str = ""
    client_host: str = ""


@dataclass(frozen=True)
class JoinResponse:
    generation_id: int
    protocol_name: str
    leader: str
    member_id: str
    members: tuple[tuple[str, bytes], ...]  # every member's metadata, for the leader only


@dataclass(frozen=True)
class SyncResponse:
    assignment: bytes


@dataclass
class ClassicMember:
    member_id: str
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: tuple[tuple[str, bytes], ...]
    last_seen_ms: int
    assignment: bytes = b""
    joined: bool = False  # has rejoined in the current round

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        raise AssertionError(f"member {self.member_id} lacks protocol {protocol}")


@dataclass
class ClassicGroup:
    group_id: str
    protocol_type: str = ""
    state: ClassicState = ClassicState.EMPTY
    generation_id: int = 0
    protocol_name: str = ""
    leader: str = ""
    members: dict[str, ClassicMember] = field(default_factory=dict)
    rebalance_deadline_ms: int | None = None
    awaiting_sync: set[str] = field(default_factory=set)

    def check_invariants(self) -> None:
        assert (self.state is ClassicState.EMPTY) == (not self.members), self.state
        assert not self.leader or self.leader in self.members
        assert self.awaiting_sync <= set(self.members)


Completed = tuple[str, str, JoinResponse | SyncResponse | GroupError]


class ClassicGroups:
    """Every classic group of one coordinator. ``rilke_members(group_id)`` says how many
    members of Rilke's own protocol the group has (mixing the two is refused)."""

    def __init__(
        self,
        config: CoordinatorConfig,
        new_member_id: Callable[[], str],
        rilke_members: Callable[[str], int],
    ) -> None:
        self.config = config
        self._new_member_id = new_member_id
        self._rilke_members = rilke_members
        self.groups: dict[str, ClassicGroup] = {}
        # Answers of pending JoinGroup/SyncGroup calls; the caller delivers and clears them.
        self.completed: list[Completed] = []

    def has_members(self, group_id: str) -> bool:
        g = self.groups.get(group_id)
        return g is not None and bool(g.members)

    def describe(self, group_id: str) -> ClassicGroup | None:
        return self.groups.get(group_id)

    # --- JoinGroup -----------------------------------------------------------------------

    def join(self, req: JoinRequest, now_ms: int) -> tuple[str, JoinResponse | None]:
        """A JoinGroup: the member's id (assigned here for a new member), and the response
        when it can be given now, or None when the member waits for the round to complete
        (its answer then appears in ``completed`` under that id). Raises
        InconsistentGroupProtocolError, InvalidSessionTimeoutError, UnknownMemberIdError,
        InvalidRequestError."""
        if self._rilke_members(req.group_id):
            raise InconsistentGroupProtocolError(
                f"group {req.group_id!r} has members of Rilke's own consumer group protocol; "
                "a classic (JoinGroup) member cannot join it"
            )
        cfg = self.config
        if not cfg.min_session_timeout_ms <= req.session_timeout_ms <= cfg.max_session_timeout_ms:
            raise InvalidSessionTimeoutError(
                f"session timeout {req.session_timeout_ms} ms is outside "
                f"[{cfg.min_session_timeout_ms}, {cfg.max_session_timeout_ms}]"
            )
        if not req.protocols:
            raise InconsistentGroupProtocolError("the JoinGroup offers no protocols")
        if not req.protocol_type:
            raise InvalidRequestError("the JoinGroup has an empty protocol type")
        g = self.groups.get(req.group_id)
        if g is None:
            g = self.groups[req.group_id] = ClassicGroup(req.group_id)
        if g.members and req.protocol_type != g.protocol_type:
            raise InconsistentGroupProtocolError(
                f"group {req.group_id!r} has protocol type {g.protocol_type!r}, "
                f"not {req.protocol_type!r}"
            )
        if g.members and not self._common_protocols(g, req):
            raise InconsistentGroupProtocolError(
                f"group {req.group_id!r}: none of {[p for p, _ in req.protocols]} is supported "
                "by every member"
            )
        member = g.members.get(req.member_id) if req.member_id else None
        if req.member_id and member is None:
            raise UnknownMemberIdError(f"group {req.group_id!r} has no member {req.member_id!r}")
        if member is None:
            member = ClassicMember(
                self._new_member_id(),
                req.client_id,
                req.client_host,
                req.session_timeout_ms,
                req.rebalance_timeout_ms,
                req.protocols,
                now_ms,
            )
            g.members[member.member_id] = member
            g.protocol_type = req.protocol_type
            self._prepare_rebalance(g, now_ms)
        else:
            member.last_seen_ms = now_ms
            member.session_timeout_ms = req.session_timeout_ms
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
            member.protocols = req.protocols
            if g.state is not ClassicState.PREPARING_REBALANCE:
                # A known member rejoining asks for a new round (its subscription changed,
                # or it lost its assignment).
                self._prepare_rebalance(g, now_ms)
        member.joined = True
        return member.member_id, self._maybe_complete_join(g, member.member_id, now_ms)

    def _common_protocols(self, g: ClassicGroup, req: JoinRequest | None) -> list[str]:
        """Protocol names every member (and ``req``'s member) supports, in the leader's order
        of preference (or the first member's, or the request's)."""
        sets = [{p for p, _ in m.protocols} for m in g.members.values()]
        if req is not None:
            sets.append({p for p, _ in req.protocols})
        common = set.intersection(*sets) if sets else set()
        first = g.members.get(g.leader) or next(iter(g.members.values()), None)
        preference = first.protocols if first is not None else req.protocols if req else ()
        order = [p for p, _ in preference]
        return [p for p in order if p in common]

    def _prepare_rebalance(self, g: ClassicGroup, now_ms: int) -> None:
        if g.state is ClassicState.COMPLETING_REBALANCE:
            # Members waiting in SyncGroup learn that the round is over.
            for mid in sorted(g.awaiting_sync):
                self.completed.append(
                    (g.group_id, mid, RebalanceInProgressError(f"group {g.group_id} rebalances"))
                )
            g.awaiting_sync.clear()
        if g.state is not ClassicState.PREPARING_REBALANCE:
            for m in g.members.values():
                m.joined = False
        g.state = ClassicState.PREPARING_REBALANCE
        longest = max((m.rebalance_timeout_ms for m in g.members.values()), default=0)
        g.rebalance_deadline_ms = now_ms + longest

    def _maybe_complete_join(
        self, g: ClassicGroup, member_id: str, now_ms: int
    ) -> JoinResponse | None:
        if not all(m.joined for m in g.members.values()):
            return None
        responses = self._complete_join(g, now_ms)
        mine = responses.pop(member_id, None)
        for mid, resp in responses.items():
            self.completed.append((g.group_id, mid, resp))
        return mine

    def _complete_join(self, g: ClassicGroup, now_ms: int) -> dict[str, JoinResponse]:
        """End the round with the members that joined (the others were evicted)."""
        g.rebalance_deadline_ms = None
        if not g.members:
            g.state = ClassicState.EMPTY
            g.leader = ""
            g.generation_id += 1
            return {}
        if g.leader not in g.members:
            g.leader = next(iter(g.members))
        protocols = self._common_protocols(g, None)
        assert protocols, "members were admitted only with a protocol in common"
        g.protocol_name = protocols[0]
        g.generation_id += 1
        g.state = ClassicState.COMPLETING_REBALANCE
        g.awaiting_sync = set()
        everyone = tuple((m.member_id, m.metadata_for(g.protocol_name)) for m in g.members.values())
        out: dict[str, JoinResponse] = {}
        for m in g.members.values():
            m.last_seen_ms = now_ms
            m.assignment = b""
            out[m.member_id] = JoinResponse(
                g.generation_id,
                g.protocol_name,
                g.leader,
                m.member_id,
                everyone if m.member_id == g.leader else (),
            )
        return out

    # --- SyncGroup, Heartbeat, LeaveGroup ------------------------------------------------

    def _member(self, group_id: str, member_id: str) -> tuple[ClassicGroup, ClassicMember]:
        g = self.groups.get(group_id)
        member = g.members.get(member_id) if g is not None else None
        if g is None or member is None:
            raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}")
        return g, member

    def _check_generation(self, g: ClassicGroup, generation_id: int) -> None:
        if generation_id != g.generation_id:
            raise IllegalGenerationError(
                f"group {g.group_id!r} is at generation {g.generation_id}, not {generation_id}"
            )

    def sync(
        self,
        group_id: str,
        member_id: str,
        generation_id: int,
        assignments: dict[str, bytes],
        now_ms: int,
    ) -> SyncResponse | None:
        """A SyncGroup; None while the member waits for the leader's assignments. Raises
        UnknownMemberIdError, IllegalGenerationError, RebalanceInProgressError."""
        g, member = self._member(group_id, member_id)
        if g.state is ClassicState.PREPARING_REBALANCE:
            raise RebalanceInProgressError(f"group {group_id!r} is rebalancing: rejoin")
        self._check_generation(g, generation_id)
        member.last_seen_ms = now_ms
        if g.state is ClassicState.STABLE:
            return SyncResponse(member.assignment)
        if member_id == g.leader:
            for mid, m in g.members.items():
                m.assignment = assignments.get(mid, b"")
            g.state = ClassicState.STABLE
            for mid in sorted(g.awaiting_sync):
                self.completed.append((group_id, mid, SyncResponse(g.members[mid].assignment)))
            g.awaiting_sync.clear()
            return SyncResponse(member.assignment)
        g.awaiting_sync.add(member_id)
        return None

    def heartbeat(self, group_id: str, member_id: str, generation_id: int, now_ms: int) -> None:
        """Raises RebalanceInProgressError (rejoin), UnknownMemberIdError,
        IllegalGenerationError; returns when all is well."""
        g, member = self._member(group_id, member_id)
        member.last_seen_ms = now_ms
        if g.state is ClassicState.PREPARING_REBALANCE:
            raise RebalanceInProgressError(f"group {group_id!r} is rebalancing: rejoin")
        self._check_generation(g, generation_id)

    def leave(self, group_id: str, member_id: str, now_ms: int) -> None:
        """Raises UnknownMemberIdError."""
        g, _ = self._member(group_id, member_id)
        self._remove(g, member_id, now_ms)

    def _remove(self, g: ClassicGroup, member_id: str, now_ms: int) -> None:
        del g.members[member_id]
        g.awaiting_sync.discard(member_id)
        if g.leader == member_id:
            g.leader = ""
        if g.state is ClassicState.PREPARING_REBALANCE:
            self._maybe_finish_round(g, now_ms)
        else:
            self._prepare_rebalance(g, now_ms)
            self._maybe_finish_round(g, now_ms)
        if not g.members:
            g.state = ClassicState.EMPTY
            g.rebalance_deadline_ms = None

    def _maybe_finish_round(self, g: ClassicGroup, now_ms: int) -> None:
        if g.members and all(m.joined for m in g.members.values()):
            for mid, resp in self._complete_join(g, now_ms).items():
                self.completed.append((g.group_id, mid, resp))

    def check_commit(self, group_id: str, member_id: str, generation_id: int) -> bool:
        """Validate an OffsetCommit against the classic group: True if the group is classic
        (the commit is then the group's), False if it has no classic members (the caller
        treats it as any other commit). Raises IllegalGenerationError (a generation -1 commit
        while the group has members, or a stale generation), UnknownMemberIdError,
        RebalanceInProgressError (during CompletingRebalance)."""
        g = self.groups.get(group_id)
        if g is None or not g.members:
            if member_id:
                raise UnknownMemberIdError(f"group {group_id!r} has no member {member_id!r}")
            return False
        if generation_id < 0 and not member_id:
            raise IllegalGenerationError(
                f"group {group_id!r} has members: commit as one of them, with its generation"
            )
        _, member = self._member(group_id, member_id)
        self._check_generation(g, generation_id)
        if g.state is ClassicState.COMPLETING_REBALANCE:
            raise RebalanceInProgressError(f"group {group_id!r} is completing a rebalance")
        del member
        return True

    # --- timers --------------------------------------------------------------------------

    def tick(self, now_ms: int) -> None:
        """Evict members whose session expired and end rounds whose deadline passed."""
        for g in list(self.groups.values()):
            if g.rebalance_deadline_ms is not None and now_ms >= g.rebalance_deadline_ms:
                for mid in [mid for mid, m in g.members.items() if not m.joined]:
                    del g.members[mid]
                    if g.leader == mid:
                        g.leader = ""
                for mid, resp in self._complete_join(g, now_ms).items():
                    self.completed.append((g.group_id, mid, resp))
            expired = [
                mid
                for mid, m in g.members.items()
                if now_ms >= m.last_seen_ms + m.session_timeout_ms
                and not (g.state is ClassicState.PREPARING_REBALANCE and m.joined)
            ]
            for mid in expired:
                if mid in g.members:
                    self._remove(g, mid, now_ms)
            if not g.members and g.state is not ClassicState.PREPARING_REBALANCE:
                del self.groups[g.group_id]

    def next_deadline_ms(self) -> int | None:
        best: int | None = None
        for g in self.groups.values():
            cands = [m.last_seen_ms + m.session_timeout_ms for m in g.members.values()]
            if g.rebalance_deadline_ms is not None:
                cands.append(g.rebalance_deadline_ms)
            for d in cands:
                if best is None or d < best:
                    best = d
        return best
