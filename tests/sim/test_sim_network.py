"""The event loop and the simulated network behave as their knobs say, deterministically."""

from __future__ import annotations

import random

from tests.sim.simulator.faults import FAULT_KINDS, draw_knobs, draw_schedule
from tests.sim.simulator.loop import EventLoop
from tests.sim.simulator.network import LinkKnobs, SimNetwork


def test_events_fire_in_time_then_scheduling_order() -> None:
    loop = EventLoop()
    fired: list[str] = []
    loop.call_at(5, lambda: fired.append("b"))
    loop.call_at(1, lambda: fired.append("a"))
    loop.call_at(5, lambda: fired.append("c"))
    cancelled = loop.call_at(3, lambda: fired.append("x"))
    cancelled.cancel()

    def schedule_more() -> None:
        loop.call_later(0, lambda: fired.append("a2"))

    loop.call_at(2, schedule_more)
    loop.run_until(10)
    assert fired == ["a", "a2", "b", "c"]
    assert loop.now_ms == 10


def test_run_until_stops_when_the_predicate_holds() -> None:
    loop = EventLoop()
    count = [0]

    def bump() -> None:
        count[0] += 1
        loop.call_later(1, bump)

    loop.call_later(1, bump)
    assert loop.run_until(1_000, lambda: count[0] == 7)
    assert loop.now_ms == 7


def _net(
    knobs: LinkKnobs, seed: int = 1
) -> tuple[EventLoop, SimNetwork, list[tuple[int, int, object, int]]]:
    loop = EventLoop()
    got: list[tuple[int, int, object, int]] = []
    net = SimNetwork(
        loop, random.Random(seed), lambda s, d, m: got.append((s, d, m, loop.now_ms)), knobs
    )
    return loop, net, got


def test_delivery_respects_delay_bounds() -> None:
    loop, net, got = _net(LinkKnobs(delay_min_ms=3, delay_max_ms=9))
    for i in range(200):
        net.send(1, 2, i)
    loop.run_until(100)
    assert sorted(int(str(m)) for _, _, m, _ in got) == list(range(200))
    assert all(3 <= t <= 9 for *_, t in got)


def test_loss_duplication_and_reordering_happen_at_their_rates() -> None:
    knobs = LinkKnobs(
        delay_min_ms=1,
        delay_max_ms=1,
        loss_probability=0.2,
        duplicate_probability=0.1,
        reorder_probability=0.1,
        reorder_extra_ms=30,
    )
    loop, net, got = _net(knobs)
    for i in range(2_000):
        net.send(1, 2, i)
    loop.run_until(1_000)
    assert 300 < net.stats.lost < 500
    assert 100 < net.stats.duplicated < 220
    assert net.stats.reordered > 100
    assert len(got) == 2_000 - net.stats.lost + net.stats.duplicated
    order = [int(str(m)) for _, _, m, _ in got]
    assert order != sorted(order)  # reordered


def test_partitions_cut_links_and_in_flight_messages_and_heal() -> None:
    loop, net, got = _net(LinkKnobs(delay_min_ms=5, delay_max_ms=5))
    net.send(1, 2, "in flight")
    net.partition([{1}, {2, 3}])
    net.send(1, 3, "cut")
    net.send(2, 3, "same side")
    loop.run_until(10)
    assert [m for *_, m, _ in got] == ["same side"]
    net.heal()
    net.block(1, 2)  # asymmetric: 1 -> 2 cut, 2 -> 1 open
    net.send(1, 2, "one way")
    net.send(2, 1, "other way")
    loop.run_until(20)
    assert [m for *_, m, _ in got] == ["same side", "other way"]
    net.isolate(3, [1, 2, 3])
    assert net.is_blocked(3, 1) and net.is_blocked(2, 3) and not net.is_blocked(2, 1)


def test_the_same_seed_gives_the_same_knobs_schedule_and_deliveries() -> None:
    def once(seed: int) -> tuple[object, ...]:
        knobs = draw_knobs(random.Random(f"{seed}/knobs"))
        schedule = draw_schedule(random.Random(f"{seed}/schedule"), knobs)
        loop, net, got = _net(knobs.link, seed)
        for i in range(100):
            net.send(1 + i % 3, 1 + (i + 1) % 3, i)
        loop.run_until(10_000)
        return knobs, tuple(schedule), tuple(got)

    assert once(7) == once(7)
    assert once(7) != once(8)
    knobs = draw_knobs(random.Random("7/knobs"))
    assert {e.kind for e in draw_schedule(random.Random("x"), knobs)} <= set(FAULT_KINDS)
