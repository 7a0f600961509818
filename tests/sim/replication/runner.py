"""One seed of the replication-path simulation: faults, heal, liveness, the checks.

A run is a function of ``(seed, scenario)`` (and ``PYTHONHASHSEED``, fixed by the runner's
command line): 3 or 5 nodes of the production runtime and transport, each with 1-2 replicated
partitions on its own directory; idempotent acks=all producers that record every
acknowledgement; a nemesis on a seeded schedule (crashes that lose unsynced writes with torn
tails, partitions, one-way links, connection resets, slow and failing fsyncs); then every fault
heals, every node restarts, each partition must take a new write and its replicas converge,
and the final checks run (:mod:`.checker`). The incremental checks run every 50 ms of
simulated time on every live replica.
"""

from __future__ import annotations

import asyncio
import logging
import random
import tempfile
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rilke.errors import ProtocolError, RilkeError
from rilke.partition.interface import ACKS_ALL
from rilke.records.builder import BatchBuilder
from rilke.replication.controller.state import BrokerState

from .checker import Checker, SafetyViolation
from .disk import SimDisk, close_fds_under
from .loop import InlineExecutor, StalledError, VirtualTimeLoop
from .network import NetworkKnobs, SimNetwork
from .node import NodeKnobs, NodeTasks, SimNode

CHECK_EVERY_S = 0.1
FAULT_KINDS = (
    "crash",
    "crash_leader",
    "crash_in_flush",
    "power_cut",
    "isolate",
    "isolate_leader",
    "one_way",
    "reset",
    "slow_fsync",
    "sync_errors",
)


class LivenessViolation(AssertionError):
    pass


@dataclass
class Knobs:
    nodes: int
    partitions: int
    producers: int
    batch_records: int
    fault_until_s: float
    fault_gap_s: float
    liveness_s: float
    torn_probability: float
    kinds: tuple[str, ...]
    net: NetworkKnobs
    node: NodeKnobs

    def describe(self) -> str:
        return (
            f"nodes={self.nodes} partitions={self.partitions} producers={self.producers} "
            f"batch_records={self.batch_records} faults_until={self.fault_until_s}s "
            f"gap={self.fault_gap_s:.2f}s torn={self.torn_probability:.2f} "
            f"reset={self.net.reset_probability:.4f} "
            f"sync_errors={self.node.sync_error_probability:.2f} kinds={','.join(self.kinds)}"
        )


SCENARIOS = ("replication", "ci", "crash", "controller")


def draw_knobs(rng: random.Random, scenario: str) -> Knobs:
    kinds = FAULT_KINDS
    if scenario == "crash":
        kinds = (
            "crash",
            "crash_leader",
            "crash_in_flush",
            "power_cut",
            "slow_fsync",
            "sync_errors",
        )
    return Knobs(
        nodes=rng.choice((3, 3, 3, 5)),
        partitions=rng.choice((1, 2)),
        producers=rng.randint(1, 3),
        batch_records=rng.randint(1, 4),
        fault_until_s=1.5,
        fault_gap_s=rng.uniform(0.1, 0.5),
        liveness_s=8.0,
        torn_probability=rng.choice((0.0, 0.3, 0.7)),
        kinds=kinds,
        net=NetworkKnobs(
            delay_max_s=rng.choice((0.002, 0.005, 0.02)),
            reset_probability=rng.choice((0.0, 0.0005, 0.003)),
        ),
        node=NodeKnobs(
            fsync_max_s=rng.choice((0.002, 0.005, 0.02)), controller=scenario == "controller"
        ),
    )


@dataclass
class Result:
    seed: int
    scenario: str
    knobs: Knobs
    ok: bool = True
    prop: str = ""
    failure: str = ""
    steps: int = 0
    sim_s: float = 0.0
    events: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)


