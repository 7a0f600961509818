"""Membership, epochs, fencing and incremental rebalancing, driven with a fake clock."""

from __future__ import annotations

import pytest
from coord_harness import Cluster, all_tps, tps

from rilke.errors import (
    CoordinatorLoadInProgressError,
    FencedMemberEpochError,
    GroupMaxSizeReachedError,
    InvalidGroupIdError,
    InvalidRequestError,
    InvalidSessionTimeoutError,
    UnknownMemberIdError,
    UnsupportedAssignorError,
)
from rilke.server.coordinator import (
    CoordinatorConfig,
    GroupCoordinator,
    GroupState,
    HeartbeatRequest,
    MemberState,
    TopicPartition,
)


def test_first_member_gets_every_partition_at_epoch_1() -> None:
    cl = Cluster({"t": 4})
    a = cl.consumer()
    reply = a.join()
    assert reply.error is None
    assert reply.response.member_epoch == 1
    assert a.owned == all_tps({"t": 4})
    assert cl.coord.group_state("g") is GroupState.STABLE
    assert cl.coord.describe_group("g").group_epoch == 1
    # The join wrote the group's metadata record.
    assert cl.log


def test_second_member_waits_for_revocation_before_taking_partitions() -> None:
    cl = Cluster({"t": 6})
    a, b = cl.consumer(), cl.consumer()
    a.join()
    b.join()
    desc = cl.coord.describe_group("g")
    assert desc.group_epoch == 2
    assert desc.state is GroupState.RECONCILING
    # b's target has 3 partitions, but a still holds them: b gets nothing yet, at epoch 2.
    assert b.owned == frozenset()
    assert b.epoch == 2
    mb = cl.coord.groups["g"].members[b.member_id]
    assert mb.state is MemberState.UNRELEASED_PARTITIONS
    # a's heartbeat revokes three partitions; it keeps consuming the other three and its
    # epoch stays 1 until it acknowledges.
    a.heartbeat()
    assert len(a.owned) == 3
    assert a.epoch == 1
    ma = cl.coord.groups["g"].members[a.member_id]
    assert len(ma.pending_revocation) == 3
    # b still cannot have them: a has not acknowledged.
    b.heartbeat()
    assert b.owned == frozenset()
    # a acknowledges (owned without the revoked ones) and moves to epoch 2.
    a.heartbeat()
    assert a.epoch == 2
    assert ma.pending_revocation == frozenset()
    b.heartbeat()
    assert len(b.owned) == 3
    assert a.owned | b.owned == all_tps({"t": 6})
    assert cl.coord.group_state("g") is GroupState.STABLE


def test_partitions_that_stay_are_never_revoked() -> None:
    cl = Cluster({"t": 12})
    cs = [cl.consumer() for _ in range(3)]
    for c in cs:
        c.join()
    cl.stabilize()
    before = {c.member_id: c.owned for c in cs}
    for c in cs:
        c.revoked_log.clear()
    d = cl.consumer()
    d.join()
    cl.stabilize()
    for c in cs:
        # Each old member gave up exactly one partition and kept the rest the whole time.
        assert len(c.owned) == 3
        assert c.owned <= before[c.member_id]
        assert sum(len(r) for r in c.revoked_log) == 1
    assert len(d.owned) == 3


def test_leave_frees_partitions_at_once() -> None:
    cl = Cluster({"t": 6})
    a, b = cl.consumer(), cl.consumer()
    a.join()
    b.join()
    cl.stabilize()
    reply = b.leave()
    assert reply.error is None
    assert reply.response.member_epoch == -1
    # a gets b's partitions on its next heartbeat: nothing to revoke, nothing to wait for.
    a.heartbeat()
    assert a.owned == all_tps({"t": 6})
    assert cl.coord.group_state("g") is GroupState.STABLE


def test_last_member_leaving_empties_the_group() -> None:
    cl = Cluster()
    a = cl.consumer()
    a.join()
    a.leave()
    assert cl.coord.group_state("g") is GroupState.EMPTY
    assert cl.coord.groups["g"].empty_since_ms == cl.now


