"""The metadata group under the simulation's faults, with the real controller.

Each simulated node runs a :class:`MetadataApplier` over the committed entries of its Raft
core (voters and learners alike). Clients send controller requests (bootstrap, register and
heartbeat brokers, fence expired ones, create, grow and delete topics, change in-sync
replicas, allocate producer ids) to the node they believe leads; that node's
:class:`ControllerDecider` decides against its own applied state and proposes the records as
one batch. As the controller does, every node snapshots its OWN applied state at its applied
index and trims its whole log below it (``_maybe_compact``), so followers that fall behind get
a leader's snapshot and nodes that restart rebuild from a snapshot plus the tail; a snapshot's
payload must be the state every node had at its index (checked when taken and when installed).

Checked after every applied entry: every node that applies index i has exactly the same
metadata state after it (the bytes of the whole state) as every other node had. After the run:
every up node reaches the leader's commit and holds the same state, producer-id blocks never
overlap, and the run did make metadata (a cluster id, brokers, topics).

CI runs 20 seeds; more with ``--sim-sweep N -k metadata``.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from rilke.errors import NotLeaderError, RilkeError
from rilke.replication.controller import (
    ControllerDecider,
    DeciderSettings,
    LeadershipReport,
    MetadataApplier,
)
from rilke.replication.controller.records import MetadataRecord, VotersChanged, encode_batch
from rilke.replication.controller.snapshot import encode_snapshot
from rilke.replication.raft import ConfChange, Entry, EntryKind, Ready, Role
from tests.sim.simulator.checker import SafetyViolation
from tests.sim.simulator.cluster import Cluster, LivenessViolation, SimNode
from tests.sim.simulator.faults import FaultEvent
from tests.sim.simulator.runner import SCENARIOS, draw_config, plan
from tests.sim.simulator.trace import Trace

SESSION_TIMEOUT_MS = 400  # simulated: brokers heartbeat every 20-600 ms, so some get fenced
BROKERS = 5
PAYLOAD_SCALE = 100


class MetadataCluster(Cluster):
    """The simulated cluster with a metadata applier per node and a controller client."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.appliers: dict[int, MetadataApplier] = {}
        self.deciders: dict[int, tuple[int, int, ControllerDecider]] = {}
        self.state_at: dict[int, bytes] = {0: encode_snapshot(MetadataApplier().state)}
        self.batches: dict[bytes, bytes] = {}  # client payload name -> the batch it proposed
        self.names: dict[bytes, bytes] = {}  # batch -> payload name
        self.counts: dict[bytes, int] = {}  # payload name -> records in its batch
        self.requests: dict[str, int] = {}
        self.rejected = 0
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._metadata_rng = self._rng_for("metadata")

    # --- the applier on every node ----------------------------------------------------------

    def start(self, node_id: int) -> None:
        snap = self.nodes[node_id].storage.snapshot()
        applier = MetadataApplier(node_id=node_id)
        if snap.index > 0:
            applier.restore(snap.data)  # restart: snapshot, then the tail the core replays
        self.appliers[node_id] = applier
        self.deciders.pop(node_id, None)
        super().start(node_id)

    def snapshot_data(self, index: int) -> bytes:
        return self.state_at[index]

    def _persisted(self, node: SimNode, rd: Ready) -> None:
        if rd.snapshot is not None:  # from the leader: the state as of its index
            self.appliers[node.node_id].restore(rd.snapshot.data)
        super()._persisted(node, rd)

    def _maybe_compact(self, node: SimNode) -> None:
        """As the controller does: every ``compact_every`` offsets applied, the node snapshots
        ITS OWN applied state at its applied index and trims its whole log below it (no
        entries kept), so a follower behind it needs that snapshot. The payload must be the
        state every node had at that index (checked here, and again by every node that
        installs it). Only at or below the fsynced commit, which a crash cannot take back."""
        if not self.compact_every:
            return
        storage = node.storage
        applier = self.appliers[node.node_id]
        index = applier.applied_index
        start = storage.snapshot()
        if index - start.index < self.compact_every or index > node.synced_hard.commit:
            return
        conf = start.conf
        for entry in storage.all_entries():
            if entry.index > index:
                break
            if entry.kind is EntryKind.CONFIG:
                conf = ConfChange.decode(entry.data).apply_to(conf)
        snap_index, own = applier.snapshot()
        assert snap_index == index
        if own != self.state_at[index]:
            raise SafetyViolation(
                "Snapshot of own state",
                f"n{node.node_id}'s snapshot at {index} is not the state every node had there",
            )
        storage.compact(index, conf, own)
        self.faults.compactions += 1
        self.checker.on_snapshot(node.node_id, index, storage.snapshot().term, keep_suffix=True)
        self.record(node.node_id, "compact", f"own snapshot, log start -> {index}")

    def _on_apply(self, node: SimNode, entry: Entry) -> None:
        applier = self.appliers[node.node_id]
        if applier.apply_entry(entry) is not None:
            self.rejected += 1
        state = encode_snapshot(applier.state)
        seen = self.state_at.setdefault(entry.index, state)
        if seen != state:
            raise SafetyViolation(
                "Metadata agreement",
                f"n{node.node_id} holds a different metadata state after applying index "
                f"{entry.index} than another node did:\n{state[:400]!r}\nvs\n{seen[:400]!r}",
            )
        # The base harness tracks client proposals by their payload name.
        super()._on_apply(node, replace(entry, data=self.names.get(entry.data, entry.data)))

    # --- the controller client ----------------------------------------------------------

    def _client_tick(self) -> None:
        if self.clients_on:  # cleared to quiesce: the tick then stops rescheduling itself
            super()._client_tick()

    def _decider(self, node: SimNode) -> ControllerDecider:
        raft = node.raft
        assert raft is not None
        applier = self.appliers[node.node_id]
        held = self.deciders.get(node.node_id)
        if (
            held is None
            or held[:2] != (node.incarnation, raft.term)
            or held[2].state is not (applier.state)
        ):
            decider = ControllerDecider(applier.state, DeciderSettings(SESSION_TIMEOUT_MS, 100))
            decider.become_leader(self.loop.now_ms)
            held = (node.incarnation, raft.term, decider)
            self.deciders[node.node_id] = held
        return held[2]

    def _request(self, decider: ControllerDecider) -> tuple[str, list[MetadataRecord]]:
        """One random controller request, decided; ("refused", [...]) when the decider
        refuses it (the client then proposes a harmless record, so the call completes)."""
        rng = self._metadata_rng
        state = decider.state
        now = self.loop.now_ms
        b = rng.randint(1, BROKERS)
        topics = sorted(state.topics)
        kind = rng.choice(
            [
                *("register", "heartbeat", "heartbeat", "heartbeat", "fence", "create"),
                *("create", "grow", "delete", "isr", "producer-ids"),
            ]
        )
        if state.cluster_id is None:
            kind = "bootstrap"
        try:
            if kind == "bootstrap":
                records = decider.bootstrap("sim-cluster", sorted(self.initial_conf.voters))
            elif kind == "register":
                records = decider.register_broker(b, f"10.0.0.{b}", 9292, f"r{b % 2}", now)
            elif kind == "heartbeat":
                info = state.brokers.get(b)
                records = decider.heartbeat(b, info.epoch if info else 0, now)
            elif kind == "fence":
                records = decider.fence_expired(now)
            elif kind == "create":
                name = f"t{rng.randrange(12)}"
                records = decider.create_topic(
                    name, rng.randint(1, 4), rng.randint(1, 3), {}, f"id{self._next_payload}"
                )
            elif kind == "grow" and topics:
                name = rng.choice(topics)
                have = len(state.topics[name].partitions)
                records = decider.create_partitions(name, have + rng.randint(1, 2))
            elif kind == "delete" and topics:
                records = decider.delete_topic(rng.choice(topics))
            elif kind == "isr" and topics:
                name = rng.choice(topics)
                p = rng.randrange(len(state.topics[name].partitions))
                part = state.topics[name].partitions[p]
                # A replica reports leading its Raft group: an older, the same or a newer term.
                leader = rng.choice(part.replicas)
                term = max(0, part.leader_epoch + rng.randint(-1, 2))
                isr = tuple(r for r in part.replicas if r == leader or rng.random() < 0.6)
                report = LeadershipReport(name, p, term, isr)
                records = decider.leadership_changes(leader, [report])
            elif kind == "producer-ids":
                records = decider.allocate_producer_ids(b)
            else:
                records = []
        except RilkeError:
            kind, records = "refused", []
        self.requests[kind] = self.requests.get(kind, 0) + 1
        return kind, records or [VotersChanged(state.voters or (1,))]

    def _propose(self, payload: bytes | list[bytes]) -> None:
        """Propose each payload's controller request on the node the client believes leads.
        A request is decided once, by the first leader that gets it; a retry re-sends that
        batch (as a client re-sends its request), which the state machine may then refuse."""
        node = self.nodes.get(self._client_target)
        if node is None or node.raft is None or node.paused:
            self._pick_client_target(None)
            self.client.refused += 1
            return
        raft = node.raft
        for name in [payload] if isinstance(payload, bytes) else payload:
            batch = self.batches.get(name)
            if batch is None and raft.role is Role.LEADER:
                _, records = self._request(self._decider(node))
                batch = encode_batch(records, timestamp_ms=int(name[1:]))
                self.batches[name] = batch
                self.names[batch] = name
                self.counts[name] = len(records)
            try:
                if batch is None:
                    raise NotLeaderError(f"n{node.node_id} does not lead")
                index = raft.propose(batch, self.counts[name])
            except RilkeError:
                self.client.refused += 1
                self._pick_client_target(raft.leader_id or None)
                self.after_input(node)
                return
            self.client.accepted += 1
            self._accepted[name] = (node.node_id, raft.term, node.incarnation)
            self.record(node.node_id, "propose", f"{name.decode()} -> index {index}")
        self.after_input(node)


