"""Property tests: after any sequence of joins, leaves, crashes, heartbeats, stuck pollers,
static restarts, topic growth and expiries,

* at no step is a partition held by two members (assigned or pending revocation), nor owned
  by two consumers the group counts as members (checked by the harness after every call);
* once the survivors have heartbeated the group to stability, every partition of the
  subscribed topics is owned by exactly one live member, which subscribes to its topic.
"""

from __future__ import annotations

import itertools

from coord_harness import Cluster, FakeConsumer
from hypothesis import given, settings
from hypothesis import strategies as st

from rilke.server.coordinator import CoordinatorConfig, GroupState, TopicPartition

SESSION_MS = 3000
POLL_MS = 8000
REBALANCE_MS = 4000
SUBSCRIPTIONS = (("a",), ("b",), ("a", "b"))

_join = st.tuples(st.just("join"), st.integers(0, 2), st.booleans())
op = st.one_of(
    _join,
    _join,
    st.tuples(st.just("heartbeat"), st.integers(0, 15), st.just(False)),
    st.tuples(st.just("heartbeat"), st.integers(0, 15), st.just(False)),
    st.tuples(st.just("leave"), st.integers(0, 15), st.booleans()),
    st.tuples(st.just("crash"), st.integers(0, 15), st.just(False)),
    st.tuples(st.just("stall"), st.integers(0, 15), st.booleans()),
    st.tuples(st.just("restart"), st.integers(0, 15), st.just(False)),
    st.tuples(st.just("advance"), st.integers(1, 2500), st.just(False)),
    st.tuples(st.just("grow"), st.integers(0, 1), st.just(False)),
    st.tuples(st.just("commit"), st.integers(0, 15), st.just(False)),
    st.tuples(st.just("reload"), st.just(0), st.just(False)),
)


_RELOADS = itertools.count()


def _reload(cl: Cluster) -> None:
    """Fail the coordinator over: a new one replays the compacted log and carries on; its
    groups, epochs, assignments and offsets must be what the old one had."""
    from rilke.server.coordinator import GroupCoordinator

    last = {rec.key: i for i, rec in enumerate(cl.log)}
    # Member ids must never repeat (the broker uses UUIDs): a zombie consumer could otherwise
    # speak for a new member with its old id.
    ids = itertools.count()
    prefix = f"r{next(_RELOADS)}-"
    fresh = GroupCoordinator(cl.config, member_id_factory=lambda: f"{prefix}{next(ids)}")
    for i, rec in enumerate(cl.log):
        if last[rec.key] == i:
            fresh.replay(rec.key, rec.value)
    fresh.finish_loading(cl.now)
    for gid, g in cl.coord.groups.items():
        got = fresh.groups[gid]
        assert got.snapshot()["members"] == g.snapshot()["members"], gid
        assert got.group_epoch == g.group_epoch
        assert got.offsets == g.offsets
    assert set(fresh.groups) == set(cl.coord.groups)
    cl.coord = fresh
    cl.check()


def _pick(cl: Cluster, i: int) -> FakeConsumer | None:
    live = [c for c in cl.consumers if not c.dead]
    return live[i % len(live)] if live else None


def _run(cl: Cluster, ops: list[tuple[str, int, bool]], assignor: str) -> None:
    static_count = 0
    for kind, i, flag in ops:
        c = _pick(cl, i)
        if kind == "join":
            if len([c for c in cl.consumers if not c.dead]) >= 6:
                continue
            instance = None
            if flag:
                static_count += 1
                instance = f"static-{static_count}"
            cl.consumer(
                topics=SUBSCRIPTIONS[i],
                instance_id=instance,
                session_timeout_ms=SESSION_MS,
                max_poll_interval_ms=POLL_MS,
                rebalance_timeout_ms=REBALANCE_MS,
                assignor=assignor,
            ).join()
        elif kind == "reload":
            _reload(cl)
        elif c is None:
            continue
        elif kind == "heartbeat":
            c.heartbeat()
        elif kind == "leave":
            c.leave(static=flag and c.instance_id is not None)
        elif kind == "crash":
            c.crash()
        elif kind == "stall":
            # flag: the application stops polling (heartbeats go on) or recovers.
            c.poll_age_ms = c.poll_age_ms + 1000 if flag else 0
        elif kind == "restart":
            # A static member's process restarts with the same instance id.
            if c.instance_id is not None:
                c.crash()
                cl.consumer(
                    topics=c.topics,
                    instance_id=c.instance_id,
                    session_timeout_ms=SESSION_MS,
                    max_poll_interval_ms=POLL_MS,
                    rebalance_timeout_ms=REBALANCE_MS,
                    assignor=assignor,
                ).join()
        elif kind == "advance":
            cl.advance(i)
        elif kind == "grow":
            topic = "ab"[i]
            cl.topics[topic] = min(cl.topics[topic] + 1, 10)
        elif kind == "commit" and c.owned and c.epoch > 0:
            reply = cl.commit("g", dict.fromkeys(c.owned, 1), c.member_id, c.epoch)
            # A consumer the coordinator still counts as a member commits what it owns.
            g = cl.coord.groups.get("g")
            if (
                g is not None
                and c.member_id in g.members
                and not g.members[c.member_id].left_static
            ) and c.epoch == g.members[c.member_id].member_epoch:
                assert reply.error is None, reply.error