def test_unknown_member_and_group() -> None:
    cl = Cluster()
    r = cl.heartbeat(HeartbeatRequest("nogroup", "m", 3, owned_partitions=frozenset()))
    assert isinstance(r.error, UnknownMemberIdError)
    assert "nogroup" not in cl.coord.groups
    a = cl.consumer()
    a.join()
    r = cl.heartbeat(HeartbeatRequest("g", "stranger", 1, owned_partitions=frozenset()))
    assert isinstance(r.error, UnknownMemberIdError)
    assert not r.output.records


def test_wrong_epoch_is_fenced_and_changes_nothing() -> None:
    cl = Cluster()
    a, b = cl.consumer(), cl.consumer()
    a.join()
    b.join()
    cl.stabilize()
    before = cl.coord.describe_group("g")
    for bad in (a.epoch + 1, 1 if a.epoch > 2 else a.epoch + 5):
        r = cl.heartbeat(HeartbeatRequest("g", a.member_id, bad, owned_partitions=a.owned))
        assert isinstance(r.error, FencedMemberEpochError)
        assert not r.output.records
    assert cl.coord.describe_group("g") == before


def test_lost_answer_previous_epoch_is_accepted() -> None:
    cl = Cluster({"t": 2})
    a = cl.consumer()
    a.join()  # epoch 1, owns both
    b = cl.consumer()
    b.join()  # epoch 2 for the group
    a.heartbeat()  # revoke one
    a.heartbeat()  # ack -> epoch 2
    assert a.epoch == 2
    # Suppose that last answer was lost: a retries with epoch 1 owning a subset of what it
    # holds. The coordinator answers with epoch 2 again.
    r = cl.heartbeat(HeartbeatRequest("g", a.member_id, 1, owned_partitions=a.owned))
    assert r.error is None and r.response.member_epoch == 2
    # But not if it claims partitions it does not hold.
    r = cl.heartbeat(HeartbeatRequest("g", a.member_id, 1, owned_partitions=all_tps({"t": 2})))
    assert isinstance(r.error, FencedMemberEpochError)


def test_fenced_member_rejoins_with_epoch_zero() -> None:
    cl = Cluster()
    a = cl.consumer()
    a.join()
    a.epoch = 99  # a confused client
    a.heartbeat()
    assert isinstance(a.last_error, FencedMemberEpochError)
    assert a.owned == frozenset()
    a.join()
    cl.stabilize()
    assert a.owned == all_tps({"t": 6})


def test_rejoin_with_same_member_id_resets_it() -> None:
    cl = Cluster()
    a = cl.consumer()
    a.join()
    old_id = a.member_id
    a.epoch = 0
    a.owned = frozenset()
    a.heartbeat()
    assert a.member_id == old_id
    cl.stabilize()
    assert a.owned == all_tps({"t": 6})
    assert len(cl.coord.groups["g"].members) == 1


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (HeartbeatRequest("", subscribed_topics=("t",)), InvalidGroupIdError),
        (HeartbeatRequest("g"), InvalidRequestError),
        (
            HeartbeatRequest("g", subscribed_topics=("t",), session_timeout_ms=1),
            InvalidSessionTimeoutError,
        ),
        (
            HeartbeatRequest("g", subscribed_topics=("t",), assignor="fancy"),
            UnsupportedAssignorError,
        ),
        (HeartbeatRequest("g", subscribed_regex="(unclosed"), InvalidRequestError),
        (HeartbeatRequest("g", subscribed_topics=("",)), InvalidRequestError),
        (HeartbeatRequest("g", subscribed_topics=("t",), poll_age_ms=-1), InvalidRequestError),
        (
            HeartbeatRequest("g", subscribed_topics=("t",), rebalance_timeout_ms=0),
            InvalidRequestError,
        ),
    ],
)
def test_bad_joins_are_refused_and_change_nothing(req: HeartbeatRequest, error: type) -> None:
    cl = Cluster()
    r = cl.heartbeat(req)
    assert isinstance(r.error, error), r.error
    assert not r.output.records
    assert cl.coord.list_groups() == []