def run_metadata_seed(
    seed: int, scenario: str, cluster_class: type[MetadataCluster] = MetadataCluster
) -> MetadataCluster:
    """Run one seed (faults, heal, liveness) and the final agreement checks; raises
    SafetyViolation or LivenessViolation with the seed in the message."""
    spec = SCENARIOS[scenario]
    knobs, schedule = plan(seed, scenario)

    def rng_for(name: str) -> random.Random:
        return random.Random(f"{seed}/{name}")

    # The scenarios' byte bounds are sized for the Raft test's 3-byte payloads; a metadata
    # batch is ~100-300 bytes, so they scale by PAYLOAD_SCALE (else "storm" commits one
    # batch at a time and its offered load cannot be carried: a liveness failure of the
    # knobs, not of the controller).
    config = {**draw_config(rng_for("config")), **spec.config}
    for name in ("max_size_per_msg", "max_uncommitted_bytes"):
        if name in config:
            config[name] = int(config[name]) * PAYLOAD_SCALE  # type: ignore[call-overload]
    cluster = cluster_class(
        knobs,
        rng_for,
        Trace(enabled=False),
        compact_every=spec.compact_every or 30,
        config_overrides=config,
    )
    for event in schedule:
        cluster.loop.call_at(event.at_ms, _fire(cluster, event))
    cluster.loop.call_at(knobs.fault_until_ms, cluster.heal)
    cluster.start_clients()
    cluster.loop.run_until(knobs.fault_until_ms + knobs.liveness_ms)
    leader = cluster.leader()
    if leader is None or leader.raft is None:
        raise LivenessViolation(f"seed {seed}: no leader after healing")
    # Quiesce: clients stop; every member must then apply the leader's whole commit and
    # hold the same state (each state was also checked against the others' when applied).
    cluster.clients_on = False
    cluster.run_for(2 * knobs.commit_bound_ms)
    leader = cluster.leader()
    if leader is None or leader.raft is None:
        raise LivenessViolation(f"seed {seed}: no leader while quiescing")
    raft = leader.raft
    members = [n for n in cluster.up_nodes() if n.node_id in raft.conf.voters | raft.conf.learners]
    behind = {
        n.node_id: cluster.appliers[n.node_id].applied_index
        for n in members
        if cluster.appliers[n.node_id].applied_index != raft.commit_index
    }
    if behind:
        raise LivenessViolation(
            f"seed {seed}: members {behind} have not applied the commit {raft.commit_index}"
        )
    states = {encode_snapshot(cluster.appliers[n.node_id].state) for n in members}
    assert len(states) == 1, f"seed {seed}: members' states differ"
    state = cluster.appliers[leader.node_id].state
    assert state.cluster_id == "sim-cluster" and state.brokers
    blocks = sorted(state.producer_id_blocks.values())
    for (a, n), (b, _) in itertools.pairwise(blocks):
        assert a + n <= b, f"seed {seed}: producer-id blocks overlap: {blocks}"
    return cluster


