"""The safety checker catches broken histories, so the simulation's checks cannot pass silently.

Each test feeds the checker a hand-written history that breaks one property and asserts the
checker names it; a matching correct history passes.
"""

from __future__ import annotations

import pytest

from tests.sim.simulator.checker import SafetyChecker, SafetyViolation


def _entries(*spec: tuple[int, int, str]) -> list[tuple[int, int, object]]:
    return [(index, term, data) for index, term, data in spec]


def _replicated_three() -> SafetyChecker:
    """Three nodes holding [1:t1 a, 2:t1 b, 3:t1 c]; n1 leads term 1; everyone commits 2."""
    checker = SafetyChecker()
    for node in (1, 2, 3):
        checker.observe_role(node, 1, "follower")
        checker.on_write(node, 0, _entries((1, 1, "a"), (2, 1, "b"), (3, 1, "c")))
    checker.observe_role(1, 1, "leader")
    for node in (1, 2, 3):
        checker.observe_commit(node, 2)
    return checker


def test_a_correct_history_passes() -> None:
    checker = _replicated_three()
    for node in (1, 2, 3):
        checker.observe_applied(node, _entries((1, 1, "a"), (2, 1, "b")))
    # n2 wins term 2 with a full log, overwrites nothing committed, commits its no-op.
    checker.observe_role(2, 2, "leader")
    checker.on_write(2, 3, _entries((4, 2, "noop")))
    checker.on_write(3, 3, _entries((4, 2, "noop")))
    checker.observe_commit(2, 4)
    checker.observe_commit(3, 4)
    checker.observe_applied(2, _entries((3, 1, "c"), (4, 2, "noop")))
    # n1, partitioned, never got index 4; it steps down and catches up.
    checker.observe_role(1, 2, "follower")
    checker.on_write(1, 3, _entries((4, 2, "noop")))
    checker.observe_commit(1, 4)
    assert checker.max_committed() == 4
    assert checker.leader_of_term == {1: 1, 2: 2}


def test_two_leaders_in_one_term_are_caught() -> None:
    checker = _replicated_three()
    with pytest.raises(SafetyViolation) as caught:
        checker.observe_role(2, 1, "leader")
    assert caught.value.prop == "Election Safety"


def test_two_leaders_in_one_term_are_caught_across_a_crash() -> None:
    checker = _replicated_three()
    checker.on_restart(1, (0, 0), _entries((1, 1, "a"), (2, 1, "b")), term=1, commit=2)
    with pytest.raises(SafetyViolation, match="Election Safety"):
        checker.observe_role(3, 1, "leader")


def test_log_matching_violation_is_caught() -> None:
    checker = SafetyChecker()
    checker.on_write(1, 0, _entries((1, 1, "a"), (2, 2, "b")))
    # Same (index, term) at 2 but a different entry at 1: Log Matching breaks.
    with pytest.raises(SafetyViolation) as caught:
        checker.on_write(2, 0, _entries((1, 1, "x"), (2, 2, "b")))
    assert caught.value.prop == "Log Matching"


def test_same_index_and_term_with_other_payload_is_caught() -> None:
    checker = SafetyChecker()
    checker.on_write(1, 0, _entries((1, 1, "a")))
    with pytest.raises(SafetyViolation, match="Log Matching"):
        checker.on_write(2, 0, _entries((1, 1, "b")))


def test_a_committed_entry_that_disappears_is_caught() -> None:
    checker = _replicated_three()
    with pytest.raises(SafetyViolation) as caught:
        # n3 drops entries 2 and 3 although 2 is committed.
        checker.on_write(3, 1, _entries((2, 2, "other")))
    assert caught.value.prop == "Committed entry lost"


def test_a_committed_entry_removed_from_a_node_that_did_not_know_is_caught() -> None:
    checker = SafetyChecker()
    for node in (1, 2):
        checker.on_write(node, 0, _entries((1, 1, "a"), (2, 1, "b")))
    checker.observe_role(1, 1, "leader")
    checker.observe_commit(1, 2)
    # n2 never learned the commit, yet the entry is committed: removing it is still a loss.
    with pytest.raises(SafetyViolation, match="Committed entry lost"):
        checker.on_write(2, 1, _entries((2, 2, "z")))


def test_a_changed_committed_entry_is_caught() -> None:
    checker = SafetyChecker()
    checker.on_write(1, 0, _entries((1, 1, "a")))
    checker.observe_role(1, 1, "leader")
    checker.observe_commit(1, 1)
    # n2 holds a different entry at 1 (another term) and claims to have committed it.
    checker.on_write(2, 0, _entries((1, 2, "b")))
    with pytest.raises(SafetyViolation, match="State Machine Safety"):
        checker.observe_commit(2, 1)


def test_a_leader_without_a_committed_entry_is_caught() -> None:
    checker = _replicated_three()
    # n3 lost entries 2..3 (a broken node), then wins term 2: Leader Completeness breaks.
    checker.nodes[3].commit = 0  # forge: pretend n3 never knew of the commit
    checker.nodes[3].log.indexes[1:] = []
    del checker.nodes[3].log.terms[1:], checker.nodes[3].log.digests[1:]
    del checker.nodes[3].log.hashes[1:]
    with pytest.raises(SafetyViolation) as caught:
        checker.observe_role(3, 2, "leader")
    assert caught.value.prop == "Leader Completeness"


