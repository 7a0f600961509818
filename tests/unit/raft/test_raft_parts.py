"""The pieces under the node: MemoryStorage, RaftLog, Progress/Inflights, quorum, read index."""

from __future__ import annotations

import pytest

from rilke.replication.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    MemoryStorage,
    ProgressState,
    Ready,
    Snapshot,
)
from rilke.replication.raft.log import RaftLog
from rilke.replication.raft.progress import Inflights, Progress
from rilke.replication.raft.quorum import VoteResult, committed_index, vote_result
from rilke.replication.raft.read_only import ReadOnly


def batches(*spec: tuple[int, int]) -> list[Entry]:
    """Entries from (term, offset_count) pairs, offsets from 1."""
    out, last = [], 0
    for term, count in spec:
        last += count
        out.append(Entry(term, last, b"d" * count, offset_count=count))
    return out


# --- MemoryStorage -----------------------------------------------------------------------------


def test_storage_terms_and_entries_by_offset_with_multi_offset_batches() -> None:
    s = MemoryStorage()
    s.append(batches((1, 3), (1, 1), (2, 4)))  # offsets 1-3, 4, 5-8
    assert (s.first_index(), s.last_index()) == (1, 8)
    assert [s.term(i) for i in range(10)] == [0, 1, 1, 1, 1, 2, 2, 2, 2, None]
    assert [e.index for e in s.entries(2, 5, 1 << 20)] == [3, 4, 8]
    assert [e.index for e in s.entries(4, 8, 4)] == [4]  # 1 byte, then 4 more would exceed
    assert [e.index for e in s.entries(5, 8, 0)] == [8]  # at least one entry


def test_storage_truncate_compact_and_snapshot() -> None:
    s = MemoryStorage(ConfState(frozenset({1, 2, 3})))
    s.append(batches((1, 3), (1, 1), (2, 4)))
    s.truncate_suffix(5)
    assert s.last_index() == 4
    with pytest.raises(AssertionError):
        s.truncate_suffix(2)  # inside a batch
    s.set_hard_state(HardState(2, 1, 4))
    s.compact(3, ConfState(frozenset({1, 2, 3})))
    assert (s.first_index(), s.term(3), s.term(2)) == (4, 1, None)
    s.apply_snapshot(Snapshot(10, 3, ConfState(frozenset({1}))))
    assert (s.first_index(), s.last_index(), s.term(10)) == (11, 10, 3)


def test_storage_persist_ready_applies_snapshot_truncation_entries_then_hard_state() -> None:
    s = MemoryStorage()
    s.append(batches((1, 1), (1, 1), (1, 1)))
    rd = Ready(hard_state=HardState(2, 0, 2), truncate_from=3, entries=[Entry(2, 3), Entry(2, 4)])
    s.persist_ready(rd)
    assert [(e.term, e.index) for e in s.all_entries()] == [(1, 1), (1, 2), (2, 3), (2, 4)]
    assert s.hard_state == HardState(2, 0, 2)


# --- RaftLog -----------------------------------------------------------------------------------


def test_log_append_overwrites_an_unstable_suffix_and_reports_truncation() -> None:
    s = MemoryStorage()
    s.append(batches((1, 2), (1, 2)))  # 1-2, 3-4 persisted
    log = RaftLog(s, committed=2, applied=0)
    log.append([Entry(1, 7, offset_count=3)])  # 5-7 unstable
    assert log.last_index() == 7 and log.truncation_point() is None
    log.append([Entry(2, 4, offset_count=2)])  # replaces persisted 3-4 and unstable 5-7
    assert log.last_index() == 4
    assert log.truncation_point() == 3
    assert log.term(3) == 2 and log.term(2) == 1
    log.stable_to(4, 2)
    assert log.stable_last_index() == 4


def test_log_match_term_needs_an_entry_boundary() -> None:
    s = MemoryStorage()
    s.append(batches((1, 3), (2, 2)))  # 1-3 term 1, 4-5 term 2
    log = RaftLog(s, committed=0, applied=0)
    assert log.match_term(3, 1) and log.match_term(5, 2) and log.match_term(0, 0)
    assert not log.match_term(2, 1)  # inside the first batch
    assert not log.match_term(4, 2)


def test_log_find_conflict_by_term_walks_back_by_batches() -> None:
    s = MemoryStorage()
    s.append(batches((1, 2), (2, 3), (2, 1), (5, 2)))  # 1-2 t1, 3-5 t2, 6 t2, 7-8 t5
    log = RaftLog(s, committed=0, applied=0)
    assert log.find_conflict_by_term(8, 4) == (6, 2)
    assert log.find_conflict_by_term(8, 5) == (8, 5)
    assert log.find_conflict_by_term(4, 9) == (2, 1)  # 4 is inside 3-5: the boundary before
    assert log.find_conflict_by_term(8, 1) == (2, 1)
    assert log.find_conflict_by_term(8, 0) == (0, 0)