def _fire(cluster: Cluster, event: FaultEvent) -> Callable[[], None]:
    return lambda: cluster.apply_fault(event)


CI_SEEDS = (
    [("ci", seed) for seed in range(10)]
    + [("crash", 100 + seed) for seed in range(5)]
    + [("membership", 200 + seed) for seed in range(5)]
)


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "seed"), CI_SEEDS)
def test_every_node_applies_the_same_metadata(scenario: str, seed: int) -> None:
    cluster = run_metadata_seed(seed, scenario)
    assert cluster.client.committed > 0
    assert cluster.faults.compactions > 0  # every node trimmed below its own snapshots
    assert cluster.requests.get("create", 0) > 0


@pytest.mark.sweep
def test_metadata_sweep(request: pytest.FixtureRequest) -> None:
    count = request.config.getoption("--sim-sweep")
    first = request.config.getoption("--sim-first-seed")
    started = time.perf_counter()
    failures = []
    for seed in range(first, first + count):
        try:
            run_metadata_seed(seed, "random")
        except (SafetyViolation, LivenessViolation, AssertionError) as e:
            failures.append((seed, str(e)[:300]))
    assert not failures, failures[:5]
    lines = getattr(request.config, "sim_sweep_lines", [])
    lines.append(
        f"metadata sweep: {count} seeds in {time.perf_counter() - started:.1f}s, no violation"
    )
    setattr(request.config, "sim_sweep_lines", lines)  # noqa: B010