def test_group_size_limit() -> None:
    cl = Cluster(config=CoordinatorConfig(max_group_size=2))
    cl.consumer().join()
    cl.consumer().join()
    c = cl.consumer()
    r = c.join()
    assert isinstance(r.error, GroupMaxSizeReachedError)
    assert len(cl.coord.groups["g"].members) == 2


def test_calls_before_loading_are_refused() -> None:
    coord = GroupCoordinator()
    r = coord.heartbeat(HeartbeatRequest("g", subscribed_topics=("t",)), 0, {"t": 1})
    assert isinstance(r.error, CoordinatorLoadInProgressError)
    with pytest.raises(CoordinatorLoadInProgressError):
        coord.list_groups()


def test_regex_subscription_follows_new_topics() -> None:
    cl = Cluster({"orders-eu": 2, "payments": 2})
    a = cl.consumer(topics=(), regex=r"orders-.*")
    a.join()
    assert a.owned == tps("orders-eu", 0, 1)
    epoch = cl.coord.describe_group("g").group_epoch
    cl.topics["orders-us"] = 2
    a.heartbeat()  # the heartbeat notices the new topic and bumps the epoch
    cl.stabilize()
    assert cl.coord.describe_group("g").group_epoch == epoch + 1
    assert a.owned == tps("orders-eu", 0, 1) | tps("orders-us", 0, 1)


def test_added_partitions_and_deleted_topics_rebalance_on_tick() -> None:
    cl = Cluster({"t": 2, "u": 2})
    a = cl.consumer(topics=("t", "u"))
    a.join()
    cl.topics["t"] = 4
    cl.advance(1)
    a.heartbeat()
    assert a.owned == all_tps({"t": 4, "u": 2})
    del cl.topics["u"]
    cl.advance(1)
    cl.stabilize()
    assert a.owned == all_tps({"t": 4})


def test_subscription_change_rebalances() -> None:
    cl = Cluster({"t": 2, "u": 2})
    a = cl.consumer(topics=("t",))
    a.join()
    r = cl.heartbeat(
        HeartbeatRequest(
            "g", a.member_id, a.epoch, subscribed_topics=("u",), owned_partitions=a.owned
        )
    )
    assert r.error is None
    a.epoch = r.response.member_epoch
    a.owned = r.response.assignment  # revoked t-0, t-1
    cl.stabilize()
    assert a.owned == all_tps({"u": 2})


def test_more_members_than_partitions() -> None:
    cl = Cluster({"t": 2})
    cs = [cl.consumer() for _ in range(4)]
    for c in cs:
        c.join()
    cl.stabilize()
    owned = [c.owned for c in cs]
    assert sum(len(o) for o in owned) == 2
    assert frozenset().union(*owned) == all_tps({"t": 2})


def test_heartbeat_interval_is_short_and_below_a_third_of_the_session() -> None:
    cl = Cluster()
    r = cl.consumer(session_timeout_ms=600).join()
    assert r.response.heartbeat_interval_ms <= 200
    assert cl.config.heartbeat_interval_ms < 1000


def test_list_and_describe() -> None:
    cl = Cluster({"t": 3})
    a = cl.consumer()
    a.join()
    listing = cl.coord.list_groups()
    assert [(g.group_id, g.state, g.members) for g in listing] == [("g", GroupState.STABLE, 1)]
    d = cl.coord.describe_group("g")
    assert d.assignor == "sticky"
    [m] = d.members
    assert m.assignment == m.target_assignment == all_tps({"t": 3})
    assert TopicPartition("t", 0) in m.owned_partitions or m.owned_partitions == frozenset()


def test_assignor_is_the_members_choice() -> None:
    cl = Cluster({"t": 4, "u": 4})
    a = cl.consumer(topics=("t", "u"), assignor="range")
    b = cl.consumer(topics=("t", "u"), assignor="range")
    a.join()
    b.join()
    cl.stabilize()
    assert cl.coord.describe_group("g").assignor == "range"
    # Range gives each member a contiguous half of each topic.
    for c in (a, b):
        assert {tp.topic for tp in c.owned} == {"t", "u"}
