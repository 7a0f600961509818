"""The nemesis: a seeded schedule of faults (pure: :func:`plan`), and the thread of control
that applies it to a FaultCluster (:class:`Nemesis`), logging each fault with its time.

A schedule is a list of :class:`Step`: at ``at_s`` seconds into the run, apply ``kind`` for
``duration_s`` seconds, then undo it (a killed node is started again, a paused one continued,
rules flushed, the disk freed), then the next step. Faults do not overlap, so each one's
effect is its own; a run's seed picks its theme (one kind, or a mix) and every choice in it,
so ``plan(seed, ...)`` is the same schedule on every machine and ``--seed S`` replays it.
Targets named ``leader`` resolve when the step runs (the leader of the data topic's
partition 0 then); ``controller`` to the controller leader; ``random`` to the node the plan
drew. After the last step :meth:`Nemesis.heal_all` undoes everything still in effect.

``slow_link`` (a tbf rate limit on the target's link, tests/faults/firewall.py) is not in the
seeds' rotation of themes nor in ``mixed``: adding a kind there would change every seed's
schedule, and FINDINGS.md and CI replay seeds. Run it with ``--theme slow_link``. While it is
on, the nemesis samples the TCP handshake time to the slowed node (and for a second before it,
the idle figure) and logs both as an ``rtt`` event.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tests.faults.firewall import FaultUnavailable, Firewall
from tests.faults.nodes import FaultCluster

log = logging.getLogger(__name__)

KINDS = (
    "kill_leader",
    "kill_controller",
    "kill_random",
    "pause_leader",
    "pause_random",
    "isolate_leader",
    "split_minority",
    "one_way_leader",
    "loss",
    "delay",
    "full_disk",
    "restart_random",
)
THEMES = (*KINDS, "mixed")
"""The themes seeds rotate through: every step of the run is of that kind, or (``mixed``) of
any of KINDS."""
EXTRA_KINDS = ("slow_link",)
"""Kinds chosen only by name (``--theme``), so that every seed keeps its schedule."""
ALL_THEMES = (*THEMES, *EXTRA_KINDS)
PAUSE_S = (3.0, 5.0)
"""Pauses last longer than the election timeout (1-2 s with the default 100 ms tick)."""
FAULT_S = (2.0, 5.0)
GAP_S = (1.0, 3.0)
FIRST_AT_S = 2.0
LOSS_PERCENT = 30
DELAY_MS = 200
SLOW_RATES_KBIT = (256, 512, 1000)
"""A slow link's rate, drawn per step: about and below what a leader sends under the runs'
load (0.7-1.6 Mbit/s measured on the veths, in bursts), so the bucket's queue fills."""
SLOW_BURST_BYTES = 4096
SLOW_QUEUE_MS = 500
"""The tbf queue holds this long at the rate (62.5 kB): the most queueing delay per direction."""
RTT_INTERVAL_S = 0.2
RTT_IDLE_S = 1.0


@dataclass(frozen=True)
class Step:
    at_s: float
    kind: str
    duration_s: float
    target: str  # "leader" | "controller" | "random"
    node: int  # the node drawn for "random" (and for the other side of splits)
    others: tuple[int, ...] = ()  # split_minority: the minority
    rate_kbit: int = 0  # slow_link: the link's rate

    def label(self) -> str:
        who = self.target if self.target != "random" else f"n{self.node}"
        if self.others:
            who = f"minority={list(self.others)}"
        if self.rate_kbit:
            who += f" at {self.rate_kbit} kbit/s"
        return f"+{self.at_s:.1f}s {self.kind} {who} for {self.duration_s:.1f}s"


def theme_of(seed: int) -> str:
    return THEMES[seed % len(THEMES)]


