"""The simulated network: per-link delay, loss, duplication, reordering, and partitions.

A message is a Python object handed from one node id to another. Each send draws its fate
from the run's network RNG: lost, delivered once, or delivered twice, each copy after a delay
drawn from the link's range, with an occasional extra delay that reorders it behind later
messages. Partitions block directed links; a message is dropped if its link is blocked when it
is sent or when it would arrive (a partition cuts what is in flight, like a pulled cable).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from .loop import EventLoop
from .trace import Trace


@dataclass(frozen=True)
class LinkKnobs:
    """How one directed link behaves. Probabilities are per message, in [0, 1]."""

    delay_min_ms: int = 1
    delay_max_ms: int = 10
    loss_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    # A reordered message waits up to this much longer than the link's delay.
    reorder_extra_ms: int = 50
    # A duplicate arrives up to this much later than the original: a replay of an old
    # message, possibly from an earlier term (TigerBeetle's packet replay).
    replay_max_ms: int = 0

    def __post_init__(self) -> None:
        assert 0 <= self.delay_min_ms <= self.delay_max_ms
        for p in (self.loss_probability, self.duplicate_probability, self.reorder_probability):
            assert 0.0 <= p <= 1.0


@dataclass
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    cut: int = 0
    duplicated: int = 0
    reordered: int = 0


class SimNetwork:
    """Links between node ids on one :class:`EventLoop`.

    ``deliver(src, dst, message)`` is called on the loop when a message arrives; whether the
    destination is up is the caller's business. Not thread-safe (there is one thread).
    """

    def __init__(
        self,
        loop: EventLoop,
        rng: random.Random,
        deliver: Callable[[int, int, object], None],
        knobs: LinkKnobs | None = None,
        trace: Trace | None = None,
        describe: Callable[[object], str] = str,
    ) -> None:
        self._loop = loop
        self._rng = rng
        self._deliver = deliver
        self.default_knobs = knobs or LinkKnobs()
        self._link_knobs: dict[tuple[int, int], LinkKnobs] = {}
        self._blocked: set[tuple[int, int]] = set()
        self._trace = trace
        self._describe = describe
        self.stats = NetworkStats()

    # --- link state ------------------------------------------------------------------------

    def knobs(self, src: int, dst: int) -> LinkKnobs:
        return self._link_knobs.get((src, dst), self.default_knobs)

    def set_link(self, src: int, dst: int, knobs: LinkKnobs) -> None:
        self._link_knobs[(src, dst)] = knobs

    def set_default(self, knobs: LinkKnobs) -> None:
        self.default_knobs = knobs

    def calm(self) -> None:
        """No more loss or duplication anywhere (delays and reordering stay)."""
        self.default_knobs = replace(
            self.default_knobs, loss_probability=0.0, duplicate_probability=0.0
        )
        self._link_knobs.clear()

    def is_blocked(self, src: int, dst: int) -> bool:
        return (src, dst) in self._blocked

    def blocked_links(self) -> set[tuple[int, int]]:
        return set(self._blocked)

    def block(self, src: int, dst: int) -> None:
        """Cut the directed link src -> dst (an asymmetric partition if only one way)."""
        if src != dst:
            self._blocked.add((src, dst))

    def unblock(self, src: int, dst: int) -> None:
        self._blocked.discard((src, dst))

    def isolate(self, node: int, nodes: Iterable[int]) -> None:
        """Cut ``node`` off from every other node, both ways."""
        for other in nodes:
            self.block(node, other)
            self.block(other, node)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between nodes of different groups, both ways."""
        sets = [set(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                for x in a:
                    for y in b:
                        self.block(x, y)
                        self.block(y, x)

    def heal(self) -> None:
        """Every link up again."""
        self._blocked.clear()

    # --- traffic ---------------------------------------------------------------------------

    def send(self, src: int, dst: int, message: object) -> None:
        """Put ``message`` on the wire; its fate is drawn now, its arrival happens later."""
        self.stats.sent += 1
        if (src, dst) in self._blocked:
            self.stats.cut += 1
            return
        knobs = self._link_knobs.get((src, dst), self.default_knobs)
        rng = self._rng
        if knobs.loss_probability and rng.random() < knobs.loss_probability:
            self.stats.lost += 1
            if self._trace is not None and self._trace.enabled:
                self._trace.record(
                    self._loop.now_ms, self._loop.steps, src, "lost", self._describe(message)
                )
            return
        copies = 1
        if knobs.duplicate_probability and rng.random() < knobs.duplicate_probability:
            copies = 2
            self.stats.duplicated += 1
        for copy in range(copies):
            delay = rng.randint(knobs.delay_min_ms, knobs.delay_max_ms)
            if copy and knobs.replay_max_ms:
                delay += rng.randint(0, knobs.replay_max_ms)
            if knobs.reorder_probability and rng.random() < knobs.reorder_probability:
                delay += rng.randint(1, knobs.reorder_extra_ms)
                self.stats.reordered += 1
            self._loop.call_later(delay, lambda: self._arrive(src, dst, message))

    def _arrive(self, src: int, dst: int, message: object) -> None:
        if (src, dst) in self._blocked:
            self.stats.cut += 1
            return
        self.stats.delivered += 1
        self._deliver(src, dst, message)
