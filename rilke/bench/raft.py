"""`rilke bench raft`: what the Raft core costs per proposal and per committed entry.

Drives RaftNodes in-process over MemoryStorage (no network, no disk) and times only the
leader's calls into the core (propose, step, ready, advance), so the figures say what the core
adds to the produce path of a partition leader. Storage writes and message delivery are the
harness's and are reported apart. Core figures are thread CPU time (``time.thread_time``), so
a shared, busy machine inflates them less than wall time; each timed call adds ~0.2 us.
"""

from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from typing import Any

from rilke.replication.raft import (
    Config,
    ConfState,
    MemoryStorage,
    Message,
    MessageType,
    RaftNode,
    Role,
)


@dataclass
class RaftBenchResult:
    group_size: int
    entries: int
    per_ready: int
    pipelined: bool
    broadcast_commit: bool
    propose_us: float
    """Leader CPU time in propose() per entry."""
    leader_us_per_entry: float
    """All leader core CPU time (propose, step, ready, advance) per committed entry."""
    leader_us_per_ready: float
    """The same per Ready cycle (per committed batch when per_ready == 1)."""
    followers_us_per_entry: float
    total_us_per_entry: float
    """Wall time of the whole loop (leader, followers, storage, delivery) per entry."""
    cpu_share: float
    """CPU time / wall time of the loop: below 1 when the machine is shared and the process
    waits for a core. Multiply a wall figure by it to estimate the CPU time."""


def _make(group_size: int, node_id: int, broadcast_commit: bool) -> tuple[RaftNode, MemoryStorage]:
    voters = tuple(range(1, group_size + 1))
    storage = MemoryStorage(ConfState(frozenset(voters)))
    config = Config(
        node_id=node_id,
        voters=voters,
        broadcast_commit=broadcast_commit,
        max_inflight_msgs=1 << 20,
        max_inflight_bytes=1 << 40,
        max_uncommitted_bytes=1 << 40,
    )
    return RaftNode(config, storage, random.Random(node_id)), storage


def run_bench(
    group_size: int,
    entries: int,
    per_ready: int = 1,
    payload_bytes: int = 1024,
    *,
    pipelined: bool = False,
    broadcast_commit: bool = True,
) -> RaftBenchResult:
    """Commit ``entries`` entries of ``payload_bytes``, ``per_ready`` proposals per Ready;
    ``pipelined`` overlaps each round's replication with the next round's proposals."""
    nodes = {}
    stores = {}
    for i in range(1, group_size + 1):
        nodes[i], stores[i] = _make(group_size, i, broadcast_commit)
    leader = nodes[1]
    inbox: dict[int, list[Message]] = {i: [] for i in nodes}

    clock = time.thread_time

    def cycle(node_id: int) -> float:
        """Handle the node's Ready; returns core time spent (seconds)."""
        node = nodes[node_id]
        t0 = clock()
        if not node.has_ready():
            return clock() - t0
        rd = node.ready()
        spent = clock() - t0
        stores[node_id].persist_ready(rd)
        for m in rd.messages:
            inbox[m.to].append(m)
        for m in rd.heartbeats:
            inbox[m.to].append(m)
        t0 = clock()
        node.advance(rd)
        return spent + clock() - t0

    def deliver(node_id: int) -> float:
        msgs, inbox[node_id] = inbox[node_id], []
        t0 = clock()
        step = nodes[node_id].step
        for m in msgs:
            step(m)
        return clock() - t0

    def settle() -> None:
        for _ in range(100):
            for i in nodes:
                cycle(i)
            if not any(inbox.values()) and not any(n.has_ready() for n in nodes.values()):
                return
            for i in nodes:
                deliver(i)

    leader.campaign()
    settle()
    assert leader.role is Role.LEADER
    payload = b"x" * payload_bytes
    propose_s = leader_s = followers_s = 0.0
    start_commit = leader.commit_index
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    rounds = entries // per_ready
    followers = [i for i in nodes if i != 1]
    for _ in range(rounds):
        t0 = clock()
        for _ in range(per_ready):
            leader.propose(payload)
        spent = clock() - t0
        propose_s += spent
        leader_s += spent
        if pipelined:
            # Steady load: the answers to the previous round arrive with the next proposals,
            # so one Ready carries the new entries and the new commit index together.
            leader_s += deliver(1)
            leader_s += cycle(1)
        else:
            # Lockstep: each round is committed and applied before the next proposal.
            leader_s += cycle(1)
        for i in followers:
            followers_s += deliver(i)
            followers_s += cycle(i)
        if not pipelined:
            leader_s += deliver(1)
            leader_s += cycle(1)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    settle()
    committed = leader.commit_index - start_commit
    assert committed == rounds * per_ready, (committed, rounds * per_ready)
    us = 1e6
    return RaftBenchResult(
        group_size=group_size,
        entries=committed,
        per_ready=per_ready,
        pipelined=pipelined,
        broadcast_commit=broadcast_commit,
        propose_us=propose_s * us / committed,
        leader_us_per_entry=leader_s * us / committed,
        leader_us_per_ready=leader_s * us / rounds,
        followers_us_per_entry=followers_s * us / committed / max(1, len(followers)),
        total_us_per_entry=wall * us / committed,
        cpu_share=min(1.0, cpu / wall) if wall > 0 else 1.0,
    )


