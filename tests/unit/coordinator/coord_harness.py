"""A fake broker and fake consumers around the sans-I/O coordinator, joined by plain calls.

``Cluster`` holds the coordinator, the fake clock, the topics and the offsets log (the records
the coordinator asked to append). ``FakeConsumer`` models a consumer's membership manager:
it owns partitions, revokes what the answer leaves out (committing first) and takes what it
adds, and acknowledges on its next heartbeat. After every step the cluster checks the
ownership invariants.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rilke.errors import (
    FencedInstanceIdError,
    FencedMemberEpochError,
    RilkeError,
    UnknownMemberIdError,
)
from rilke.server.coordinator import (
    CoordinatorConfig,
    Event,
    GroupCoordinator,
    GroupState,
    HeartbeatRequest,
    OffsetCommitPartition,
    OffsetCommitRequest,
    Record,
    Reply,
    TopicPartition,
)


def tps(topic: str, *partitions: int) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(topic, p) for p in partitions)


def all_tps(topics: dict[str, int]) -> frozenset[TopicPartition]:
    return frozenset(TopicPartition(t, p) for t, n in topics.items() for p in range(n))


class Cluster:
    def __init__(
        self,
        topics: dict[str, int] | None = None,
        config: CoordinatorConfig | None = None,
        log_end: int = 1000,
    ) -> None:
        self.config = config or CoordinatorConfig()
        self.coord = GroupCoordinator(self.config)
        self.coord.finish_loading(0)
        self.now = 0
        self.topics: dict[str, int] = dict(topics if topics is not None else {"t": 6})
        self.log_end = log_end
        self.log: list[Record] = []
        self.events: list[Event] = []
        self.consumers: list[FakeConsumer] = []

    def take(self, reply: Reply) -> Reply:  # type: ignore[type-arg]
        self.log.extend(reply.output.records)
        self.events.extend(reply.output.events)
        self.check()
        return reply

    def check(self) -> None:
        for g in self.coord.groups.values():
            g.check_invariants()
        # A consumer the group still counts as a member owns only what the coordinator says
        # it holds; with the coordinator's invariant, no partition has two owners.
        seen: dict[tuple[str, TopicPartition], str] = {}
        for c in self.consumers:
            g = self.coord.groups.get(c.group_id)
            if c.dead or g is None or c.member_id not in g.members:
                continue
            m = g.members[c.member_id]
            assert c.owned <= m.assigned | m.pending_revocation, (c.member_id, c.owned)
            for tp in c.owned:
                key = (c.group_id, tp)
                assert key not in seen, f"{key} owned by {seen[key]} and {c.member_id}"
                seen[key] = c.member_id

    def heartbeat(self, req: HeartbeatRequest) -> Reply:  # type: ignore[type-arg]
        return self.take(self.coord.heartbeat(req, self.now, self.topics))

    def advance(self, ms: int) -> None:
        self.now += ms
        out = self.coord.tick(self.now, self.topics)
        self.log.extend(out.records)
        self.events.extend(out.events)
        self.check()

    def end_offset(self, tp: TopicPartition) -> int | None:
        n = self.topics.get(tp.topic)
        if n is None or not 0 <= tp.partition < n:
            return None
        return self.log_end

    def commit(
        self,
        group_id: str,
        offsets: dict[TopicPartition, int],
        member_id: str = "",
        epoch: int = -1,
    ) -> Reply:  # type: ignore[type-arg]
        req = OffsetCommitRequest(
            group_id,
            member_id,
            epoch,
            tuple(OffsetCommitPartition(tp.topic, tp.partition, o) for tp, o in offsets.items()),
        )
        return self.take(self.coord.commit_offsets(req, self.now, self.end_offset))

    def consumer(
        self, group_id: str = "g", topics: tuple[str, ...] = ("t",), **kw: object
    ) -> FakeConsumer:
        c = FakeConsumer(self, group_id, topics, **kw)  # type: ignore[arg-type]
        self.consumers.append(c)
        return c

    def live(self) -> list[FakeConsumer]:
        return [c for c in self.consumers if not c.dead and c.member_id]

    def stabilize(self, group_id: str = "g", rounds: int = 20) -> None:
        """Heartbeat every live consumer until the group is stable and each consumer owns its
        assignment; fails if that takes more than ``rounds`` rounds."""
        for _ in range(rounds):
            for c in list(self.consumers):
                if not c.dead and c.group_id == group_id and c.joined:
                    c.heartbeat()
            g = self.coord.groups.get(group_id)
            if g is None:
                return
            if g.state in (GroupState.STABLE, GroupState.EMPTY) and all(
                c.owned == g.members[c.member_id].assigned
                for c in self.consumers
                if not c.dead and c.joined and c.member_id in g.members
            ):
                return
        raise AssertionError(
            f"group {group_id} did not stabilise: {self.coord.describe_group(group_id)}"
        )


@dataclass
class FakeConsumer:
    cluster: Cluster
    group_id: str
    topics: tuple[str, ...]
    instance_id: str | None = None
    session_timeout_ms: int = 10_000
    max_poll_interval_ms: int = 60_000
    rebalance_timeout_ms: int = 30_000
    assignor: str | None = None
    regex: str | None = None
    member_id: str = ""
    epoch: int = 0
    owned: frozenset[TopicPartition] = frozenset()
    joined: bool = False
    dead: bool = False
    poll_age_ms: int = 0
    last_error: RilkeError | None = None
    revoked_log: list[frozenset[TopicPartition]] = field(default_factory=list)
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def join(self) -> Reply:  # type: ignore[type-arg]
        self.joined = True
        self.epoch = 0
        self.owned = frozenset()
        return self.heartbeat()

    def heartbeat(self) -> Reply:  # type: ignore[type-arg]
        first = self.epoch == 0
        req = HeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=self.epoch,
            instance_id=self.instance_id,
            rebalance_timeout_ms=self.rebalance_timeout_ms if first else None,
            session_timeout_ms=self.session_timeout_ms if first else None,
            max_poll_interval_ms=self.max_poll_interval_ms if first else None,
            subscribed_topics=self.topics if first else None,
            subscribed_regex=self.regex if first else None,
            assignor=self.assignor if first else None,
            owned_partitions=self.owned,
            poll_age_ms=self.poll_age_ms,
        )
        reply = self.cluster.heartbeat(req)
        self.last_error = reply.error
        if reply.error is not None:
            if isinstance(reply.error, UnknownMemberIdError | FencedMemberEpochError):
                # Lost: drop everything without committing, rejoin (same member id) next time.
                self.owned = frozenset()
                self.epoch = 0
            elif isinstance(reply.error, FencedInstanceIdError):
                self.owned = frozenset()
                self.dead = True
            return reply
        resp = reply.response
        assert resp is not None
        self.member_id = resp.member_id
        self.epoch = resp.member_epoch
        revoked = self.owned - resp.assignment
        if revoked:
            self.revoked_log.append(revoked)
        self.owned = frozenset(resp.assignment)
        self.cluster.check()
        return reply

    def leave(self, static: bool = False) -> Reply:  # type: ignore[type-arg]
        req = HeartbeatRequest(
            group_id=self.group_id,
            member_id=self.member_id,
            member_epoch=-2 if static else -1,
            instance_id=self.instance_id,
            owned_partitions=frozenset(),
        )
        self.owned = frozenset()
        self.joined = False
        self.dead = True
        return self.cluster.heartbeat(req)

    def crash(self) -> None:
        self.dead = True
        self.joined = False