def _heal(cl: Cluster) -> None:
    """Survivors poll and heartbeat; time passes until every dead member has expired."""
    for c in cl.consumers:
        c.poll_age_ms = 0
    for _ in range(2 * (SESSION_MS + REBALANCE_MS) // 500):
        cl.advance(500)
        for c in list(cl.consumers):
            if not c.dead:
                if not c.joined:
                    continue
                c.heartbeat()
    cl.stabilize(rounds=30)


@settings(max_examples=150)
@given(
    partitions=st.tuples(st.integers(0, 7), st.integers(0, 5)),
    ops=st.lists(op, min_size=20, max_size=80),
    assignor=st.sampled_from(["sticky", "range", "roundrobin"]),
)
def test_every_partition_has_exactly_one_live_owner_once_stable(
    partitions: tuple[int, int], ops: list[tuple[str, int, bool]], assignor: str
) -> None:
    cl = Cluster({"a": partitions[0], "b": partitions[1]}, config=CoordinatorConfig())
    _run(cl, ops, assignor)
    _heal(cl)
    g = cl.coord.groups.get("g")
    live = [c for c in cl.consumers if not c.dead and c.joined]
    if g is None or not g.members:
        assert not live
        return
    assert g.state is GroupState.STABLE
    assert {c.member_id for c in live} == set(g.members)
    subscribed = {t for c in live for t in c.topics}
    expected = {TopicPartition(t, p) for t in subscribed for p in range(cl.topics[t])}
    owners: dict[TopicPartition, str] = {}
    for c in live:
        m = g.members[c.member_id]
        assert c.owned == m.assigned == g.target[c.member_id]
        for tp in c.owned:
            assert tp.topic in c.topics
            assert tp not in owners
            owners[tp] = c.member_id
    assert set(owners) == expected


@settings(max_examples=60)
@given(
    n_partitions=st.integers(1, 24),
    ops=st.lists(st.tuples(st.sampled_from(["join", "leave"]), st.integers(0, 9)), max_size=20),
)
def test_sticky_homogeneous_group_is_balanced_and_moves_little(
    n_partitions: int, ops: list[tuple[str, int]]
) -> None:
    cl = Cluster({"t": n_partitions})
    for kind, i in ops:
        live = [c for c in cl.consumers if not c.dead]
        if kind == "join" or not live:
            if len(live) < 8:
                cl.consumer().join()
        else:
            live[i % len(live)].leave()
        cl.stabilize()
        live = [c for c in cl.consumers if not c.dead]
        sizes = [len(c.owned) for c in live]
        if sizes:
            assert max(sizes) - min(sizes) <= 1
            assert sum(sizes) == n_partitions


def test_long_seeded_random_walks() -> None:
    """Deeper sequences than hypothesis likes to build: 40 seeded walks of 400 steps."""
    import random

    kinds = [
        "join",
        "join",
        "heartbeat",
        "heartbeat",
        "heartbeat",
        "leave",
        "crash",
        "stall",
        "restart",
        "advance",
        "advance",
        "grow",
        "commit",
        "reload",
    ]
    for seed in range(40):
        rng = random.Random(seed)
        cl = Cluster({"a": rng.randint(0, 8), "b": rng.randint(0, 6)})
        ops = []
        for _ in range(400):
            kind = rng.choice(kinds)
            if kind == "join":
                ops.append((kind, rng.randint(0, 2), rng.random() < 0.4))
            elif kind == "advance":
                ops.append((kind, rng.randint(1, 1500), False))
            elif kind == "grow":
                ops.append((kind, rng.randint(0, 1), False))
            else:
                ops.append((kind, rng.randint(0, 15), rng.random() < 0.5))
        _run(cl, ops, rng.choice(["sticky", "range", "roundrobin"]))
        _heal(cl)
        g = cl.coord.groups.get("g")
        live = [c for c in cl.consumers if not c.dead and c.joined]
        if g is not None and live:
            assert g.state is GroupState.STABLE, seed
            owned = [tp for c in live for tp in c.owned]
            assert len(owned) == len(set(owned)), seed
            subscribed = {t for c in live for t in c.topics}
            assert set(owned) == {
                TopicPartition(t, p) for t in subscribed for p in range(cl.topics[t])
            }, seed