def test_a_commit_observed_after_a_later_leader_was_elected_is_checked() -> None:
    checker = SafetyChecker()
    for node in (1, 2, 3):
        checker.on_write(node, 0, _entries((1, 1, "a")))
    checker.observe_role(1, 1, "leader")
    checker.on_write(1, 1, _entries((2, 1, "b")))
    # n3 becomes leader of term 2 without entry 2 (allowed so far: 2 is not committed) ...
    checker.observe_role(3, 2, "leader")
    # ... then the old leader claims a commit of 2 in term 1: n3 lacks it.
    with pytest.raises(SafetyViolation, match="Leader Completeness"):
        checker.observe_commit(1, 2)


def test_a_leader_that_truncates_its_own_log_is_caught() -> None:
    checker = _replicated_three()
    with pytest.raises(SafetyViolation, match="Leader Append-Only"):
        checker.on_write(1, 2, _entries((3, 1, "c2")))


def test_commit_going_backwards_is_caught() -> None:
    checker = _replicated_three()
    with pytest.raises(SafetyViolation, match="Commit monotonic"):
        checker.observe_commit(2, 1)


def test_commit_past_the_log_is_caught() -> None:
    checker = _replicated_three()
    with pytest.raises(SafetyViolation, match="Commit"):
        checker.observe_commit(2, 9)


def test_durable_commit_going_backwards_across_a_restart_is_caught() -> None:
    checker = _replicated_three()
    checker.observe_durable(2, term=1, vote=1, commit=2)
    with pytest.raises(SafetyViolation, match="Durable commit monotonic"):
        checker.on_restart(2, (0, 0), _entries((1, 1, "a"), (2, 1, "b")), term=1, commit=1)


def test_a_restart_below_the_in_memory_commit_is_allowed() -> None:
    """The in-memory commit may be ahead of the durable one; a restart goes back to the latter."""
    checker = _replicated_three()
    checker.observe_durable(2, term=1, vote=1, commit=1)
    checker.on_restart(2, (0, 0), _entries((1, 1, "a"), (2, 1, "b")), term=1, commit=1)
    checker.observe_commit(2, 2)
    checker.observe_applied(2, _entries((1, 1, "a"), (2, 1, "b")))


def test_a_second_vote_in_one_term_is_caught() -> None:
    checker = SafetyChecker()
    checker.observe_durable(1, term=3, vote=2, commit=0)
    with pytest.raises(SafetyViolation, match="Vote once per term"):
        checker.observe_durable(1, term=3, vote=3, commit=0)


def test_applying_out_of_order_or_twice_is_caught() -> None:
    checker = _replicated_three()
    checker.observe_applied(1, _entries((1, 1, "a")))
    with pytest.raises(SafetyViolation, match="State Machine Safety"):
        checker.observe_applied(1, _entries((1, 1, "a")))
    checker2 = _replicated_three()
    with pytest.raises(SafetyViolation, match="State Machine Safety"):
        checker2.observe_applied(1, _entries((2, 1, "b")))


def test_applying_an_uncommitted_entry_is_caught() -> None:
    checker = _replicated_three()
    checker.observe_applied(1, _entries((1, 1, "a"), (2, 1, "b")))
    with pytest.raises(SafetyViolation, match="State Machine Safety"):
        checker.observe_applied(1, _entries((3, 1, "c")))


def test_applying_a_different_payload_is_caught() -> None:
    checker = _replicated_three()
    with pytest.raises(SafetyViolation, match="State Machine Safety"):
        checker.observe_applied(1, _entries((1, 2, "a")))


def test_entries_spanning_several_offsets_are_named_by_their_last_offset() -> None:
    checker = SafetyChecker()
    for node in (1, 2):
        checker.on_write(node, 0, _entries((5, 1, "batch1-5"), (9, 1, "batch6-9")))
    checker.observe_role(1, 1, "leader")
    checker.observe_commit(1, 9)
    with pytest.raises(SafetyViolation, match="entry boundary"):
        checker.observe_commit(2, 7)


def test_a_snapshot_covers_the_committed_entries_before_it() -> None:
    checker = _replicated_three()
    checker.on_snapshot(3, 2, 1)  # compaction at the committed index 2
    checker.observe_role(3, 2, "leader")  # Leader Completeness holds through the snapshot
    with pytest.raises(SafetyViolation, match="Log"):
        checker.on_snapshot(3, 1, 1)  # going back behind the log start


def test_a_term_led_only_in_memory_may_be_led_again_after_a_crash() -> None:
    """A single voter that led term 2 without making it durable sent nothing in it; after a
    crash it may lead term 2 again and write other entries at the same indexes."""
    checker = SafetyChecker()
    checker.observe_durable(1, term=1, vote=1, commit=1)
    checker.on_write(1, 0, _entries((1, 1, "a")))
    checker.observe_role(1, 1, "leader")
    checker.observe_commit(1, 1)
    checker.observe_role(1, 2, "leader")
    checker.on_write(1, 1, _entries((2, 2, "lost")))
    checker.on_restart(1, (0, 0), _entries((1, 1, "a")), term=1, commit=1)
    checker.observe_role(1, 2, "leader")
    checker.on_write(1, 1, _entries((2, 2, "other")))
    checker.observe_commit(1, 2)


def test_a_durable_term_cannot_be_led_again_with_other_entries() -> None:
    checker = SafetyChecker()
    checker.on_write(1, 0, _entries((1, 1, "a")))
    checker.observe_role(1, 2, "leader")
    checker.on_write(1, 1, _entries((2, 2, "sent")))
    checker.observe_durable(1, term=2, vote=1, commit=0)
    checker.on_restart(1, (0, 0), _entries((1, 1, "a")), term=2, commit=0)
    checker.observe_role(1, 2, "leader")
    with pytest.raises(SafetyViolation, match="Log Matching"):
        checker.on_write(1, 1, _entries((2, 2, "other")))