class _Run:
    def __init__(self, seed: int, scenario: str, root: Path, disk: SimDisk, tasks: NodeTasks):
        self.seed = seed
        self.rng = {name: random.Random(f"{seed}/{name}") for name in ("knobs", "net", "nemesis")}
        self.knobs = draw_knobs(self.rng["knobs"], scenario)
        self.tasks = tasks
        self.disk = disk
        self.net = SimNetwork(self.rng["net"], self.knobs.net, self._spawn)
        members = tuple(range(1, self.knobs.nodes + 1))
        self.nodes = {
            n: SimNode(
                n,
                root,
                members,
                self.knobs.partitions,
                net=self.net,
                disk=disk,
                tasks=tasks,
                knobs=NodeKnobs(**vars(self.knobs.node)),
                rng=random.Random(f"{seed}/node{n}"),
            )
            for n in members
        }
        self.checker = Checker()
        self.events: list[str] = []
        self.stop_producing = False
        self.failure: BaseException | None = None
        self.producer_stats = {"sent": 0, "acked": 0, "retries": 0}

    def _spawn(self, node: int, coro: Any) -> None:
        self.nodes[node].spawn(coro)

    def event(self, text: str) -> None:
        loop = asyncio.get_running_loop()
        self.events.append(f"{loop.time() * 1000:8.1f}ms {text}")

    def leader(self, p: int) -> SimNode | None:
        best = None
        for node in self.nodes.values():
            live = node.live
            if live is None or not live.partitions[p].is_leader:
                continue
            if best is None or live.partitions[p].leader_epoch > best[0]:
                best = (live.partitions[p].leader_epoch, node)
        return best[1] if best is not None else None

    # --- clients -------------------------------------------------------------------------------

    async def produce(self, p: int, pid: int, *, once: bool = False, deadline: float) -> bool:
        """An idempotent acks=all producer: one batch in flight, retried (same sequence) until
        acknowledged; every acknowledgement goes to the checker. Whether the last one was."""
        loop = asyncio.get_running_loop()
        seq = 0
        acked = False
        while not (self.stop_producing and not once) and loop.time() < deadline:
            count = self.knobs.batch_records
            builder = BatchBuilder(producer_id=pid, producer_epoch=0, base_sequence=seq)
            for i in range(count):
                builder.append(None, f"p{p}-{pid}-{seq + i}".encode(), None, 1_000 + seq + i)
            batch = builder.build()
            acked = False
            while not acked and loop.time() < deadline:
                if self.stop_producing and not once:
                    return False
                node = self.leader(p)
                if node is None or node.live is None:
                    await asyncio.sleep(0.02)
                    continue
                self.producer_stats["sent"] += 1
                try:
                    future = node.live.partitions[p].append(batch, ACKS_ALL)
                    result = await asyncio.wait_for(future, 1.0)
                except ProtocolError as exc:
                    raise SafetyViolation(
                        "idempotent producer",
                        f"partition {p} producer {pid} sequence {seq}: {type(exc).__name__}: {exc}",
                    ) from exc
                except (RilkeError, TimeoutError):
                    self.producer_stats["retries"] += 1
                    await asyncio.sleep(0.01)
                    continue
                self.checker.ack(p, result.base_offset, pid, seq)
                self.producer_stats["acked"] += 1
                acked = True
            seq += count
            if once:
                break
        return acked

    def controller_leader(self) -> Any:
        best = None
        for node in self.nodes.values():
            live = node.live
            if live is None or live.controller is None or not live.controller.is_leader:
                continue
            term = live.runtime.status("__cluster_metadata").term
            if best is None or term > best[0]:
                best = (term, live.controller)
        return best[1] if best is not None else None

    async def admin(self) -> None:
        """Controller requests to whichever node leads the metadata group: register and
        heartbeat every broker, then allocate producer ids and create topics; every topic
        whose creation is acknowledged goes to the checker."""
        loop = asyncio.get_running_loop()
        rng = random.Random(f"{self.seed}/admin")
        created = 0
        while not self.stop_producing:
            await asyncio.sleep(rng.uniform(0.002, 0.02))
            controller = self.controller_leader()
            if controller is None:
                continue
            now_ms = int(loop.time() * 1000)
            broker = rng.choice(list(self.nodes))
            info = controller.applier.state.brokers.get(broker)
            if info is None:
                op = "register"
            elif info.state is BrokerState.FENCED:
                op = "heartbeat"
            else:
                op = rng.choice(("heartbeat", "producer_ids", "topic", "topic"))
            name = f"topic{created}"
            decision = _decision(op, broker, name, now_ms)
            try:
                await asyncio.wait_for(controller.decide(decision, timeout_s=1.0), 1.5)
            except (RilkeError, TimeoutError, KeyError):
                continue
            if op == "topic":
                self.checker.topics_acked.add(name)
                created += 1

    # --- faults --------------------------------------------------------------------------------

    async def nemesis(self) -> None:
        loop = asyncio.get_running_loop()
        rng = self.rng["nemesis"]
        knobs = self.knobs
        members = list(self.nodes)
        while True:
            await asyncio.sleep(rng.expovariate(1 / knobs.fault_gap_s))
            if loop.time() >= knobs.fault_until_s:
                return
            kind = rng.choice(knobs.kinds)
            duration = rng.uniform(0.05, 1.0)
            target = rng.choice(members)
            if kind in ("crash_leader", "isolate_leader"):
                leader = self.leader(rng.randrange(knobs.partitions))
                if leader is not None:
                    target = leader.node_id
                kind = kind.removesuffix("_leader")
            node = self.nodes[target]
            if kind == "crash":
                if node.up:
                    self._crash(node, duration)
            elif kind == "power_cut":
                self.event("power cut: every node at once")
                for other in self.nodes.values():
                    self._crash(other, rng.uniform(0.05, 0.5))
            elif kind == "crash_in_flush":
                if node.up:
                    self.event(f"n{target} crashes in its next fsync window")
                    node.crash_in_flush = lambda node=node, d=duration: self._crash(node, d)
            elif kind == "isolate":
                self.event(f"isolate n{target} for {duration * 1000:.0f}ms")
                for other in members:
                    if other != target:
                        self.net.block(target, other)
                        self.net.block(other, target)
                loop.call_later(duration, self._unisolate, target)
            elif kind == "one_way":
                other = rng.choice([m for m in members if m != target])
                self.event(f"drop n{target}->n{other} for {duration * 1000:.0f}ms")
                self.net.block(target, other)
                loop.call_later(duration, self.net.unblock, target, other)
            elif kind == "reset":
                other = rng.choice([m for m in members if m != target])
                self.event(f"reset n{target}<->n{other}")
                self.net.reset_between(target, other)
            elif kind == "slow_fsync":
                self.event(f"slow fsync n{target} x20 for {duration * 1000:.0f}ms")
                node.slow_fsync_factor = 20.0
                loop.call_later(duration, setattr, node, "slow_fsync_factor", 1.0)
            elif kind == "sync_errors":
                self.event(f"fsync errors n{target} for {duration * 1000:.0f}ms")
                node.knobs.sync_error_probability = 0.5
                loop.call_later(duration, setattr, node.knobs, "sync_error_probability", 0.0)

    def _crash(self, node: SimNode, restart_after_s: float) -> None:
        if not node.up:
            return
        self.event(f"crash n{node.node_id} (restart in {restart_after_s * 1000:.0f}ms)")
        node.crash()
        asyncio.get_running_loop().call_later(restart_after_s, self._restart_soon, node.node_id)

    def _unisolate(self, target: int) -> None:
        for other in self.nodes:
            if other != target:
                self.net.unblock(target, other)
                self.net.unblock(other, target)

    def _restart_soon(self, target: int) -> None:
        node = self.nodes[target]
        if node.up:
            return
        asyncio.get_running_loop().create_task(self._restart(node))

    async def _restart(self, node: SimNode) -> None:
        if node.up:
            return
        self.event(f"restart n{node.node_id}")
        try:
            await node.start()
        except BaseException as exc:
            self.failure = exc
            raise

    # --- checks --------------------------------------------------------------------------------

    async def check_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            self.check_now("during the run")

    def check_now(self, where: str) -> None:
        loop = asyncio.get_running_loop()
        errors = getattr(loop, "errors", [])
        if errors:
            context = errors[0]
            exc = context.get("exception")
            raise SafetyViolation(
                "unhandled error",
                f"{context.get('message')}: {type(exc).__name__ if exc else ''} {exc or ''}",
            )
        if self.failure is not None:
            raise self.failure
        for n, node in self.nodes.items():
            if node.live is not None:
                self.checker.check_replica(n, node.incarnations, node.live, where)
                self.checker.check_metadata(n, node.live, where)

    # --- the run -------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        knobs = self.knobs
        for node in self.nodes.values():
            await node.start()
        checks = loop.create_task(self.check_forever())
        nemesis = loop.create_task(self.nemesis())
        producers: list[asyncio.Task[Any]] = [
            loop.create_task(
                self.produce(p, 1000 * (p + 1) + i, deadline=knobs.fault_until_s + 2.0)
            )
            for p in range(knobs.partitions)
            for i in range(knobs.producers)
        ]
        if knobs.node.controller:
            producers.append(loop.create_task(self.admin()))
        try:
            await self._phases(nemesis, producers)
            self.check_now("after the heal")
        finally:
            checks.cancel()
            nemesis.cancel()
            for task in producers:
                task.cancel()
        if checks.done() and not checks.cancelled() and checks.exception() is not None:
            raise checks.exception()  # type: ignore[misc]

    async def _phases(self, nemesis: asyncio.Task[None], producers: list[asyncio.Task[Any]]):
        loop = asyncio.get_running_loop()
        knobs = self.knobs
        while loop.time() < knobs.fault_until_s:
            await asyncio.sleep(CHECK_EVERY_S)
            self.check_now("during the run")
        await nemesis
        self.event("heal: network healed, fsyncs fast, every node restarted")
        self.net.heal()
        for node in self.nodes.values():
            node.slow_fsync_factor = 1.0
            node.knobs.sync_error_probability = 0.0
            node.crash_in_flush = None
            if not node.up:
                await self._restart(node)
        await asyncio.sleep(0.5)
        self.stop_producing = True
        await asyncio.gather(*producers)
        deadline = loop.time() + knobs.liveness_s
        for p in range(knobs.partitions):
            ok = await self.produce(p, 9000 + p, once=True, deadline=deadline)
            if not ok:
                leaders = {n: node.live is not None for n, node in self.nodes.items()}
                raise LivenessViolation(
                    f"partition {p}: no write acknowledged within {knobs.liveness_s}s of the heal "
                    f"(nodes up: {leaders})"
                )
        while not self._converged():
            if loop.time() > deadline:
                raise LivenessViolation(f"replicas did not converge: {self._positions()}")
            await asyncio.sleep(CHECK_EVERY_S)
        self.check_now("after the heal")
        replicas = {n: node.live for n, node in self.nodes.items() if node.live is not None}
        self.checker.check_final(replicas)
        while knobs.node.controller and not self._metadata_converged():
            if loop.time() > deadline:
                raise LivenessViolation("controllers did not reach the same applied index")
            await asyncio.sleep(CHECK_EVERY_S)
        self.checker.check_metadata_final(replicas)

    def _positions(self) -> dict[str, tuple[int, int]]:
        out = {}
        for n, node in self.nodes.items():
            if node.live is None:
                continue
            for p, part in node.live.partitions.items():
                out[f"n{n}/p{p}"] = (node.live.logs[p].log_end_offset, part.high_watermark)
        return out

    def _metadata_converged(self) -> bool:
        indexes = set()
        for node in self.nodes.values():
            if node.live is None or node.live.controller is None:
                return False
            indexes.add(node.live.controller.applied_index)
        return len(indexes) == 1

    def _converged(self) -> bool:
        positions = self._positions()
        if len(positions) != self.knobs.nodes * self.knobs.partitions:
            return False
        for p in range(self.knobs.partitions):
            mine = {v for k, v in positions.items() if k.endswith(f"/p{p}")}
            if len(mine) != 1 or len({x for pair in mine for x in pair}) != 1:
                return False
        return True