def plan(seed: int, seconds: float, nodes: list[int], theme: str | None = None) -> list[Step]:
    """The schedule of a run of ``seconds`` over ``nodes``: pure in its arguments."""
    rng = random.Random(seed)
    theme = theme or theme_of(seed)
    if theme not in ALL_THEMES:
        raise ValueError(f"unknown theme {theme!r}: one of {', '.join(ALL_THEMES)}")
    steps: list[Step] = []
    at = FIRST_AT_S
    while True:
        kind = rng.choice(KINDS) if theme == "mixed" else theme
        low, high = PAUSE_S if kind.startswith("pause") else FAULT_S
        duration = round(rng.uniform(low, high), 1)
        if at + duration > seconds:
            return steps
        node = rng.choice(nodes)
        minority: tuple[int, ...] = ()
        if kind == "split_minority":
            minority = tuple(sorted(rng.sample(nodes, (len(nodes) - 1) // 2)))
        target = (
            "controller"
            if kind == "kill_controller"
            else "random"
            if kind.endswith("random") or kind == "split_minority"
            else "leader"
        )
        rate = rng.choice(SLOW_RATES_KBIT) if kind == "slow_link" else 0
        steps.append(Step(round(at, 1), kind, duration, target, node, minority, rate))
        at += duration + rng.uniform(*GAP_S)


class Nemesis:
    """Applies steps to ``cluster`` (from one thread) and logs each fault: ``faults`` is a
    list of ``{"t", "kind", "node", "step", "partitions"?, "unavailable"?}`` events in
    CLOCK_MONOTONIC, the clients' clock."""

    def __init__(
        self, cluster: FaultCluster, firewall: Firewall, topic: str, topics: list[str]
    ) -> None:
        self.cluster = cluster
        self.firewall = firewall
        self.topic = topic
        self.topics = topics
        self.faults: list[dict[str, Any]] = []
        self.unavailable: dict[str, str] = {}
        self._slowed: int | None = None
        self._idle_rtt: list[float | None] = []

    def _leader(self) -> int | None:
        return self.cluster.partition_leaders(self.topic).get(0)

    def _resolve(self, step: Step) -> int | None:
        if step.target == "leader":
            return self._leader()
        if step.target == "controller":
            return self.cluster.controller_leader()
        return step.node

    def _led(self, node: int) -> list[list[Any]]:
        led = []
        for topic in self.topics:
            for partition, leader in self.cluster.partition_leaders(topic).items():
                if leader == node:
                    led.append([topic, partition])
        return led

    def run(self, steps: list[Step], started: float, stop: Callable[[], bool]) -> None:
        """Apply ``steps`` relative to ``started`` (a monotonic time); returns early when
        ``stop()`` is true between steps."""
        for index, step in enumerate(steps):
            if stop():
                return
            wait = started + step.at_s - time.monotonic()
            if wait > 0:
                time.sleep(wait)  # the schedule's own pacing, not a synchronisation
            undo = self.apply(index, step)
            ends = time.monotonic() + step.duration_s
            if step.kind == "slow_link" and self._slowed is not None:
                self._log_rtt(self._slowed, ends, step.rate_kbit)
            if (left := ends - time.monotonic()) > 0:
                time.sleep(left)  # the fault's length
            undo()

    def apply(self, index: int, step: Step) -> Callable[[], None]:
        """Start one fault; returns what ends it."""
        node = self._resolve(step)
        event: dict[str, Any] = {"kind": step.kind, "node": node, "step": index}
        nothing: Callable[[], None] = lambda: None  # noqa: E731
        if node is None or node not in self.cluster.running():
            self._log({**event, "skipped": f"no running target ({step.target})"})
            return nothing
        cluster, firewall = self.cluster, self.firewall
        others = [n for n in cluster.nodes if n != node]
        try:
            if step.kind == "restart_random":
                cluster.stop(node)
                self._log({**event, "kind": "stop"})
                return lambda: self._restart(node)
            if step.kind.startswith("kill"):
                led = self._led(node)
                cluster.kill(node)
                self._log({**event, "kind": "kill", "theme": step.kind, "partitions": led})
                return lambda: self._restart(node)
            if step.kind.startswith("pause"):
                cluster.pause(node)
                self._log(event)
                return lambda: cluster.resume(node)
            if step.kind == "isolate_leader":
                firewall.partition([[cluster.nodes[node].host],
                                    [cluster.nodes[n].host for n in others]])  # fmt: skip
            elif step.kind == "split_minority":
                minority = set(step.others)
                firewall.partition(
                    [[cluster.nodes[n].host for n in sorted(minority)],
                     [cluster.nodes[n].host for n in cluster.nodes if n not in minority]]
                )  # fmt: skip
                event["minority"] = sorted(minority)
            elif step.kind == "one_way_leader":
                firewall.drop_from(
                    cluster.nodes[node].host, [cluster.nodes[n].host for n in others]
                )
            elif step.kind == "loss":
                firewall.loss(cluster.nodes[node].host, LOSS_PERCENT)
            elif step.kind == "delay":
                before = firewall.packets_delayed
                firewall.delay(cluster.nodes[node].host, DELAY_MS, DELAY_MS // 4)
                self._log(event)
                return lambda: self._end_delay(node, before)
            elif step.kind == "slow_link":
                self._idle_rtt = self.cluster.rtt(node, RTT_IDLE_S, RTT_INTERVAL_S)
                firewall.slow_link(
                    cluster.nodes[node].host, step.rate_kbit, SLOW_BURST_BYTES, SLOW_QUEUE_MS
                )
                self._slowed = node
                event.update(rate_kbit=step.rate_kbit, queue_ms=SLOW_QUEUE_MS)
            elif step.kind == "full_disk":
                cluster.fill_disk(node)
                self._log(event)
                return lambda: cluster.free_disk(node)
            else:
                raise AssertionError(f"no such fault kind {step.kind!r}")
        except FaultUnavailable as exc:
            self.unavailable[step.kind] = str(exc)
            self._log({**event, "unavailable": str(exc)})
            return nothing
        self._log(event)
        return firewall.heal

    def _end_delay(self, node: int, before: int) -> None:
        self.firewall.heal()
        held = self.firewall.packets_delayed - before
        self._log({"kind": "delayed", "node": node, "packets": held, "delay_ms": DELAY_MS})

    def _log_rtt(self, node: int, ends: float, rate_kbit: int) -> None:
        """Sample the handshake time to the slowed ``node`` until the fault ``ends`` (less one
        interval, so the last sample is taken while the link is still slow)."""
        slow = self.cluster.rtt(node, max(0.0, ends - time.monotonic() - RTT_INTERVAL_S),
                                RTT_INTERVAL_S)  # fmt: skip
        self._log({"kind": "rtt", "node": node, "rate_kbit": rate_kbit, "idle_ms": self._idle_rtt,
                   "slow_ms": slow})  # fmt: skip
        self._slowed = None

    def _restart(self, node: int) -> None:
        self.cluster.start(node)
        self._log({"kind": "start", "node": node})

    def heal_all(self) -> None:
        """Undo every fault: rules and qdiscs flushed, disks freed, paused nodes continued,
        dead nodes (killed, or ended by themselves) started again."""
        self.firewall.heal()
        for node_id, code in self.cluster.exited().items():
            self._log({"kind": "exited", "node": node_id, "returncode": code})
            self.cluster.kill(node_id)
        for node_id, node in self.cluster.nodes.items():
            self.cluster.free_disk(node_id)
            if node.state == "paused":
                self.cluster.resume(node_id)
            if node.state in ("dead", "stopped"):
                self._restart(node_id)
        self._log({"kind": "heal"})

    def _log(self, event: dict[str, Any]) -> None:
        event = {"t": time.monotonic(), **event}
        log.info("nemesis: %s", event)
        self.faults.append(event)


def schedule_text(steps: list[Step]) -> str:
    return "\n".join(f"  {s.label()}" for s in steps) or "  (no faults)"


def steps_json(steps: list[Step]) -> list[dict[str, Any]]:
    return [asdict(s) for s in steps]
