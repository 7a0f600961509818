"""Committed offsets: commit, fetch, validation, fencing, deletion, retention, replay."""

from __future__ import annotations

import pytest
from coord_harness import Cluster

from rilke.errors import (
    CorruptRecordError,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    IllegalGenerationError,
    InvalidCommitOffsetError,
    InvalidRequestError,
    NonEmptyGroupError,
    StaleMemberEpochError,
    UnknownMemberIdError,
    UnknownTopicOrPartitionError,
)
from rilke.server.coordinator import (
    CoordinatorConfig,
    EventKind,
    GroupCoordinator,
    GroupState,
    OffsetAndMetadata,
    Record,
    TopicPartition,
    codec,
    partition_for_group,
)

T0 = TopicPartition("t", 0)
T1 = TopicPartition("t", 1)


def test_member_commits_and_fetches() -> None:
    cl = Cluster({"t": 2})
    a = cl.consumer()
    a.join()
    r = cl.commit("g", {T0: 5, T1: 7}, a.member_id, a.epoch)
    assert r.error is None and not r.response.errors
    assert len(r.output.records) >= 2
    f = cl.coord.fetch_offsets("g", [T0, T1, TopicPartition("t", 9)]).response
    assert f[T0] == OffsetAndMetadata(5, -1, "", cl.now)
    assert f[T1].offset == 7
    assert f[TopicPartition("t", 9)] is None
    assert cl.coord.fetch_offsets("g").response.keys() == {T0, T1}
    # An unknown group simply has nothing committed.
    assert cl.coord.fetch_offsets("other").response == {}


@pytest.mark.parametrize(
    ("offsets", "error"),
    [
        ({TopicPartition("nope", 0): 1}, UnknownTopicOrPartitionError),
        ({TopicPartition("t", 5): 1}, UnknownTopicOrPartitionError),
        ({T0: -1}, InvalidCommitOffsetError),
        ({T0: 1001}, InvalidCommitOffsetError),
    ],
)
def test_bad_partitions_commit_nothing(offsets: dict[TopicPartition, int], error: type) -> None:
    cl = Cluster({"t": 2}, log_end=1000)
    a = cl.consumer()
    a.join()
    r = cl.commit("g", {T1: 3, **offsets}, a.member_id, a.epoch)
    assert r.error is None
    [perr] = r.response.errors
    assert isinstance(perr.error, error)
    assert not r.response.committed
    assert not r.output.records
    assert cl.coord.fetch_offsets("g").response == {}


def test_commit_at_the_log_end_is_fine() -> None:
    cl = Cluster({"t": 2}, log_end=1000)
    r = cl.commit("g", {T0: 1000})
    assert not r.response.errors


def test_duplicate_partition_is_refused() -> None:
    cl = Cluster({"t": 2})
    a = cl.consumer()
    a.join()
    from rilke.server.coordinator import OffsetCommitPartition, OffsetCommitRequest

    req = OffsetCommitRequest(
        "g",
        a.member_id,
        a.epoch,
        (OffsetCommitPartition("t", 0, 1), OffsetCommitPartition("t", 0, 2)),
    )
    r = cl.take(cl.coord.commit_offsets(req, cl.now, cl.end_offset))
    assert isinstance(r.error, InvalidRequestError)


def test_fencing_of_commits() -> None:
    cl = Cluster({"t": 2})
    a = cl.consumer()
    a.join()
    assert isinstance(cl.commit("g", {T0: 1}, "stranger", 1).error, UnknownMemberIdError)
    assert isinstance(cl.commit("nogroup", {T0: 1}, "m", 1).error, UnknownMemberIdError)
    assert isinstance(
        cl.commit("g", {T0: 1}, a.member_id, a.epoch - 1).error, StaleMemberEpochError
    )
    assert isinstance(
        cl.commit("g", {T0: 1}, a.member_id, a.epoch + 1).error, FencedMemberEpochError
    )
    assert cl.coord.fetch_offsets("g").response == {}


def test_commit_of_a_partition_the_member_does_not_hold_is_refused() -> None:
    cl = Cluster({"t": 2})
    a, b = cl.consumer(), cl.consumer()
    a.join()
    b.join()
    cl.stabilize()
    theirs = next(iter(b.owned))
    r = cl.commit("g", {theirs: 1}, a.member_id, a.epoch)
    assert isinstance(r.error, IllegalGenerationError)


