"""A quick randomized check of the core's safety under loss, duplication, reordering, crashes,
partitions, transfers and membership changes (the full simulation lives in tests/sim)."""

from __future__ import annotations

import random

import pytest

from rilke.errors import RilkeError
from rilke.replication.raft import ConfChange, ConfChangeType, Role
from tests.unit.raft.harness import Cluster


class Checker:
    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        self.committed: dict[int, tuple[int, bytes]] = {}
        self.seen_at_term: dict[int, int] = {}

    def observe(self, c: Cluster, seed: int, down: set[int] | frozenset[int] = frozenset()) -> None:
        max_term = max(node.term for node in c.nodes.values())
        for i, node in c.nodes.items():
            if node.role is Role.LEADER:
                prev = self.leader_of_term.setdefault(node.term, i)
                assert prev == i, f"seed {seed}: two leaders in term {node.term}: {prev}, {i}"
            for entry in c.applied[i]:
                seen = self.committed.setdefault(entry.index, (entry.term, entry.data))
                self.seen_at_term.setdefault(entry.index, max_term)
                assert seen == (entry.term, entry.data), (
                    f"seed {seed}: node {i} applied {entry} but {seen} was committed there"
                )
            c.applied[i].clear()
        # Every committed entry is in the log of every leader of a later term (a crashed node's
        # object keeps its last state: skip it).
        for i, node in c.nodes.items():
            if node.role is not Role.LEADER or i in down:
                continue
            for index, (term, _) in self.committed.items():
                if index >= node.first_index and node.term > self.seen_at_term[index]:
                    assert node.term_at(index) == term, (
                        f"seed {seed}: leader {i} (term {node.term}) lacks committed {index}"
                    )


def run(seed: int, steps: int) -> Cluster:
    rng = random.Random(seed)
    n = rng.choice([3, 3, 5])
    c = Cluster(
        n,
        seed=seed,
        pre_vote=rng.random() < 0.7,
        check_quorum=rng.random() < 0.7,
        max_inflight_msgs=rng.choice([1, 4, 64]),
        max_size_per_msg=rng.choice([1, 64, 1 << 20]),
        broadcast_commit=rng.random() < 0.5,
    )
    checker = Checker()
    down: set[int] = set()
    cut: set[tuple[int, int]] = set()
    payload = 0
    for _ in range(steps):
        r = rng.random()
        ids = list(c.voters)
        if r < 0.30:
            node_id = rng.choice(ids)
            if node_id not in down:
                c.nodes[node_id].tick()
        elif r < 0.55:
            node_id = rng.choice(ids)
            if node_id not in down:
                c.process(node_id)
        elif r < 0.80 and c.pending:
            m = c.pending.pop(rng.randrange(len(c.pending)))  # reordering
            if rng.random() < 0.05:
                c.pending.append(m)  # duplication
            if m.to not in down and (m.frm, m.to) not in cut and rng.random() > 0.1:
                c.nodes[m.to].step(m)
        elif r < 0.90:
            for i in ids:
                if i not in down and c.nodes[i].role is Role.LEADER:
                    payload += 1
                    try:
                        c.nodes[i].propose(b"p%d" % payload, offset_count=rng.randint(1, 3))
                    except RilkeError:
                        pass
        elif r < 0.93:
            node_id = rng.choice(ids)
            if node_id in down:
                down.discard(node_id)
                c.start(node_id)
            elif len(down) < (n - 1) // 2:
                down.add(node_id)  # crash: unpersisted state and its Ready are lost
        elif r < 0.95:
            a, b = rng.sample(ids, 2)
            if rng.random() < 0.5:
                cut |= {(a, b), (b, a)}
            else:
                cut.clear()
        elif r < 0.97:
            for i in ids:
                node = c.nodes[i]
                if i not in down and node.role is Role.LEADER:
                    try:
                        node.transfer_leadership(rng.choice(sorted(node.conf.voters)))
                    except RilkeError:
                        pass
        elif r < 0.99:
            _membership_change(c, rng, down)
        else:
            for i in ids:
                if i not in down and c.nodes[i].commit_index > c.nodes[i].first_index + 5:
                    node = c.nodes[i]
                    boundary = node.log_entries(node.commit_index - 3, node.commit_index - 3)
                    if boundary and boundary[0].index <= node.applied_index:
                        c.stores[i].compact(boundary[0].index, node.conf)
        checker.observe(c, seed, down)
    # Heal and require progress: a leader, and a proposal made now commits.
    cut.clear()
    for node_id in sorted(down):
        c.start(node_id)
    down.clear()
    newest = max(c.nodes.values(), key=lambda node: node.commit_index)
    members = newest.conf.voters | newest.conf.learners
    index = 0
    for _ in range(300):
        for i in sorted(members):
            c.nodes[i].tick()
        c.stabilize()
        checker.observe(c, seed)
        leaders = [i for i in c.leaders() if i in members]
        if leaders and not index:
            try:
                index = c.nodes[leaders[0]].propose(b"final")
            except RilkeError:
                pass
        if index and checker.committed.get(index, (0, b""))[1] == b"final":
            return c
    raise AssertionError(f"seed {seed}: no progress after healing")


def _membership_change(c: Cluster, rng: random.Random, down: set[int]) -> None:
    for i in list(c.voters):
        node = c.nodes[i]
        if i in down or node.role is not Role.LEADER:
            continue
        conf = node.conf
        try:
            if conf.learners and rng.random() < 0.5:
                node.propose_conf_change(ConfChange(ConfChangeType.ADD_VOTER, min(conf.learners)))
            elif len(conf.voters) > 3 and rng.random() < 0.5:
                victim = rng.choice(sorted(conf.voters - {i}))
                node.propose_conf_change(ConfChange(ConfChangeType.REMOVE_NODE, victim))
            else:
                new_id = max(c.voters) + 1
                node.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, new_id))
                c.start(new_id)
        except RilkeError:
            pass
        return


@pytest.mark.parametrize("seed", range(24))
def test_random_cluster_stays_safe_and_makes_progress(seed: int) -> None:
    run(seed, 2500)
