"""Raft's safety properties, checked on a model of every node's log, commit and applied state.

The checker knows nothing of the core's types: the harness reports what each node did, as
plain ``(index, term, digest)`` entries, and the checker raises :class:`SafetyViolation` on the
first broken property. That makes it testable on hand-written broken histories
(tests/sim/test_sim_checker.py), so its checks cannot silently pass.

Properties (Raft paper, Figure 3, plus the durability rules a crash-prone node must keep):

- Election Safety: at most one leader per term (over the whole run, across crashes).
- Log Matching: if two logs hold an entry with the same index and term, their logs are
  identical up to that index. Checked incrementally: every entry carries a hash of its whole
  prefix, and the first prefix hash seen for an ``(index, term)`` is the only one allowed.
- Leader Completeness: an entry committed in term ``t`` is in the log of every leader of a term
  greater than ``t`` (checked when a node becomes leader and whenever a new commit is observed
  while leaders of later terms exist). A leader never removes entries from its own log.
- Committed entries are never lost or changed: no node removes a committed entry from its log
  (except by a snapshot at or past it), and a node's log agrees with the committed entries up to
  its own commit index.
- State Machine Safety: every node applies exactly the committed entries, in index order,
  with no gap and nothing twice (per incarnation: the state machine is volatile).
- Monotonicity (the per-node rule across crashes is spelled out here because it is subtle):

  * the *durable* hard state's term never decreases, its vote never changes within a term, and
    its commit never decreases, across the node's whole life, crashes included;
  * the *in-memory* commit index (the high watermark) and applied index never decrease within
    one incarnation (between a start and the next crash);
  * a restarted node starts from its durable state, so its commit index may be lower than the
    in-memory commit it had before the crash (a commit that was not persisted yet), but never
    lower than the durable commit, which itself never went backwards. Nothing committed is lost
    by this: the entries are durable on a quorum, only this node's knowledge of the commit lags.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

# An entry as the checker sees it: (index, term, digest). ``digest`` identifies the payload.
EntryView = tuple[int, int, object]

LEADER = "leader"
COVERED = -1
"""What a ``term_at`` callback returns for an index compacted into the node's snapshot."""


class SafetyViolation(AssertionError):
    """A Raft safety property broke. ``prop`` names it; the message says where and how."""

    def __init__(self, prop: str, message: str) -> None:
        super().__init__(f"{prop}: {message}")
        self.prop = prop


def _chain(prefix_hash: int, index: int, term: int, digest: object) -> int:
    return hash((prefix_hash, index, term, digest))


@dataclass
class _NodeLog:
    """The checker's copy of one node's current (in-memory) log.

    Invariants: ``indexes`` strictly increasing, all > ``start_index``; ``terms`` non-decreasing
    and >= ``start_term``; ``hashes[k]`` is the prefix hash through ``indexes[k]``.
    """

    start_index: int = 0
    start_term: int = 0
    start_hash: int = 0
    indexes: list[int] = field(default_factory=list)
    terms: list[int] = field(default_factory=list)
    digests: list[object] = field(default_factory=list)
    hashes: list[int] = field(default_factory=list)

    def last_index(self) -> int:
        return self.indexes[-1] if self.indexes else self.start_index

    def last_hash(self) -> int:
        return self.hashes[-1] if self.hashes else self.start_hash

    def position(self, index: int) -> int:
        """The list position of the entry with this index, or -1."""
        pos = bisect.bisect_left(self.indexes, index)
        if pos < len(self.indexes) and self.indexes[pos] == index:
            return pos
        return -1

    def hash_at(self, index: int) -> int | None:
        """The prefix hash through ``index``, or None if the log holds no entry there."""
        if index == self.start_index:
            return self.start_hash
        pos = self.position(index)
        return self.hashes[pos] if pos >= 0 else None

    def term_at(self, index: int) -> int | None:
        if index == self.start_index:
            return self.start_term
        pos = self.position(index)
        return self.terms[pos] if pos >= 0 else None


