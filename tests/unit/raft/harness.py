"""A tiny in-process cluster for the Raft unit tests: nodes over MemoryStorage, a message list."""

from __future__ import annotations

import random
from collections.abc import Iterable

from rilke.replication.raft import (
    Config,
    ConfState,
    Entry,
    MemoryStorage,
    Message,
    MessageType,
    RaftNode,
    Role,
)


def config(node_id: int, voters: Iterable[int], **kw: object) -> Config:
    kw.setdefault("pre_vote", False)
    kw.setdefault("check_quorum", False)
    return Config(node_id=node_id, voters=tuple(voters), **kw)  # type: ignore[arg-type]


class Cluster:
    """Nodes 1..n; ``pending`` holds sent, undelivered messages; ``applied`` what each applied."""

    def __init__(self, n: int, seed: int = 0, **kw: object) -> None:
        self.voters = list(range(1, n + 1))
        """Every node's id (the harness processes and delivers to these)."""
        self.bootstrap = list(self.voters)
        """The group's initial voters: every node, including later joiners, starts with it."""
        self.kw = kw
        self.seed = seed
        self.stores = {i: self._new_storage() for i in self.voters}
        self.nodes: dict[int, RaftNode] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.pending: list[Message] = []
        self.restarts = 0
        for i in self.voters:
            self.start(i)

    def _new_storage(self) -> MemoryStorage:
        return MemoryStorage(ConfState(frozenset(self.bootstrap)))

    def start(self, node_id: int) -> None:
        """Start (or restart from its storage) a node; a new id joins the harness."""
        if node_id not in self.voters:
            self.voters.append(node_id)
            self.stores[node_id] = self._new_storage()
        self.restarts += 1
        rng = random.Random(self.seed * 1_000_003 + node_id * 7919 + self.restarts)
        self.nodes[node_id] = RaftNode(
            config(node_id, self.bootstrap, **self.kw), self.stores[node_id], rng
        )
        self.applied[node_id] = []

    def process(self, node_id: int) -> list[Message]:
        """Handle one Ready of the node in the I/O order; returns (and queues) its messages."""
        node = self.nodes[node_id]
        if not node.has_ready():
            return []
        rd = node.ready()
        self.stores[node_id].persist_ready(rd)
        sent = list(rd.messages) + list(rd.heartbeats)
        self.pending.extend(sent)
        self.applied[node_id].extend(rd.committed_entries)
        node.advance(rd)
        return sent

    def take(self, node_id: int) -> list[Message]:
        """Process the node's Ready and take its messages out of the network."""
        sent = self.process(node_id)
        for m in sent:
            self.pending.remove(m)
        return sent

    def deliver_all(self, drop: set[int] | None = None) -> None:
        msgs, self.pending = self.pending, []
        for m in msgs:
            if drop and (m.to in drop or m.frm in drop):
                continue
            self.nodes[m.to].step(m)

    def stabilize(self, drop: set[int] | None = None) -> None:
        for _ in range(1000):
            for i in self.voters:
                self.process(i)
            if not self.pending:
                if not any(self.nodes[i].has_ready() for i in self.voters):
                    return
                continue
            self.deliver_all(drop)
        raise AssertionError("cluster did not settle")

    def elect(self, node_id: int) -> RaftNode:
        self.nodes[node_id].campaign()
        self.stabilize()
        leader = self.nodes[node_id]
        assert leader.role is Role.LEADER
        return leader

    def leaders(self) -> list[int]:
        return [i for i, n in self.nodes.items() if n.role is Role.LEADER]


def msg(type_: MessageType, frm: int, to: int, term: int, **kw: object) -> Message:
    return Message(type_, to, frm, term, **kw)  # type: ignore[arg-type]