def run_leader_only(
    group_size: int,
    entries: int,
    per_ready: int = 1,
    payload_bytes: int = 1024,
    *,
    broadcast_commit: bool = True,
) -> float:
    """The leader's core CPU time per committed entry, in microseconds, with the followers
    reduced to their answers: each round proposes ``per_ready`` entries, handles the Ready,
    steps one APPEND_RESP per follower and handles the next Ready (the commit). One timer
    around the whole loop, so the figure includes MemoryStorage writes (~1 us) and building
    the answers, but no per-call timing overhead."""
    voters = tuple(range(1, group_size + 1))
    storage = MemoryStorage(ConfState(frozenset(voters)))
    leader = RaftNode(
        Config(
            node_id=1,
            voters=voters,
            pre_vote=False,
            broadcast_commit=broadcast_commit,
            max_inflight_msgs=1 << 20,
            max_inflight_bytes=1 << 40,
            max_uncommitted_bytes=1 << 40,
        ),
        storage,
        random.Random(1),
    )
    followers = voters[1:]
    append_resp = MessageType.APPEND_RESP

    def cycle() -> None:
        if leader.has_ready():
            rd = leader.ready()
            storage.persist_ready(rd)
            leader.advance(rd)

    leader.campaign()
    cycle()
    for f in followers:
        leader.step(Message(MessageType.VOTE_RESP, 1, f, leader.term))
    cycle()
    payload = b"x" * payload_bytes
    batch = [payload] * per_ready
    rounds = max(1, entries // per_ready)

    def run(n: int) -> None:
        term = leader.term
        for _ in range(n):
            index = leader.propose(batch if per_ready > 1 else payload)
            cycle()
            for f in followers:
                leader.step(Message(append_resp, 1, f, term, index=index))
            cycle()

    run(max(1, rounds // 10))  # warm up
    start_commit = leader.commit_index
    t0 = time.thread_time()
    run(rounds)
    spent = time.thread_time() - t0
    assert leader.commit_index - start_commit == rounds * per_ready
    return spent * 1e6 / (rounds * per_ready)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "raft", help="the Raft core's cost per proposal and per committed entry (in-process)"
    )
    parser.add_argument("--entries", type=int, default=20_000, help="entries to commit per run")
    parser.add_argument("--payload-bytes", type=int, default=1024, help="bytes per entry")
    parser.add_argument(
        "--per-ready",
        type=int,
        nargs="+",
        default=[1, 16],
        help="proposals per Ready cycle (1: one committed batch per cycle)",
    )
    parser.add_argument(
        "--group-sizes", type=int, nargs="+", default=[1, 3], help="voters in the group"
    )
    parser.add_argument(
        "--pipelined",
        choices=["no", "yes", "both"],
        default="both",
        help="overlap replication with the next proposals (steady load) or run in lockstep",
    )
    parser.add_argument(
        "--broadcast-commit",
        choices=["no", "yes"],
        default="yes",
        help="Config.broadcast_commit: tell followers each new commit index at once (etcd)",
    )
    parser.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    modes = {"no": [False], "yes": [True], "both": [False, True]}[args.pipelined]
    print(
        f"{'voters':>6} {'mode':>9} {'per-ready':>9} {'entries':>8} {'propose us':>10} "
        f"{'leader us/entry':>15} {'leader us/ready':>15} {'follower us/entry':>17} "
        f"{'wall us/entry':>13} {'cpu/wall':>8}"
    )
    for size in args.group_sizes:
        for pipelined in modes:
            for per_ready in args.per_ready:
                r = run_bench(
                    size,
                    args.entries,
                    per_ready,
                    args.payload_bytes,
                    pipelined=pipelined,
                    broadcast_commit=args.broadcast_commit == "yes",
                )
                mode = "pipelined" if r.pipelined else "lockstep"
                print(
                    f"{r.group_size:>6} {mode:>9} {r.per_ready:>9} {r.entries:>8} "
                    f"{r.propose_us:>10.2f} {r.leader_us_per_entry:>15.2f} "
                    f"{r.leader_us_per_ready:>15.2f} {r.followers_us_per_entry:>17.2f} "
                    f"{r.total_us_per_entry:>13.2f} {r.cpu_share:>8.2f}"
                )
    print()
    print("leader only (followers reduced to their answers; one timer around the loop):")
    print(f"{'voters':>6} {'per-ready':>9} {'leader us/entry':>15} {'leader us/ready':>15}")
    for size in args.group_sizes:
        for per_ready in args.per_ready:
            us = run_leader_only(
                size,
                args.entries,
                per_ready,
                args.payload_bytes,
                broadcast_commit=args.broadcast_commit == "yes",
            )
            print(f"{size:>6} {per_ready:>9} {us:>15.2f} {us * per_ready:>15.2f}")
    return 0