@dataclass
class _NodeState:
    log: _NodeLog = field(default_factory=_NodeLog)
    incarnation: int = 0
    term: int = 0
    role: str = "follower"
    commit: int = 0
    applied: int = 0
    durable_term: int = 0
    durable_vote: int = 0
    durable_commit: int = 0


@dataclass
class CheckerStats:
    checks: int = 0
    leaders: int = 0
    committed_entries: int = 0
    applied_entries: int = 0
    restarts: int = 0


class SafetyChecker:
    """Bookkeeping for the safety properties; every ``observe_*``/``on_*`` call checks them.

    Call order the harness must keep for one node: write the entries of a Ready (``on_write``
    or ``on_snapshot``), then its role (``observe_role``), then its commit (``observe_commit``),
    then what it applied (``observe_applied``). All calls raise :class:`SafetyViolation`.
    """

    def __init__(self) -> None:
        self.nodes: dict[int, _NodeState] = {}
        self.stats = CheckerStats()
        # Election Safety: the one leader of each term.
        self.leader_of_term: dict[int, int] = {}
        # Log Matching: the one prefix hash allowed for each (index, term).
        self._prefix_at: dict[tuple[int, int], int] = {}
        # Committed entries: index -> (term, prefix hash); their indexes in order.
        self.committed: dict[int, tuple[int, int]] = {}
        self.committed_indexes: list[int] = []
        # Leader Completeness: the highest committed index first seen while the observer's term
        # was t, for each t.
        self._commit_by_term: dict[int, int] = {}
        # The highest index any node's state machine applied: writes a client has seen done.
        self.max_applied = 0

    # --- helpers -------------------------------------------------------------------------

    def _node(self, node: int) -> _NodeState:
        state = self.nodes.get(node)
        if state is None:
            state = self.nodes[node] = _NodeState()
        return state

    def _fail(self, prop: str, message: str) -> None:
        raise SafetyViolation(prop, message)

    def _register_prefix(self, node: int, index: int, term: int, prefix_hash: int) -> None:
        known = self._prefix_at.setdefault((index, term), prefix_hash)
        if known != prefix_hash:
            self._fail(
                "Log Matching",
                f"n{node} holds entry (index={index}, term={term}) after a different history "
                "than another log holding the same index and term",
            )

    def log_of(self, node: int) -> tuple[int, list[EntryView]]:
        """The checker's copy of the node's log: its start (snapshot) index and its entries."""
        log = self._node(node).log
        return log.start_index, list(zip(log.indexes, log.terms, log.digests, strict=True))

    def max_committed(self) -> int:
        return self.committed_indexes[-1] if self.committed_indexes else 0

    def _require_committed_prefix(self, node: int, up_to: int, why: str) -> None:
        """Node's log must hold the committed entries up to ``up_to`` (or a snapshot past it)."""
        if up_to <= 0:
            return
        pos = bisect.bisect_right(self.committed_indexes, up_to) - 1
        if pos < 0:
            return
        index = self.committed_indexes[pos]
        term, prefix_hash = self.committed[index]
        log = self.nodes[node].log
        if index <= log.start_index:
            # Compacted: the snapshot covers it; the snapshot's own point must be committed.
            snap = self.committed.get(log.start_index)
            if snap is not None and snap[1] != log.start_hash:
                self._fail(why, f"n{node}'s snapshot at {log.start_index} is not the committed one")
            return
        if log.hash_at(index) != prefix_hash:
            self._fail(
                why,
                f"n{node} (term {self.nodes[node].term}, role {self.nodes[node].role}) lacks "
                f"committed entry (index={index}, term={term}) or holds a different history "
                f"before it; its log ends at {log.last_index()}",
            )

    def _leader_completeness(
        self, node: int, term_at: Callable[[int], int | None] | None = None
    ) -> None:
        state = self.nodes[node]
        upto = 0
        for term, index in self._commit_by_term.items():
            if term < state.term and index > upto:
                upto = index
        if term_at is None:
            self._require_committed_prefix(node, upto, "Leader Completeness")
            return
        # The node's own view of its log: the committed entry's term at its index (Log Matching,
        # checked on every write, carries it to the whole prefix).
        pos = bisect.bisect_right(self.committed_indexes, upto) - 1
        if pos < 0:
            return
        index = self.committed_indexes[pos]
        expected = self.committed[index][0]
        found = term_at(index)
        if found != COVERED and found != expected:
            self._fail(
                "Leader Completeness",
                f"n{node}, new leader of term {state.term}, has term {found} at committed "
                f"index {index} (committed in term {expected})",
            )

    # --- what the harness reports -----------------------------------------------------------

    def on_write(
        self, node: int, truncate_after: int, entries: Sequence[EntryView], role: str = ""
    ) -> None:
        """The node's log dropped every entry with index > ``truncate_after``, then appended
        ``entries`` (strictly increasing indexes, all > ``truncate_after``)."""
        self.stats.checks += 1
        state = self._node(node)
        log = state.log
        if truncate_after < log.start_index:
            self._fail("Log", f"n{node} truncates below its snapshot at {log.start_index}")
        keep = bisect.bisect_right(log.indexes, truncate_after)
        if keep < len(log.indexes):
            if (role or state.role) == LEADER:
                self._fail(
                    "Leader Append-Only",
                    f"n{node}, leader of term {state.term}, removes entries after {truncate_after}",
                )
            if truncate_after < state.commit:
                self._fail(
                    "Committed entry lost",
                    f"n{node} truncates its log after {truncate_after}, below its own commit "
                    f"index {state.commit}",
                )
            for pos in range(keep, len(log.indexes)):
                index = log.indexes[pos]
                committed = self.committed.get(index)
                if committed is not None and committed[1] == log.hashes[pos]:
                    self._fail(
                        "Committed entry lost",
                        f"n{node} removes committed entry (index={index}, term={committed[0]})",
                    )
            del log.indexes[keep:], log.terms[keep:], log.digests[keep:], log.hashes[keep:]
        prev_index = log.last_index()
        prev_term = log.terms[-1] if log.terms else log.start_term
        prefix = log.last_hash()
        for index, term, digest in entries:
            if index <= prev_index:
                self._fail("Log", f"n{node} appends index {index} after {prev_index}")
            if term < prev_term:
                self._fail("Log", f"n{node} appends term {term} after term {prev_term}")
            prefix = _chain(prefix, index, term, digest)
            self._register_prefix(node, index, term, prefix)
            log.indexes.append(index)
            log.terms.append(term)
            log.digests.append(digest)
            log.hashes.append(prefix)
            prev_index, prev_term = index, term

    def on_snapshot(self, node: int, index: int, term: int, keep_suffix: bool = True) -> None:
        """The node's log now starts after a snapshot at ``(index, term)``.

        With ``keep_suffix`` (compaction) the entries past the snapshot are kept if the log
        holds ``(index, term)``; otherwise (or without it) the whole log is replaced.
        """
        self.stats.checks += 1
        state = self._node(node)
        log = state.log
        if index < log.start_index:
            self._fail(
                "Log", f"n{node} installs snapshot {index} behind its start {log.start_index}"
            )
        if index < state.commit and log.term_at(index) != term:
            self._fail(
                "Committed entry lost",
                f"n{node} installs snapshot ({index}, {term}) that conflicts with its log below "
                f"its commit {state.commit}",
            )
        if not keep_suffix and state.commit > index:
            self._fail(
                "Committed entry lost",
                f"n{node} resets its log to snapshot {index} behind its commit {state.commit}",
            )
        known = log.hash_at(index)
        if keep_suffix and known is not None and log.term_at(index) == term:
            keep_from = bisect.bisect_right(log.indexes, index)
            start_hash = known
        else:
            keep_from = len(log.indexes)
            start_hash = self._prefix_at.get((index, term), hash(("snapshot", index, term)))
        self._register_prefix(node, index, term, start_hash)
        del log.indexes[:keep_from], log.terms[:keep_from], log.digests[:keep_from]
        del log.hashes[:keep_from]
        log.start_index, log.start_term, log.start_hash = index, term, start_hash

    def observe_role(
        self,
        node: int,
        term: int,
        role: str,
        term_at: Callable[[int], int | None] | None = None,
    ) -> None:
        """The node's soft state: its current term and role (``"leader"`` for a leader).

        ``term_at(index)``, if given, reads the node's own log (the term of its entry ending at
        ``index``, None if there is none, :data:`COVERED` if compacted) for Leader
        Completeness; without it the checker's copy of the log is used, which lags the core's
        by the entries not yet handed out in a Ready.
        """
        self.stats.checks += 1
        state = self._node(node)
        if term < state.term:
            self._fail("Term", f"n{node}'s term goes back from {state.term} to {term}")
        state.term = term
        became_leader = role == LEADER and state.role != LEADER
        state.role = role
        if role == LEADER:
            leader = self.leader_of_term.setdefault(term, node)
            if leader != node:
                self._fail(
                    "Election Safety", f"n{leader} and n{node} are both leaders of term {term}"
                )
            if became_leader:
                self.stats.leaders += 1
            self._leader_completeness(node, term_at)

    def observe_commit(self, node: int, commit: int) -> None:
        """The node's in-memory commit index (high watermark) is now ``commit``."""
        self.stats.checks += 1
        state = self._node(node)
        if commit < state.commit:
            self._fail(
                "Commit monotonic",
                f"n{node}'s commit index goes back from {state.commit} to {commit}",
            )
        if commit == state.commit:
            return
        log = state.log
        if commit > log.last_index():
            self._fail(
                "Commit",
                f"n{node} commits {commit} past the end of its log {log.last_index()}",
            )
        if commit > log.start_index and log.position(commit) < 0:
            self._fail("Commit", f"n{node} commits {commit}, which is not an entry boundary")
        # Record or compare every entry this commit covers.
        lo = bisect.bisect_right(log.indexes, max(state.commit, log.start_index))
        hi = bisect.bisect_right(log.indexes, commit)
        top = self.max_committed()
        new_top = top
        for pos in range(lo, hi):
            index = log.indexes[pos]
            known = self.committed.get(index)
            if known is None:
                if index < top:
                    self._fail(
                        "State Machine Safety",
                        f"n{node} commits index {index}, which no other committed log holds",
                    )
                self.committed[index] = (log.terms[pos], log.hashes[pos])
                self.committed_indexes.append(index)
                self.stats.committed_entries += 1
                new_top = index
            elif known[1] != log.hashes[pos]:
                self._fail(
                    "State Machine Safety",
                    f"n{node} commits (index={index}, term={log.terms[pos]}) but "
                    f"(index={index}, term={known[0]}) was committed before",
                )
        if commit < top and self.committed.get(commit) is None and commit > log.start_index:
            self._fail("State Machine Safety", f"n{node} commits {commit}, not a committed entry")
        state.commit = commit
        if new_top > top:
            previous = self._commit_by_term.get(state.term, 0)
            self._commit_by_term[state.term] = max(previous, new_top)
            # A leader of a later term that exists now must already hold this entry.
            for other, other_state in self.nodes.items():
                if other_state.role == LEADER and other_state.term > state.term:
                    self._require_committed_prefix(other, new_top, "Leader Completeness")

    def observe_applied(self, node: int, entries: Iterable[EntryView]) -> None:
        """The node's state machine applied ``entries`` in this order."""
        state = self._node(node)
        for index, term, _digest in entries:
            self.stats.checks += 1
            self.stats.applied_entries += 1
            pos = bisect.bisect_right(self.committed_indexes, state.applied)
            if pos >= len(self.committed_indexes):
                self._fail(
                    "State Machine Safety",
                    f"n{node} applies (index={index}, term={term}) before anyone committed it",
                )
            expected = self.committed_indexes[pos]
            if index != expected:
                self._fail(
                    "State Machine Safety",
                    f"n{node} applies index {index} after {state.applied}; the next committed "
                    f"entry is {expected}",
                )
            if index > state.commit:
                self._fail(
                    "Applied <= commit", f"n{node} applies {index} past its commit {state.commit}"
                )
            if self.committed[index][0] != term:
                self._fail(
                    "State Machine Safety",
                    f"n{node} applies (index={index}, term={term}) but term "
                    f"{self.committed[index][0]} was committed there",
                )
            log_term = state.log.term_at(index)
            if log_term is not None:
                pos_in_log = state.log.position(index)
                if pos_in_log >= 0 and state.log.hashes[pos_in_log] != self.committed[index][1]:
                    self._fail(
                        "State Machine Safety",
                        f"n{node} applies index {index} with a payload or history that differs "
                        "from the committed one",
                    )
            state.applied = index
            if index > self.max_applied:
                self.max_applied = index

    def observe_applied_snapshot(self, node: int, index: int) -> None:
        """The node's state machine was reset to a snapshot at ``index``."""
        state = self._node(node)
        if index < state.applied:
            self._fail(
                "Applied monotonic",
                f"n{node} applies snapshot {index} behind its applied index {state.applied}",
            )
        if index > self.max_committed():
            self._fail("State Machine Safety", f"n{node} applies uncommitted snapshot {index}")
        state.applied = index

    def observe_durable(self, node: int, term: int, vote: int, commit: int) -> None:
        """The node's hard state reached stable storage: term, vote (0 = none) and commit."""
        self.stats.checks += 1
        state = self._node(node)
        if term < state.durable_term:
            self._fail(
                "Durable term", f"n{node}'s durable term goes back {state.durable_term} -> {term}"
            )
        if term == state.durable_term and state.durable_vote and vote != state.durable_vote:
            self._fail(
                "Vote once per term",
                f"n{node} changes its durable vote in term {term}: "
                f"n{state.durable_vote} -> n{vote}",
            )
        if commit < state.durable_commit:
            self._fail(
                "Durable commit monotonic",
                f"n{node}'s durable commit goes back {state.durable_commit} -> {commit}",
            )
        state.durable_term, state.durable_vote, state.durable_commit = term, vote, commit

    def on_restart(
        self,
        node: int,
        snapshot: tuple[int, int],
        entries: Sequence[EntryView],
        term: int,
        commit: int,
    ) -> None:
        """The node crashed and restarts from its durable state: a snapshot ``(index, term)``,
        the durable entries after it, and the durable hard state's term and commit."""
        self.stats.restarts += 1
        state = self._node(node)
        if commit < state.durable_commit:
            self._fail(
                "Durable commit monotonic",
                f"n{node} restarts with commit {commit} below its durable commit "
                f"{state.durable_commit}",
            )
        old_commit = state.commit
        # Terms this node led in memory but never made durable (its durable term is lower):
        # it sent nothing in them (messages go out after the hard state is durable), so their
        # entries existed nowhere else, and the node may lead the same term again and write
        # other entries at the same indexes. Forget those entries for Log Matching.
        lost_terms = {t for t, leader in self.leader_of_term.items() if leader == node and t > term}
        if lost_terms:
            log = state.log
            for index, entry_term, prefix_hash in zip(
                log.indexes, log.terms, log.hashes, strict=True
            ):
                if entry_term in lost_terms and self._prefix_at.get((index, entry_term)) == (
                    prefix_hash
                ):
                    del self._prefix_at[(index, entry_term)]
        state.incarnation += 1
        state.log = _NodeLog()
        state.role = "follower"
        state.commit = 0
        state.applied = 0
        self.on_snapshot(node, snapshot[0], snapshot[1])
        self.on_write(node, snapshot[0], entries)
        # The restarted node's term: the durable one (the in-memory term may have been lost, and
        # a term can only go back to what this node durably promised).
        state.term = term
        # Every committed entry the node knew of before the crash and persisted must be back.
        self._require_committed_prefix(node, min(old_commit, commit), "Committed entry lost")
        self.observe_commit(node, commit)
        state.applied = snapshot[0]
