"""Session, poll-interval and revocation timeouts, and static membership, on a fake clock."""

from __future__ import annotations

from coord_harness import Cluster, all_tps

from rilke.errors import FencedInstanceIdError, UnknownMemberIdError
from rilke.server.coordinator import EventKind, GroupState, HeartbeatRequest


def test_session_timeout_removes_a_silent_member_and_its_partitions_move() -> None:
    cl = Cluster({"t": 6})
    a = cl.consumer(session_timeout_ms=3000)
    b = cl.consumer(session_timeout_ms=3000)
    a.join()
    b.join()
    cl.stabilize()
    b.crash()
    cl.advance(2999)
    a.heartbeat()
    assert b.member_id in cl.coord.groups["g"].members
    cl.advance(1)
    assert b.member_id not in cl.coord.groups["g"].members
    assert any(e.kind is EventKind.MEMBER_REMOVED and "session" in e.message for e in cl.events)
    a.heartbeat()
    assert a.owned == all_tps({"t": 6})


def test_heartbeats_keep_a_member_alive() -> None:
    cl = Cluster()
    a = cl.consumer(session_timeout_ms=3000)
    a.join()
    for _ in range(10):
        cl.advance(1000)
        a.heartbeat()
    assert a.member_id in cl.coord.groups["g"].members


def test_member_that_stops_polling_is_removed_without_blocking_others() -> None:
    cl = Cluster({"t": 4})
    a = cl.consumer(max_poll_interval_ms=5000)
    b = cl.consumer(max_poll_interval_ms=5000)
    a.join()
    b.join()
    cl.stabilize()
    # b keeps heartbeating (its background thread is fine) but its application is stuck.
    for _ in range(4):
        cl.advance(1000)
        b.poll_age_ms += 1000
        a.heartbeat()
        b.heartbeat()
    assert b.member_id in cl.coord.groups["g"].members
    cl.advance(1000)
    assert b.member_id not in cl.coord.groups["g"].members
    assert any("poll" in e.message for e in cl.events if e.kind is EventKind.MEMBER_REMOVED)
    # a takes everything at once: b's partitions were freed, nothing waits on b.
    a.heartbeat()
    assert a.owned == all_tps({"t": 4})
    # b learns it was removed on its next heartbeat, drops its partitions, and may rejoin.
    b.heartbeat()
    assert isinstance(b.last_error, UnknownMemberIdError)
    assert b.owned == frozenset()


def test_member_that_does_not_revoke_in_time_is_removed() -> None:
    cl = Cluster({"t": 4})
    a = cl.consumer(rebalance_timeout_ms=2000, session_timeout_ms=60_000)
    a.join()
    b = cl.consumer()
    b.join()
    # a is told to revoke two partitions, keeps heartbeating, but never lets go of them.
    a.heartbeat()
    stuck = a.owned | cl.coord.groups["g"].members[a.member_id].pending_revocation
    for _ in range(3):
        cl.advance(600)
        reply = cl.heartbeat(HeartbeatRequest("g", a.member_id, a.epoch, owned_partitions=stuck))
        assert reply.error is None
        b.heartbeat()
        assert b.owned == frozenset()  # b waits: a still holds them
    cl.advance(200)
    assert a.member_id not in cl.coord.groups["g"].members
    b.heartbeat()
    assert b.owned == all_tps({"t": 4})


def test_next_deadline_tracks_the_earliest_timer() -> None:
    cl = Cluster()
    assert cl.coord.next_deadline_ms() is None
    a = cl.consumer(session_timeout_ms=3000, max_poll_interval_ms=10_000)
    a.join()
    assert cl.coord.next_deadline_ms() == 3000
    cl.advance(1000)
    a.heartbeat()
    assert cl.coord.next_deadline_ms() == 4000


def test_static_member_comes_back_without_a_rebalance() -> None:
    cl = Cluster({"t": 6})
    a = cl.consumer(instance_id="host-a", session_timeout_ms=5000)
    b = cl.consumer(instance_id="host-b", session_timeout_ms=5000)
    a.join()
    b.join()
    cl.stabilize()
    epoch = cl.coord.describe_group("g").group_epoch
    had = b.owned
    r = b.leave(static=True)
    assert r.error is None and r.response.member_epoch == -2
    # Its partitions stay reserved: a does not get them.
    cl.advance(2000)
    a.heartbeat()
    assert len(a.owned) == 3
    assert cl.coord.describe_group("g").members[1].left_static or (
        cl.coord.describe_group("g").members[0].left_static
    )
    # A new process with the same instance id takes its place and its partitions.
    b2 = cl.consumer(instance_id="host-b", session_timeout_ms=5000)
    r = b2.join()
    assert r.error is None
    assert b2.owned == had
    assert cl.coord.describe_group("g").group_epoch == epoch
    assert cl.coord.group_state("g") is GroupState.STABLE
    cl.advance(4000)  # well past the old session: nothing expires, b2 heartbeats
    b2.heartbeat()
    a.heartbeat()
    cl.advance(4000)
    assert len(cl.coord.groups["g"].members) == 2


def test_static_member_that_does_not_come_back_is_removed_after_its_session() -> None:
    cl = Cluster({"t": 6})
    a = cl.consumer(instance_id="host-a", session_timeout_ms=5000)
    b = cl.consumer(instance_id="host-b", session_timeout_ms=5000)
    a.join()
    b.join()
    cl.stabilize()
    b.leave(static=True)
    for _ in range(5):
        cl.advance(1000)
        a.heartbeat()
    assert len(cl.coord.groups["g"].members) == 1
    cl.stabilize()
    assert a.owned == all_tps({"t": 6})


def test_static_member_restart_without_leave_fences_the_old_process() -> None:
    cl = Cluster({"t": 4})
    a = cl.consumer(instance_id="host-a")
    b = cl.consumer(instance_id="host-b")
    a.join()
    b.join()
    cl.stabilize()
    had = b.owned
    # b's host restarts: the new process joins before the old session timed out.
    b2 = cl.consumer(instance_id="host-b")
    r = b2.join()
    assert r.error is None
    assert b2.owned == had
    assert b2.member_id != b.member_id
    # The old process (a zombie) is fenced.
    b.heartbeat()
    assert isinstance(b.last_error, FencedInstanceIdError)
    assert b.owned == frozenset()


def test_static_member_leaving_during_revocation_gives_up_what_it_was_revoking() -> None:
    cl = Cluster({"t": 4})
    a = cl.consumer(instance_id="host-a")
    a.join()
    b = cl.consumer()
    b.join()
    a.heartbeat()  # two partitions pending revocation from a
    a.leave(static=True)
    b.heartbeat()
    assert len(b.owned) == 2  # the revoked ones are free now
    a2 = cl.consumer(instance_id="host-a")
    a2.join()
    cl.stabilize()
    assert len(a2.owned) == 2 and a2.owned | b.owned == all_tps({"t": 4})
