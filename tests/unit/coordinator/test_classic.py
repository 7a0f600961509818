"""The classic group protocol in the coordinator (JoinGroup/SyncGroup rounds, timers, and
refusing to mix it with Rilke's own protocol in one group)."""

from __future__ import annotations

import pytest

from rilke.errors import (
    IllegalGenerationError,
    InvalidSessionTimeoutError,
    RebalanceInProgressError,
    UnknownMemberIdError,
)
from rilke.server.coordinator import GroupCoordinator, HeartbeatRequest
from rilke.server.coordinator.classic import (
    ClassicState,
    InconsistentGroupProtocolError,
    JoinRequest,
    JoinResponse,
    SyncResponse,
)


def _join(
    member: str = "", protocols: tuple[str, ...] = ("range", "roundrobin"), **kw: int
) -> JoinRequest:
    return JoinRequest(
        group_id="g",
        member_id=member,
        session_timeout_ms=kw.get("session", 10_000),
        rebalance_timeout_ms=kw.get("rebalance", 5_000),
        protocol_type="consumer",
        protocols=tuple((p, p.encode()) for p in protocols),
    )


def _coordinator() -> GroupCoordinator:
    c = GroupCoordinator()
    c.finish_loading(0)
    return c


def _two_members(c: GroupCoordinator) -> tuple[str, str]:
    _, first = c.classic.join(_join(), 0)
    assert first is not None and first.leader == first.member_id and first.generation_id == 1
    a = first.member_id
    # A second member starts a round: it waits for the first to rejoin.
    b_id, pending = c.classic.join(_join(protocols=("roundrobin",)), 10)
    assert pending is None and b_id != a
    with pytest.raises(RebalanceInProgressError):
        c.classic.heartbeat("g", a, 1, 20)
    _, again = c.classic.join(_join(a), 30)
    assert again is not None and again.generation_id == 2
    [(gid, b, resp)] = c.classic.completed
    c.classic.completed.clear()
    assert gid == "g" and isinstance(resp, JoinResponse) and resp.members == ()
    # The protocol every member supports, in the leader's order.
    assert again.protocol_name == resp.protocol_name == "roundrobin"
    assert again.leader == a and {m for m, _ in again.members} == {a, b}
    return a, b


def test_round_sync_and_heartbeat() -> None:
    c = _coordinator()
    a, b = _two_members(c)
    assert c.classic.sync("g", b, 2, {}, 40) is None  # waits for the leader
    mine = c.classic.sync("g", a, 2, {a: b"A", b: b"B"}, 50)
    assert mine == SyncResponse(b"A")
    assert c.classic.completed == [("g", b, SyncResponse(b"B"))]
    c.classic.heartbeat("g", b, 2, 60)
    with pytest.raises(IllegalGenerationError):
        c.classic.heartbeat("g", b, 1, 60)
    with pytest.raises(UnknownMemberIdError):
        c.classic.heartbeat("g", "nobody", 2, 60)
    assert c.classic.groups["g"].state is ClassicState.STABLE


def test_leave_starts_a_round_for_the_rest() -> None:
    c = _coordinator()
    a, b = _two_members(c)
    c.classic.sync("g", a, 2, {a: b"A", b: b"B"}, 50)
    c.classic.completed.clear()
    c.classic.leave("g", a, 60)
    with pytest.raises(RebalanceInProgressError):
        c.classic.heartbeat("g", b, 2, 70)
    _, resp = c.classic.join(_join(b), 80)
    assert resp is not None and resp.leader == b and resp.generation_id == 3


def test_members_that_do_not_rejoin_are_evicted_at_the_rebalance_deadline() -> None:
    c = _coordinator()
    a, b = _two_members(c)
    c.classic.sync("g", a, 2, {}, 50)
    assert c.classic.join(_join(b), 100)[1] is None  # b asks for a round; a never rejoins
    assert c.classic.next_deadline_ms() == 100 + 5_000
    c.classic.tick(5_099)
    assert c.classic.completed == []
    c.classic.tick(5_100)
    [(_, member, resp)] = c.classic.completed
    assert member == b and isinstance(resp, JoinResponse) and resp.leader == b
    assert set(c.classic.groups["g"].members) == {b}


def test_session_expiry_evicts_and_rebalances() -> None:
    c = _coordinator()
    _, first = c.classic.join(_join(session=1_000), 0)
    assert first is not None
    c.classic.tick(999)
    assert c.classic.has_members("g")
    c.classic.tick(1_000)
    assert not c.classic.has_members("g")


def test_sync_waiters_learn_of_a_new_round() -> None:
    c = _coordinator()
    _a, b = _two_members(c)
    assert c.classic.sync("g", b, 2, {}, 40) is None
    assert c.classic.join(_join(), 45)[1] is None  # a third member joins before the leader syncs
    assert ("g", b) in [
        (g, m) for g, m, r in c.classic.completed if isinstance(r, RebalanceInProgressError)
    ]


def test_mixing_protocols_in_one_group_is_refused_both_ways() -> None:
    c = _coordinator()
    assert c.classic.join(_join(), 0)[1] is not None
    reply = c.heartbeat(HeartbeatRequest("g", subscribed_topics=("t",)), 0, {"t": 1})
    assert isinstance(reply.error, InconsistentGroupProtocolError)
    c2 = _coordinator()
    assert c2.heartbeat(HeartbeatRequest("g", subscribed_topics=("t",)), 0, {"t": 1}).error is None
    with pytest.raises(InconsistentGroupProtocolError, match="Rilke's own"):
        c2.classic.join(_join(), 0)


def test_join_refusals() -> None:
    c = _coordinator()
    with pytest.raises(InvalidSessionTimeoutError):
        c.classic.join(_join(session=1), 0)
    with pytest.raises(UnknownMemberIdError):
        c.classic.join(_join("ghost"), 0)
    assert c.classic.join(_join(protocols=("range",)), 0)[1] is not None
    with pytest.raises(InconsistentGroupProtocolError, match="supported by every member"):
        c.classic.join(_join(protocols=("sticky",)), 0)


def test_commit_checks() -> None:
    c = _coordinator()
    assert c.classic.check_commit("g", "", -1) is False  # no classic group: a plain commit
    a, _b = _two_members(c)
    with pytest.raises(RebalanceInProgressError):
        c.classic.check_commit("g", a, 2)  # completing the rebalance
    c.classic.sync("g", a, 2, {}, 50)
    assert c.classic.check_commit("g", a, 2) is True
    with pytest.raises(IllegalGenerationError):
        c.classic.check_commit("g", "", -1)
    with pytest.raises(IllegalGenerationError):
        c.classic.check_commit("g", a, 1)
    with pytest.raises(UnknownMemberIdError):
        c.classic.check_commit("g", "ghost", 2)