def test_revoking_member_commits_at_its_old_epoch_before_acknowledging() -> None:
    cl = Cluster({"t": 2})
    a = cl.consumer()
    a.join()
    b = cl.consumer()
    b.join()
    a.heartbeat()  # revocation: one partition is pending
    pending = cl.coord.groups["g"].members[a.member_id].pending_revocation
    [moving] = pending
    # a still holds it (pending), at epoch 1: its final commit is accepted.
    r = cl.commit("g", {moving: 42}, a.member_id, a.epoch)
    assert r.error is None and not r.response.errors
    a.heartbeat()  # acknowledge
    # Now it is gone: a late commit from a, even at its new epoch, is refused.
    r = cl.commit("g", {moving: 43}, a.member_id, a.epoch)
    assert isinstance(r.error, IllegalGenerationError)
    b.heartbeat()
    assert moving in b.owned
    assert cl.coord.fetch_offsets("g", [moving]).response[moving].offset == 42


def test_admin_commit_only_while_empty() -> None:
    cl = Cluster({"t": 2})
    r = cl.commit("fresh", {T0: 3})  # creates the group
    assert not r.response.errors
    assert cl.coord.group_state("fresh") is GroupState.EMPTY
    a = cl.consumer("fresh")
    a.join()
    r = cl.commit("fresh", {T0: 4})
    assert isinstance(r.error, NonEmptyGroupError)
    assert cl.coord.fetch_offsets("fresh", [T0]).response[T0].offset == 3


def test_delete_groups() -> None:
    cl = Cluster({"t": 2})
    a = cl.consumer()
    a.join()
    cl.commit("g", {T0: 1}, a.member_id, a.epoch)
    r = cl.take(cl.coord.delete_groups(["g", "nope"]))
    assert isinstance(r.response["g"], NonEmptyGroupError)
    assert isinstance(r.response["nope"], GroupIdNotFoundError)
    assert not r.output.records
    a.leave()
    r = cl.take(cl.coord.delete_groups(["g"]))
    assert r.response["g"] is None
    keys = {rec.key for rec in r.output.records}
    assert all(rec.value is None for rec in r.output.records)
    assert codec.offset_key("g", T0) in keys and codec.group_key("g") in keys
    with pytest.raises(GroupIdNotFoundError):
        cl.coord.describe_group("g")
    assert cl.coord.fetch_offsets("g").response == {}


def test_offsets_of_an_empty_group_expire_after_retention_with_tombstones_and_an_event() -> None:
    day = 24 * 3600 * 1000
    cl = Cluster({"t": 2}, config=CoordinatorConfig(offsets_retention_ms=7 * day))
    a = cl.consumer()
    a.join()
    cl.commit("g", {T0: 1, T1: 2}, a.member_id, a.epoch)
    cl.advance(3 * day)  # a is long dead by now... keep it alive by heartbeating
    a.join()
    cl.advance(1000)
    a.heartbeat()
    a.leave()
    left_at = cl.now
    cl.log.clear()
    cl.advance(7 * day - 1 - (cl.now - left_at))
    assert cl.coord.fetch_offsets("g").response.keys() == {T0, T1}
    assert cl.coord.next_deadline_ms() == left_at + 7 * day
    cl.advance(1)
    assert cl.coord.fetch_offsets("g").response == {}
    tombstones = [r for r in cl.log if r.value is None]
    assert {r.key for r in tombstones} >= {codec.offset_key("g", T0), codec.offset_key("g", T1)}
    [ev] = [e for e in cl.events if e.kind is EventKind.OFFSETS_EXPIRED]
    assert "2 committed offset(s) expired" in ev.message
    # With nothing left, the empty group itself goes after another retention period.
    cl.advance(7 * day)
    assert "g" not in cl.coord.groups


