"""The nemesis: what each fault kind of :data:`.faults.FAULT_KINDS` does to a cluster.

:func:`apply_fault` starts a fault and schedules its end (heal the links, restart the node,
resume it, restore the link, speed the disk up). Targets are drawn from the event's own seed
and resolved against the cluster's state when the fault fires; a fault that does not apply
then (no leader to isolate, no learner to promote) is counted as skipped. Faults ending after
the cluster was healed do nothing (the heal ended them).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from rilke.errors import RilkeError
from rilke.replication.raft import ConfChange, ConfChangeType

from .cluster import Cluster, SimNode
from .faults import FaultEvent


def _count(table: dict[str, int], kind: str) -> None:
    table[kind] = table.get(kind, 0) + 1


def apply_fault(cluster: Cluster, event: FaultEvent) -> None:
    """Start ``event`` now and schedule its end; a fault that does not apply is skipped."""
    rng = random.Random(event.seed)
    ids = sorted(cluster.nodes)
    running = [n.node_id for n in cluster.up_nodes()]
    conf = cluster.member_conf() if running else cluster.initial_conf
    voters = sorted(conf.voters)
    leader = cluster.leader()
    kind = event.kind
    if leader is not None and leader.paused and kind not in ("isolate_leader", "crash_leader"):
        leader = None  # a paused process takes no requests
    end = event.duration_ms
    done: Callable[[], None] | None = None
    detail = ""
    if kind in ("partition_minority", "split_no_majority") and len(voters) < 3:
        kind = "isolate"  # one or two voters: no minority to cut off, isolate a node
    if kind in ("isolate", "isolate_leader"):
        target = leader.node_id if kind == "isolate_leader" and leader else rng.choice(ids)
        if kind == "isolate_leader" and leader is None:
            _count(cluster.faults.skipped, kind)
            return
        links = {(target, o) for o in ids} | {(o, target) for o in ids}
        done = _block_links(cluster, links)
        detail = f"n{target}"
    elif kind in ("partition_minority", "split_no_majority"):
        shuffled = ids[:]
        rng.shuffle(shuffled)
        if kind == "partition_minority":
            cut = rng.randint(1, (len(voters) - 1) // 2)
            minority = set(rng.sample(voters, cut)) if voters else set()
            groups = [minority, set(ids) - minority]
        else:
            # Three groups of the voters; none holds a majority of them.
            quorum = len(voters) // 2 + 1
            groups = [set(), set(), set()]
            for i, v in enumerate(rng.sample(voters, len(voters))):
                groups[i % 3].add(v)
            assert all(len(g) < quorum for g in groups) or len(voters) < 3
            for other in set(ids) - set(voters):
                groups[rng.randrange(3)].add(other)
        links = set()
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                for x in a:
                    for y in b:
                        links |= {(x, y), (y, x)}
        done = _block_links(cluster, links)
        detail = " | ".join(",".join(f"n{x}" for x in sorted(g)) for g in groups)
    elif kind == "asymmetric":
        pairs = [(a, b) for a in ids for b in ids if a != b]
        links = set(rng.sample(pairs, rng.randint(1, max(1, len(pairs) // 3))))
        if leader is not None and rng.random() < 0.5:
            # The leader can send but not hear back (or the other way round).
            target = leader.node_id
            links = {(o, target) for o in ids} if rng.random() < 0.5 else {(target, o) for o in ids}
        done = _block_links(cluster, links)
        detail = " ".join(f"n{a}->n{b}" for a, b in sorted(links))
    elif kind == "lossy_link":
        src, dst = rng.sample(ids, 2)
        before = cluster.network.knobs(src, dst)
        cluster.network.set_link(src, dst, replace(before, loss_probability=0.8))

        def restore() -> None:
            cluster.network.set_link(src, dst, before)

        done = restore
        detail = f"n{src}->n{dst} loss=0.8"
    elif kind in ("crash", "crash_leader"):
        if kind == "crash_leader":
            if leader is None:
                _count(cluster.faults.skipped, kind)
                return
            target = leader.node_id
        else:
            if not running:
                _count(cluster.faults.skipped, kind)
                return
            target = rng.choice(running)
        cluster.crash(target)
        crashed = target

        def restart() -> None:
            if cluster.nodes[crashed].raft is None:
                cluster.start(crashed)

        done = restart
        detail = f"n{target}"
    elif kind == "pause":
        if not running:
            _count(cluster.faults.skipped, kind)
            return
        target = rng.choice(running)
        cluster.pause(target)
        end = min(end, cluster.knobs.pause_max_ms)
        done = lambda: cluster.resume(target)  # noqa: E731
        detail = f"n{target}"
    elif kind == "slow_disk":
        target = rng.choice(ids)
        cluster.nodes[target].slow_disk = True

        def fast() -> None:
            cluster.nodes[target].slow_disk = False

        done = fast
        detail = f"n{target}"
    elif kind == "transfer_leader":
        if leader is None or leader.raft is None or len(voters) < 2:
            _count(cluster.faults.skipped, kind)
            return
        to = rng.choice([v for v in voters if v != leader.node_id] or voters)
        # Sometimes ask a follower, which forwards the request to the leader.
        asked = leader
        followers = [n for n in cluster.up_nodes() if n is not leader and not n.paused]
        if followers and rng.random() < 0.3:
            asked = rng.choice(followers)
        assert asked.raft is not None
        try:
            asked.raft.transfer_leadership(to)
        except RilkeError as exc:
            _count(cluster.faults.skipped, kind)
            cluster.record(asked.node_id, "transfer-refused", f"to n{to}: {exc}")
            return
        cluster.faults.transfers += 1
        detail = f"n{asked.node_id} asked to hand leadership to n{to}"
        cluster.after_input(asked)
    elif kind in ("add_learner", "promote_learner", "remove_voter"):
        if leader is None or leader.raft is None:
            _count(cluster.faults.skipped, kind)
            return
        change = _pick_conf_change(cluster, kind, leader, rng)
        if change is None:
            _count(cluster.faults.skipped, kind)
            return
        if change.type is ConfChangeType.ADD_LEARNER:
            target_node = cluster.nodes[change.node_id]
            if not target_node.started:
                cluster.start(change.node_id)
        try:
            leader.raft.propose_conf_change(change)
        except RilkeError as exc:
            _count(cluster.faults.skipped, kind)
            cluster.record(leader.node_id, "conf-refused", f"{change.encode().decode()}: {exc}")
            cluster.after_input(leader)
            return
        if change.type is ConfChangeType.REMOVE_NODE:
            cluster.retired.add(change.node_id)
        detail = change.encode().decode()
        cluster.after_input(leader)
    else:
        raise AssertionError(f"unknown fault kind {kind}")
    _count(cluster.faults.applied, kind)
    cluster.record(-1, "fault", f"{event} {detail}")
    if done is not None:
        finish = done

        def end_fault() -> None:
            if cluster.healed_at_ms is not None:
                return  # heal() already ended every fault
            cluster.record(-1, "fault-end", f"{event}")
            finish()

        cluster.loop.call_later(end, end_fault)


def _pick_conf_change(
    cluster: Cluster, kind: str, leader: SimNode, rng: random.Random
) -> ConfChange | None:
    assert leader.raft is not None
    conf = leader.raft.conf
    members = conf.voters | conf.learners
    if kind == "add_learner":
        spares = [i for i in sorted(cluster.nodes) if i not in members and i not in cluster.retired]
        if not spares:
            return None
        return ConfChange(ConfChangeType.ADD_LEARNER, rng.choice(spares))
    if kind == "promote_learner":
        learners = sorted(conf.learners)
        if not learners:
            return None
        return ConfChange(ConfChangeType.ADD_VOTER, rng.choice(learners))
    candidates = sorted(v for v in conf.voters if v != leader.node_id)
    if len(conf.voters) <= 3 or not candidates:
        return None
    return ConfChange(ConfChangeType.REMOVE_NODE, rng.choice(candidates))


def _block_links(cluster: Cluster, links: set[tuple[int, int]]) -> Callable[[], None]:
    for a, b in links:
        cluster.network.block(a, b)

    def unblock() -> None:
        for a, b in links:
            cluster.network.unblock(a, b)

    return unblock
