"""`rilke bench consume --group G --consumers N`: consumer group throughput, end-to-end latency
and rebalance times.

Phases (each consumer is its own process, all in group ``G``):

1. throughput: fill a topic (``--partitions``, default 12) with ``--count`` records, then read
   it all with 1 consumer (group ``G-solo``) and with N consumers (group ``G``): msgs/s of each
   and their ratio;
2. live: a producer sends ``--live-rate`` records/s while the N consumers tail the topic:
   end-to-end latency (record timestamp to poll) p50/p99;
3. rebalances during the live phase: a consumer joins (arrival), one closes gracefully
   (leave), one is killed with SIGKILL (death, noticed after its session timeout). Rebalance
   time is from the event to the moment the last moved partition is assigned again
   (``on_assign`` in its new owner). For partitions that do not move we report the longest
   gap between records seen during the rebalance, next to the longest gap in a quiet window:
   a zero pause shows as gaps of the same size.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing as mp
import os
import queue
import signal
import time
from collections import defaultdict
from typing import Any

from rilke.bench.common import (
    broker_for,
    ensure_topic,
    live_producer,
    percentiles,
    print_table,
    progress,
    tune_malloc,
    write_json,
)

_QUEUE_BOUND = 10_000


def _worker(
    *,
    bootstrap: str,
    topic: str,
    group: str,
    name: str,
    events: Any,
    stop: Any,
    settings: dict[str, Any],
    target: int,
    go: Any,
) -> None:
    """A consumer process: reports assign/revoke times, counts, latency samples and, per
    partition, the arrival time of records (for gap measurements)."""
    from rilke.client.consumer import Consumer

    tune_malloc()
    pid = os.getpid()

    def put(item: tuple[Any, ...]) -> None:
        with contextlib.suppress(queue.Full):
            events.put(item, timeout=1.0)

    consumer = Consumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        client_id=name,
        max_poll_records=10_000,
        **settings,
    )

    def on_assign(tps: set[Any]) -> None:
        if not go.is_set():
            consumer.pause(*tps)  # the throughput phase starts once the group is stable
        put(("assign", name, pid, time.time(), sorted(tps)))

    consumer.subscribe(
        [topic],
        on_assign=on_assign,
        on_revoke=lambda tps: put(("revoke", name, pid, time.time(), sorted(tps))),
    )
    paused = not go.is_set()
    put(("started", name, pid, time.time(), []))
    got = 0
    last_report = time.monotonic()
    latencies: list[float] = []
    arrivals: dict[int, float] = {}
    try:
        while not stop.is_set():
            if paused and go.is_set():
                consumer.resume(*consumer.assignment())
                paused = False
            batch = consumer.poll(200)
            now = time.time()
            for tp, records in batch.items():
                got += len(records)
                arrivals[tp.partition] = now
                if len(latencies) < 2000:
                    latencies.extend(now * 1000 - r.timestamp for r in records[:50])
            if batch or time.monotonic() - last_report > 0.05:
                put(("count", name, pid, now, got, latencies, dict(arrivals)))
                latencies = []
                arrivals = {}
                last_report = time.monotonic()
            if target and got >= target:
                break
        put(("count", name, pid, time.time(), got, latencies, arrivals))
    finally:
        consumer.close()
        cpu = os.times()
        put(("closed", name, pid, time.time(), [], cpu.user + cpu.system))


class _Group:
    """Consumer processes of one group, and what they report."""

    def __init__(self, ctx: Any, bootstrap: str, topic: str, group: str, settings: dict[str, Any]):
        self.ctx = ctx
        self.bootstrap = bootstrap
        self.topic = topic
        self.group = group
        self.settings = settings
        self.events = ctx.Queue(_QUEUE_BOUND)
        self.procs: dict[str, tuple[Any, Any]] = {}
        self.counts: dict[str, int] = defaultdict(int)
        self.owner: dict[int, str] = {}
        self.assign_log: list[tuple[float, str, list[Any]]] = []
        self.revoke_log: list[tuple[float, str, list[Any]]] = []
        self.latencies: list[float] = []
        self.arrivals: list[tuple[float, str, int]] = []
        self.closed: set[str] = set()
        self.cpu_s: dict[str, float] = {}
        self.go = ctx.Event()
        self.go.set()

    def start(self, name: str, target: int = 0) -> None:
        stop = self.ctx.Event()
        proc = self.ctx.Process(
            target=_worker,
            kwargs={
                "bootstrap": self.bootstrap,
                "topic": self.topic,
                "group": self.group,
                "name": name,
                "events": self.events,
                "stop": stop,
                "settings": self.settings,
                "target": target,
                "go": self.go,
            },
            daemon=True,
        )
        proc.start()
        self.procs[name] = (proc, stop)

    def drain(self, timeout_s: float = 0.05) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                item = self.events.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return
            kind, name = item[0], item[1]
            if kind == "assign":
                self.assign_log.append((item[3], name, item[4]))
                for tp in item[4]:
                    self.owner[tp[1]] = name
            elif kind == "revoke":
                self.revoke_log.append((item[3], name, item[4]))
                for tp in item[4]:
                    if self.owner.get(tp[1]) == name:
                        del self.owner[tp[1]]
            elif kind == "count":
                self.counts[name] = item[4]
                self.latencies.extend(item[5])
                self.arrivals.extend((t, name, p) for p, t in item[6].items())
            elif kind == "closed":
                self.closed.add(name)
                if len(item) > 5:
                    self.cpu_s[name] = item[5]

    def wait(self, cond: Any, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.drain(0.05)
            if cond():
                return True
        return False

    def total(self) -> int:
        return sum(self.counts.values())

    def stop(self, name: str) -> None:
        _, stop = self.procs[name]
        stop.set()

    def kill(self, name: str) -> None:
        proc, _ = self.procs[name]
        if proc.pid is not None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.join(5)
        self.closed.add(name)
        for p, owner in list(self.owner.items()):
            if owner == name:
                del self.owner[p]

    def shutdown(self) -> None:
        for _, stop in self.procs.values():
            stop.set()
        deadline = time.monotonic() + 20
        for proc, _ in self.procs.values():
            proc.join(max(0.1, deadline - time.monotonic()))
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        self.drain(0.1)


def _read_all(
    *,
    ctx: Any,
    bootstrap: str,
    topic: str,
    group: str,
    consumers: int,
    count: int,
    partitions: int,
    settings: dict[str, Any],
    no_progress: bool,
) -> tuple[float, float]:
    """Seconds for ``consumers`` members of a fresh group to read ``count`` records, and the
    CPU seconds their processes used in all (start-up included)."""
    g = _Group(ctx, bootstrap, topic, group, settings)
    g.go.clear()
    try:
        for i in range(consumers):
            g.start(f"{group}-{i}")
        # Measure a stable group: its members hold their partitions paused until every
        # partition is owned and the shares are even.
        share = partitions // consumers

        def stable() -> bool:
            owners = list(g.owner.values())
            return len(g.owner) == partitions and all(
                owners.count(f"{group}-{i}") >= share for i in range(consumers)
            )

        if not g.wait(stable, 60):
            raise RuntimeError(f"group {group} did not settle: {g.owner}")
        with progress(count, no_progress) as bar:
            bar.set_description(f"{consumers} consumer(s)")
            start = time.monotonic()
            g.go.set()
            last_total = 0
            deadline = start + 600
            while g.total() < count and time.monotonic() < deadline:
                g.drain(0.05)
                total = g.total()
                bar.update(total - last_total)
                last_total = total
            end = time.monotonic()
        if g.total() < count:
            raise RuntimeError(f"the group read {g.total()} of {count} records in time")
        elapsed = max(1e-6, end - start)
    finally:
        g.shutdown()
    return elapsed, sum(g.cpu_s.values())


def _start_at_end(bootstrap: str, topic: str, group: str, partitions: int) -> None:
    """Commit the log end offsets for the (new, empty) live group: it tails the topic."""
    from rilke.client.admin import Admin
    from rilke.client.structs import TopicPartition

    with Admin(bootstrap) as admin:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        ends = admin.list_offsets(dict.fromkeys(tps, "latest"))
        admin.alter_group_offsets(group, {tp: ot.offset for tp, ot in ends.items()})


def _max_gap(
    arrivals: list[tuple[float, str, int]], partitions: set[int], t0: float, t1: float
) -> float:
    """The longest time without records on any of ``partitions`` within [t0, t1]."""
    worst = 0.0
    by_p: dict[int, list[float]] = defaultdict(list)
    for t, _, p in arrivals:
        if p in partitions and t0 <= t <= t1:
            by_p[p].append(t)
    for p in partitions:
        times = sorted(by_p.get(p, []))
        points = [t0, *times, t1]
        worst = max(worst, *(b - a for a, b in itertools.pairwise(points)))
    return worst


def run_group(args: argparse.Namespace) -> int:
    """The consumer group benchmark (``rilke bench consume --group G``)."""
    from rilke.bench.consume import _fill

    if args.consumers < 1:
        print("rilke: bad argument: --consumers must be >= 1")
        return 2
    partitions = args.partitions if args.partitions != 1 else 12
    tune_malloc()
    ctx = mp.get_context("spawn")
    settings = {"session_timeout_ms": args.session_timeout_ms}
    group = args.group
    with broker_for(args) as bootstrap:
        topic = ensure_topic(bootstrap, args.topic, partitions)
        if not args.no_fill:
            with progress(args.count, args.no_progress) as bar:
                bar.set_description("fill")
                _fill(bootstrap, topic, args.count, args.record_size, bar)
        stamp = int(time.time())
        (solo_s, solo_cpu), (many_s, many_cpu) = (
            _read_all(
                ctx=ctx,
                bootstrap=bootstrap,
                topic=topic,
                group=f"{group}-{n}-{stamp}",
                consumers=n,
                count=args.count,
                partitions=partitions,
                settings=settings,
                no_progress=args.no_progress,
            )
            for n in (1, args.consumers)
        )

        # Live phase with rebalances.
        g = _Group(ctx, bootstrap, topic, f"{group}-live-{stamp}", settings)
        producer = ctx.Process(
            target=live_producer,
            kwargs={
                "bootstrap": bootstrap,
                "topic": topic,
                "rate": args.live_rate,
                "seconds": args.live_seconds,
                "size": args.record_size,
                "partitions": partitions,
                "pause_s": 0.002,
            },
            daemon=True,
        )
        rebalances: dict[str, float | None] = {}
        pauses: dict[str, float] = {}
        try:
            _start_at_end(bootstrap, topic, g.group, partitions)
            for i in range(args.consumers):
                g.start(f"c{i}")
            g.wait(lambda: len(g.owner) == partitions, 60)
            producer.start()
            g.wait(lambda: False, 2.0)
            quiet_t0 = time.time()
            g.wait(lambda: False, 1.5)
            pauses["quiet"] = _max_gap(g.arrivals, set(range(partitions)), quiet_t0, time.time())

            def measure(event: str, act: Any, done: Any, timeout_s: float) -> None:
                before = dict(g.owner)
                t0 = time.time()
                act()
                ok = g.wait(done, timeout_s)
                t1 = time.time()
                rebalances[event] = (t1 - t0) if ok else None
                moved = {p for p in range(partitions) if g.owner.get(p) != before.get(p)}
                stayed = set(range(partitions)) - moved
                g.wait(lambda: False, 0.5)
                pauses[event] = _max_gap(g.arrivals, stayed, t0, t1 + 0.5) if stayed else 0.0

            def owns(name: str) -> int:
                return sum(1 for v in g.owner.values() if v == name)

            n = args.consumers
            newcomer = f"c{n}"
            measure(
                "arrival",
                lambda: g.start(newcomer),
                lambda: len(g.owner) == partitions and owns(newcomer) >= partitions // (n + 1),
                30,
            )
            measure(
                "leave",
                lambda: g.stop("c0"),
                lambda: len(g.owner) == partitions and owns("c0") == 0 and "c0" in g.closed,
                30,
            )
            measure(
                "death",
                lambda: g.kill(newcomer),
                lambda: len(g.owner) == partitions,
                args.session_timeout_ms / 1000 + 30,
            )
            producer.join(args.live_seconds + 30)
            g.wait(lambda: False, 1.0)
        finally:
            if producer.is_alive():
                producer.kill()
                producer.join(5)
            g.shutdown()

    pct = percentiles(g.latencies)
    solo_rate = args.count / solo_s
    many_rate = args.count / many_s
    result = {
        "benchmark": "consume-group",
        "topic": topic,
        "partitions": partitions,
        "consumers": args.consumers,
        "records": args.count,
        "solo_msgs_per_s": round(solo_rate),
        "group_msgs_per_s": round(many_rate),
        "group_over_solo": round(many_rate / solo_rate, 2),
        "solo_consumer_cpu_s": round(solo_cpu, 2),
        "group_consumers_cpu_s": round(many_cpu, 2),
        "load_average_1m": round(os.getloadavg()[0], 2),
        **{f"e2e_{k}": round(v, 3) for k, v in pct.items()},
        "rebalance_s": {k: (round(v, 3) if v is not None else None) for k, v in rebalances.items()},
        "max_gap_unmoved_s": {k: round(v, 3) for k, v in pauses.items()},
        "session_timeout_ms": args.session_timeout_ms,
    }

    def fmt(v: float | None) -> str:
        return "did not finish" if v is None else f"{v * 1000:.0f} ms"

    print_table(
        f"rilke bench consume --group: {args.consumers} consumers, {partitions} partitions, "
        f"{args.record_size} B records",
        [
            ("1 consumer", f"{solo_rate:,.0f} msgs/s ({solo_cpu:.1f} CPU-s in its process)"),
            (
                f"{args.consumers} consumers",
                f"{many_rate:,.0f} msgs/s ({many_rate / solo_rate:.2f}x; {many_cpu:.1f} CPU-s in "
                f"its processes; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)",
            ),
            (
                f"end-to-end at {args.live_rate:,}/s p50/p99",
                f"{pct['p50_ms']:.1f} / {pct['p99_ms']:.1f} ms ({len(g.latencies):,} samples)",
            ),
            ("rebalance: a member arrives", fmt(rebalances.get("arrival"))),
            ("rebalance: a member leaves (close)", fmt(rebalances.get("leave"))),
            (
                f"rebalance: a member dies (SIGKILL, session {args.session_timeout_ms} ms)",
                fmt(rebalances.get("death")),
            ),
            (
                "longest gap, unmoved partitions (quiet/arrival/leave/death)",
                " / ".join(
                    f"{pauses.get(k, 0.0) * 1000:.0f}"
                    for k in ("quiet", "arrival", "leave", "death")
                )
                + " ms",
            ),
        ],
    )
    write_json(args.json, result)
    return 0