def _decision(op: str, broker: int, name: str, now_ms: int) -> Callable[[Any], Any]:
    if op == "register":
        return lambda d: d.register_broker(broker, "h", 9000 + broker, None, now_ms)
    if op == "heartbeat":
        return lambda d: d.heartbeat(broker, d.state.brokers[broker].epoch, now_ms)
    if op == "producer_ids":
        return lambda d: d.allocate_producer_ids(broker, 10)
    return lambda d: d.create_topic(name, 1, 1, {}, f"id-{name}")


def run_seed(seed: int, scenario: str = "replication", *, lying_fsync: bool = False) -> Result:
    """Run one seed; a violation is in the result (``ok`` False), never raised.
    ``lying_fsync``: every node's disk skips the log's fsyncs (the checks must catch it).
    The rilke and asyncio loggers are quiet while it runs and set back after (tests that
    run later in the same process read their log records)."""
    loggers = [logging.getLogger("rilke"), logging.getLogger("asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        return _run_seed(seed, scenario, lying_fsync=lying_fsync)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _run_seed(seed: int, scenario: str, *, lying_fsync: bool) -> Result:
    loop = VirtualTimeLoop()
    loop.set_default_executor(InlineExecutor())  # the controller saves snapshots on one
    tasks = NodeTasks()
    tasks.install(loop)
    # tmpfs when there is one: a real fdatasync costs a disk flush, and the simulated disk
    # decides what survives a crash anyway.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="rilke-sim-", dir=shm) as tmp:
        root = Path(tmp)
        torn = random.Random(f"{seed}/knobs")
        with SimDisk(root, random.Random(f"{seed}/disk"), torn_probability=0.0) as disk:
            run = _Run(seed, scenario, root, disk, tasks)
            del torn
            for node in run.nodes.values():
                node.knobs.lying_fsync = lying_fsync
            disk.torn_probability = run.knobs.torn_probability
            result = Result(seed, scenario, run.knobs)
            try:
                loop.run_until_complete(run.run())
            except SafetyViolation as exc:
                result.ok, result.prop, result.failure = False, exc.prop, exc.detail
            except LivenessViolation as exc:
                result.ok, result.prop, result.failure = False, "liveness", str(exc)
            except StalledError as exc:
                result.ok, result.prop, result.failure = False, "stalled", str(exc)
            except Exception as exc:  # a crash of the code under test is a finding too
                result.ok, result.prop = False, "exception"
                result.failure = "".join(traceback.format_exception(exc))[-3000:]
            finally:
                result.steps = loop.steps
                result.sim_s = loop.time()
                result.events = run.events
                result.stats = {
                    **run.producer_stats,
                    "committed_batches": run.checker.stats.committed_batches,
                    "checks": run.checker.stats.checks,
                    "crashes": disk.stats.crashes,
                    "torn_tails": disk.stats.torn_tails + disk.stats.garbage_tails,
                    "bytes_lost": disk.stats.bytes_lost,
                    "resets": run.net.stats.resets,
                    "frames": run.net.stats.frames,
                    "topics_acked": len(run.checker.topics_acked),
                    "metadata_states": len(run.checker.metadata),
                }
                _shutdown(loop, tasks, run)
                close_fds_under(root)
    return result


def _shutdown(loop: VirtualTimeLoop, tasks: NodeTasks, run: _Run) -> None:
    for node in run.nodes.values():
        if node.live is not None:
            node.live = None
            run.net.down(node.node_id)
        tasks.cancel(node.node_id)
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.close()


def report(result: Result, events: int = 60) -> str:
    lines = [
        f"seed {result.seed} ({result.scenario}): {result.prop}: {result.failure}",
        f"  knobs: {result.knobs.describe()}",
        f"  replay: python -m tests.sim.run --replication --seed {result.seed} "
        f"--scenario {result.scenario}",
        "  events:",
    ]
    lines += ["    " + e for e in result.events[-events:]]
    return "\n".join(lines)