class _DivergingCluster(MetadataCluster):
    """Node 2 skips the first client batch it should apply (a state-machine bug)."""

    skipped = False

    def _on_apply(self, node: SimNode, entry: Entry) -> None:
        if node.node_id == 2 and not self.skipped and entry.data in self.names:
            self.skipped = True
            entry = replace(entry, data=b"", kind=EntryKind.NO_OP)
        super()._on_apply(node, entry)


def test_the_agreement_check_catches_a_node_that_diverges() -> None:
    with pytest.raises(SafetyViolation, match="Metadata agreement"):
        run_metadata_seed(0, "ci", cluster_class=_DivergingCluster)


class _BadSnapshotCluster(MetadataCluster):
    """Node 2's snapshots carry a state that is not the one it applied (a snapshot bug)."""

    def start(self, node_id: int) -> None:
        super().start(node_id)
        if node_id == 2:
            applier = self.appliers[node_id]
            real = applier.snapshot

            def tampered() -> tuple[int, bytes]:
                index, data = real()
                return index, data.replace(b"sim-cluster", b"sim-c1uster")

            applier.snapshot = tampered  # type: ignore[method-assign]


def test_the_snapshot_check_catches_a_node_whose_snapshot_is_not_its_state() -> None:
    with pytest.raises(SafetyViolation, match="Snapshot of own state"):
        run_metadata_seed(0, "ci", cluster_class=_BadSnapshotCluster)