def test_active_group_keeps_offsets_of_subscribed_topics_only() -> None:
    day = 24 * 3600 * 1000
    config = CoordinatorConfig(offsets_retention_ms=day, max_session_timeout_ms=2 * day)
    cl = Cluster({"t": 2, "old": 1}, config=config)
    cl.commit("g", {TopicPartition("old", 0): 1, T0: 1})
    a = cl.consumer(session_timeout_ms=day, max_poll_interval_ms=day)
    a.join()
    for _ in range(5):
        cl.advance(day // 4)
        a.heartbeat()
    offsets = cl.coord.fetch_offsets("g").response
    assert T0 in offsets
    assert TopicPartition("old", 0) not in offsets


def test_replay_rebuilds_groups_members_and_offsets() -> None:
    cl = Cluster({"t": 6})
    a, b = cl.consumer(instance_id="x"), cl.consumer()
    a.join()
    b.join()
    cl.stabilize()
    for tp, off in ((T0, 10), (T1, 11)):
        holder = a if tp in a.owned else b
        assert cl.commit("g", {tp: off}, holder.member_id, holder.epoch).error is None
    c = cl.consumer("g2")
    c.join()
    c.leave()
    cl.commit("g2", {T0: 5})
    before = {gid: cl.coord.describe_group(gid) for gid in ("g", "g2")}

    fresh = GroupCoordinator(cl.config)
    for rec in _compacted(cl.log):
        fresh.replay(rec.key, rec.value)
    fresh.finish_loading(cl.now)
    for gid, desc in before.items():
        got = fresh.describe_group(gid)
        # owned_partitions is what members report: volatile, not replayed.
        strip = lambda d: d.__class__(  # noqa: E731
            **{
                **d.__dict__,
                "members": tuple(
                    m.__class__(**{**m.__dict__, "owned_partitions": frozenset()})
                    for m in d.members
                ),
            }
        )
        assert strip(got) == strip(desc)
    # The members carry on with their epochs against the rebuilt coordinator.
    cl.coord = fresh
    a.heartbeat()
    b.heartbeat()
    assert a.last_error is None and b.last_error is None
    cl.check()


def test_replay_of_deletions() -> None:
    cl = Cluster({"t": 2})
    cl.commit("g", {T0: 1})
    cl.take(cl.coord.delete_groups(["g"]))
    fresh = GroupCoordinator()
    for rec in cl.log:
        fresh.replay(rec.key, rec.value)
    fresh.finish_loading(0)
    assert fresh.list_groups() == []


def test_codec_round_trip_and_refusals() -> None:
    om = OffsetAndMetadata(123, 4, "meta ✓", 99)
    assert codec.decode_offset_value(codec.offset_value(om)) == om
    key = codec.decode_key(codec.offset_key("gé", T1))
    assert key == codec.OffsetKey("gé", T1)
    assert codec.decode_key(codec.group_key("g")) == codec.GroupKey("g")
    for bad in (b"", b"\x00\x09\x00\x01g", codec.group_key("g") + b"x", b"\x00\x01\x00\x05ab"):
        with pytest.raises(CorruptRecordError):
            codec.decode_key(bad)
    with pytest.raises(CorruptRecordError):
        codec.decode_offset_value(b"\x00\x07" + codec.offset_value(om)[2:])
    with pytest.raises(CorruptRecordError):
        codec.decode_group_value(b"\x00\x01not json")
    coord = GroupCoordinator()
    with pytest.raises(CorruptRecordError):
        coord.replay(b"\x00\x09", b"")


def test_partition_for_group_matches_java_string_hashcode() -> None:
    # Java: "abc".hashCode() == 96354, "hello".hashCode() == 99162322,
    # "polygenelubricants".hashCode() == Integer.MIN_VALUE.
    assert codec.java_string_hash("abc") == 96354
    assert codec.java_string_hash("hello") == 99162322
    assert codec.java_string_hash("polygenelubricants") == -(2**31)
    assert partition_for_group("abc", 50) == 96354 % 50
    assert partition_for_group("polygenelubricants", 50) == 0
    assert all(0 <= partition_for_group(f"g{i}", 7) < 7 for i in range(100))


def _compacted(log: list[Record]) -> list[Record]:
    """What log compaction may leave: the latest record per key, in log order."""
    last = {rec.key: i for i, rec in enumerate(log)}
    return [rec for i, rec in enumerate(log) if last[rec.key] == i]