def test_log_maybe_append_commits_only_what_matches() -> None:
    s = MemoryStorage()
    s.append(batches((1, 1), (1, 1)))
    log = RaftLog(s, committed=0, applied=0)
    assert log.maybe_append(2, 2, 5, [Entry(2, 3)]) is None  # prev term mismatch
    assert log.maybe_append(2, 1, 5, [Entry(2, 3)]) == 3
    assert log.committed == 3  # min(leader commit, last new)
    assert [e.index for e in log.next_committed_entries(1 << 20)] == [1, 2, 3]
    assert log.applying == 3 and not log.has_next_committed()


def test_log_restore_replaces_everything() -> None:
    s = MemoryStorage()
    s.append(batches((1, 1), (1, 1)))
    log = RaftLog(s, committed=1, applied=1)
    snap = Snapshot(9, 3, ConfState(frozenset({1, 2})))
    log.restore(snap)
    assert (log.first_index(), log.last_index(), log.committed) == (10, 9, 9)
    assert log.term(9) == 3 and log.term(2) is None
    assert log.has_unstable()


# --- Progress and Inflights --------------------------------------------------------------------


def test_inflights_bounded_by_count_and_bytes() -> None:
    inf = Inflights(max_msgs=3, max_bytes=100)
    inf.add(5, 40)
    inf.add(9, 40)
    assert not inf.full()
    inf.add(12, 30)
    assert inf.full() and inf.bytes == 110
    inf.free_le(9)
    assert (inf.count, inf.bytes, inf.full()) == (1, 30, False)
    inf.add(15, 200)
    assert inf.full()  # bytes


def test_progress_probe_replicate_snapshot_transitions() -> None:
    pr = Progress(11, Inflights(2, 1 << 20), is_learner=False)
    assert pr.state is ProgressState.PROBE and not pr.is_paused()
    pr.sent_entries(11, 10)
    assert pr.is_paused()  # one probe at a time
    assert not pr.maybe_decr_to(5, 3)  # stale: we did not send prev=5
    assert pr.maybe_decr_to(10, 7)
    assert pr.next == 7 and not pr.is_paused()
    assert pr.maybe_update(6)
    pr.become_replicate()
    assert pr.next == 7
    pr.sent_entries(8, 1)
    pr.sent_entries(9, 1)
    assert pr.is_paused() and pr.next == 10  # the window (2 messages) is full
    pr.inflights.free_le(8)
    assert not pr.is_paused()
    pr.become_snapshot(20)
    assert pr.is_paused()
    pr.become_probe()
    assert pr.next == 21


def test_progress_replicate_rejection_falls_back_to_match() -> None:
    pr = Progress(5, Inflights(8, 1 << 20), is_learner=False)
    pr.maybe_update(4)
    pr.become_replicate()
    pr.sent_entries(9, 1)
    assert not pr.maybe_decr_to(3, 1)  # at or below match: stale
    assert pr.maybe_decr_to(8, 1)
    assert pr.next == 5


# --- quorum, read index, conf changes ------------------------------------------------------------


@pytest.mark.parametrize(
    ("matches", "expected"),
    [({1: 5}, 5), ({1: 5, 2: 3}, 3), ({1: 5, 2: 3, 3: 4}, 4), ({1: 9, 2: 9, 3: 1, 4: 1}, 1)],
)
def test_committed_index_is_what_a_majority_holds(matches: dict[int, int], expected: int) -> None:
    assert committed_index(set(matches), matches) == expected


def test_vote_result() -> None:
    voters = {1, 2, 3, 4, 5}
    assert vote_result(voters, {1: True, 2: True}) is VoteResult.PENDING
    assert vote_result(voters, {1: True, 2: True, 3: True}) is VoteResult.WON
    assert vote_result(voters, {1: True, 2: False, 3: False, 4: False}) is VoteResult.LOST


def test_read_only_releases_a_request_and_those_before_it() -> None:
    ro = ReadOnly()
    assert ro.add_request(5, 1, b"a") and ro.add_request(6, 2, b"b")
    assert not ro.add_request(7, 1, b"a")
    ro.recv_ack(2, b"b")
    released = ro.advance(b"b")
    assert [(r.index, r.requester, r.context) for r in released] == [(5, 1, b"a"), (6, 2, b"b")]
    assert len(ro) == 0


def test_conf_change_encoding_and_application() -> None:
    base = ConfState(frozenset({1, 2, 3}))
    change = ConfChange(ConfChangeType.ADD_LEARNER, 4)
    assert ConfChange.decode(change.encode()) == change
    conf = change.apply_to(base)
    assert conf.learners == {4}
    conf = ConfChange(ConfChangeType.ADD_VOTER, 4).apply_to(conf)
    assert conf.voters == {1, 2, 3, 4} and not conf.learners
    conf = ConfChange(ConfChangeType.REMOVE_NODE, 2).apply_to(conf)
    assert conf.voters == {1, 3, 4}
