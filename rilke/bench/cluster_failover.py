"""`rilke bench failover`: kill -9 a partition's leader under steady acks=all load.

Spawns a ``--nodes`` cluster (:mod:`rilke.bench.cluster_spawn`), creates a one-partition
topic of replication factor 3 and sends ``--rate`` records/s to it with acks=all (idempotent,
the producer's default retries). After ``--before-s`` of steady load it kills the partition's
leader with SIGKILL and keeps the load going for ``--after-s``; every acknowledgement's time
is kept. Reported per round, from the kill:

- first acknowledged write: the first acknowledgement after the outage. Responses the dead
  leader had already sent can still arrive just after the kill, so the outage is the first
  gap of at least one window between acknowledgements after the kill (none: the first
  acknowledgement after the kill);
- full rate again: the start of the first run of ``--sustain`` windows (``--window-ms``) from
  the first acknowledgement on in which each window acknowledges at least ``--full-fraction``
  of the rate (the backlog sent during the outage counts: it is the log taking writes);
- election: until a surviving node's Metadata names another leader with a newer epoch (polled
  every 10 ms);
- what the producer saw: records sent, acknowledged, failed, and acknowledged offsets given
  twice (idempotence says none).

With ``--rounds N`` the killed node is started again and the cluster waited on between rounds.
"""

from __future__ import annotations

import argparse
import bisect
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from rilke.bench.cluster_spawn import NO_LEADER, MetadataProbe, SpawnedCluster
from rilke.bench.common import payloads, print_table, tune_malloc, write_json

GOAL_S = 1.5
"""Issue 10: kill to first acknowledged write within 1.5 s with default settings (Redpanda's
default election timeout is 1.5 s; JetStream takes 4-9 s)."""
ELECTION_POLL_S = 0.01
FIRST_TERM = 1
LEADER_REPORTED_TIMEOUT_S = 60.0
"""Until every node names the partition's Raft leader (reported in the broker heartbeat,
every 1 s)."""
SETTLE_S = 1.0
"""After the topic is led and before the load starts: the first heartbeats and ISR settle."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "failover",
        help="kill -9 a partition's leader under acks=all load: time to the next write",
        description="Spawn a cluster, send a steady acks=all load to one partition of "
        "replication factor 3, kill -9 its leader and report the time from the kill to the "
        "first acknowledged write, to full rate again, and to the new leader in Metadata.",
    )
    p.add_argument("--nodes", type=int, default=3, help="cluster nodes (default 3, at least 3)")
    p.add_argument(
        "--rate", type=int, default=2000, help="records/s of the steady load (default 2,000)"
    )
    p.add_argument("--record-size", type=int, default=100, help="value bytes (default 100)")
    p.add_argument(
        "--before-s", type=float, default=3.0, help="steady load before the kill (default 3)"
    )
    p.add_argument("--after-s", type=float, default=8.0, help="load after the kill (default 8)")
    p.add_argument("--window-ms", type=float, default=100.0, help="rate window (default 100 ms)")
    p.add_argument(
        "--full-fraction",
        type=float,
        default=0.9,
        help="a window at full rate acknowledges this share of --rate (default 0.9)",
    )
    p.add_argument(
        "--sustain", type=int, default=3, help="windows in a row at full rate (default 3)"
    )
    p.add_argument("--rounds", type=int, default=1, help="kills, one per round (default 1)")
    p.add_argument("--linger-ms", type=float, default=1.0, help="the producer's linger (default 1)")
    p.add_argument(
        "--retry-backoff-max-ms",
        type=float,
        default=None,
        help="the producer's retry_backoff_max_ms (default: the producer's, 1,000); the first "
        "write after the election waits for the retried batch's backoff",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


# --- the analysis (pure: times in seconds on one clock) --------------------------------------


def first_ack_after(acks: Sequence[float], kill_at: float, gap_s: float) -> tuple[float, int]:
    """(time of the first acknowledgement after the outage, acknowledgements that came
    before the outage's gap: the dead leader's responses already on their way). ``acks``
    sorted. The outage is the first gap of at least ``gap_s`` after ``kill_at`` (from the
    kill itself or between two acknowledgements); without one, the first acknowledgement
    after the kill. ValueError if nothing was acknowledged after the kill."""
    i = bisect.bisect_right(acks, kill_at)
    if i == len(acks):
        raise ValueError("nothing acknowledged after the kill")
    previous = kill_at
    for j in range(i, len(acks)):
        if acks[j] - previous >= gap_s:
            return acks[j], j - i
        previous = acks[j]
    return acks[i], 0


def window_counts(acks: Sequence[float], start: float, end: float, window_s: float) -> list[int]:
    """Acknowledgements in each window [start + k*w, start + (k+1)*w) up to ``end`` (the last,
    partial window dropped). ``acks`` sorted."""
    counts = []
    k = 0
    while start + (k + 1) * window_s <= end:
        lo = bisect.bisect_left(acks, start + k * window_s)
        hi = bisect.bisect_left(acks, start + (k + 1) * window_s)
        counts.append(hi - lo)
        k += 1
    return counts


def full_rate_at(  # noqa: PLR0917
    acks: Sequence[float],
    first_ack: float,
    end: float,
    rate: float,
    window_s: float,
    fraction: float,
    sustain: int,
) -> float | None:
    """The start of the first ``sustain`` windows in a row, from ``first_ack`` on, each with
    at least ``fraction * rate * window_s`` acknowledgements; None if the load ended first."""
    want = fraction * rate * window_s
    counts = window_counts(acks, first_ack, end, window_s)
    run = 0
    for k, count in enumerate(counts):
        run = run + 1 if count >= want else 0
        if run == sustain:
            return first_ack + (k - sustain + 1) * window_s
    return None


def duplicate_offsets(offsets: Sequence[int]) -> int:
    """How many acknowledged offsets were given to more than one record."""
    return len(offsets) - len(set(offsets))


# --- the load -----------------------------------------------------------------------------


class SteadyLoad:
    """A thread sending ``rate`` records/s to one partition with acks=all and keeping every
    acknowledgement's ``time.monotonic()`` and offset (appended on the producer's thread)."""

    def __init__(  # noqa: PLR0917
        self,
        bootstrap: str,
        topic: str,
        rate: int,
        size: int,
        linger_ms: float,
        retry_backoff_max_ms: float | None = None,
    ) -> None:
        from rilke.client.producer import Producer

        self.rate = rate
        self.topic = topic
        self.values = payloads(size)
        settings: dict[str, Any] = {}
        if retry_backoff_max_ms is not None:
            settings["retry_backoff_max_ms"] = retry_backoff_max_ms
            settings["retry_backoff_ms"] = min(100.0, retry_backoff_max_ms)
        self.producer = Producer(
            bootstrap,
            acks="all",
            linger_ms=linger_ms,
            client_id="rilke-bench-failover",
            **settings,
        )
        self.producer.partitions_for(topic)
        self.ack_times: list[float] = []
        self.offsets: list[int] = []
        self.errors: list[str] = []
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="failover-load")

    def start(self) -> None:
        self._thread.start()

    def _acked(self, metadata: Any) -> None:
        self.ack_times.append(time.monotonic())
        self.offsets.append(metadata.offset)

    def _failed(self, exc: BaseException) -> None:
        self.errors.append(repr(exc))

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.is_set():
            due = int((time.monotonic() - start) * self.rate) - self.sent
            if due <= 0:
                self._stop.wait(max(0.0, start + (self.sent + 1) / self.rate - time.monotonic()))
                continue
            for _ in range(min(due, 1000)):
                fut = self.producer.send(self.topic, self.values[self.sent & 1023], partition=0)
                fut.add_callback(self._acked)
                fut.add_errback(self._failed)
                self.sent += 1

    def stop(self, flush_timeout_s: float = 15.0) -> None:
        """Stop sending and wait up to ``flush_timeout_s`` for the outstanding records (those
        still unresolved then are counted as such, not waited for)."""
        from rilke.errors import KafkaTimeoutError

        self._stop.set()
        self._thread.join(10)
        try:
            self.producer.flush(flush_timeout_s)
        except KafkaTimeoutError:
            pass
        finally:
            self.producer.close(1.0)


def watch_election(  # noqa: PLR0917
    probe: MetadataProbe,
    addresses: Sequence[str],
    topic: str,
    killed: int,
    old_epoch: int,
    deadline: float,
) -> float | None:
    """``time.monotonic()`` when one of ``addresses`` first names a leader of partition 0
    other than ``killed`` with an epoch above ``old_epoch``; None by ``deadline``."""
    while time.monotonic() < deadline:
        for address in addresses:
            parts = probe.partitions(address, topic)
            if parts and 0 in parts:
                leader, epoch = parts[0]
                if leader not in (killed, NO_LEADER) and epoch > old_epoch:
                    return time.monotonic()
        time.sleep(ELECTION_POLL_S)
    return None


@dataclass
class RoundFigures:
    killed: int
    old_epoch: int
    first_ack_s: float | None
    full_rate_s: float | None
    election_s: float | None
    stragglers: int
    steady_per_s: float
    sent: int
    acknowledged: int
    failed: int
    unresolved: int
    duplicate_offsets: int
    first_errors: list[str]


def reported_leader(cluster: SpawnedCluster, topic: str) -> tuple[int, int] | None:
    """(leader, epoch) of partition 0 if every live node names the same live leader with a
    Raft term for epoch, else None."""
    seen = set()
    for node in cluster.live():
        parts = cluster.probe.partitions(node.address, topic)
        if not parts or 0 not in parts:
            return None
        seen.add(parts[0])
    if len(seen) != 1:
        return None
    leader, epoch = seen.pop()
    return (leader, epoch) if leader in cluster.live_ids() and epoch >= FIRST_TERM else None


def one_round(cluster: SpawnedCluster, topic: str, args: argparse.Namespace) -> RoundFigures:
    """Load, kill the leader of partition 0, keep loading; the figures of that kill."""
    # The epoch of a Raft-elected leader is its term (>= 1); epoch 0 is the controller's
    # first assignment, before the group's leader reported itself: that node may not lead.
    cluster.wait(
        lambda: reported_leader(cluster, topic) is not None,
        LEADER_REPORTED_TIMEOUT_S,
        f"one Raft leader of {topic}/0 (epoch >= {FIRST_TERM}) named by every node",
    )
    leader, epoch = cluster.leader_of(topic, 0)
    load = SteadyLoad(
        cluster.bootstrap,
        topic,
        args.rate,
        args.record_size,
        args.linger_ms,
        args.retry_backoff_max_ms,
    )
    window_s = args.window_ms / 1000
    election: list[float | None] = []
    try:
        load.start()
        load_start = time.monotonic()
        time.sleep(args.before_s)  # the steady phase: a duration, nothing is waited on
        survivors = [n.address for n in cluster.live() if n.node_id != leader]
        kill_at = cluster.kill(leader)
        end_at = kill_at + args.after_s
        watcher = threading.Thread(
            target=lambda: election.append(
                watch_election(cluster.probe, survivors, topic, leader, epoch, end_at)
            ),
            daemon=True,
        )
        watcher.start()
        time.sleep(max(0.0, end_at - time.monotonic()))
        watcher.join(10)
    finally:
        load.stop()
    acks = sorted(load.ack_times)
    steady = window_counts(acks, load_start + SETTLE_S, kill_at, window_s)
    try:
        first_ack, stragglers = first_ack_after(acks, kill_at, window_s)
    except ValueError:
        first_ack, stragglers = None, 0
    full = (
        full_rate_at(acks, first_ack, end_at, args.rate, window_s, args.full_fraction, args.sustain)
        if first_ack is not None
        else None
    )
    elected = election[0] if election else None
    return RoundFigures(
        killed=leader,
        old_epoch=epoch,
        first_ack_s=None if first_ack is None else first_ack - kill_at,
        full_rate_s=None if full is None else full - kill_at,
        election_s=None if elected is None else elected - kill_at,
        stragglers=stragglers,
        steady_per_s=(sum(steady) / (len(steady) * window_s)) if steady else 0.0,
        sent=load.sent,
        acknowledged=len(load.ack_times),
        failed=len(load.errors),
        unresolved=load.sent - len(load.ack_times) - len(load.errors),
        duplicate_offsets=duplicate_offsets(load.offsets),
        first_errors=load.errors[:3],
    )


def run(args: argparse.Namespace) -> int:
    if args.nodes < 3:
        print("rilke: bad argument: --nodes must be >= 3 (a partition of replication factor 3)")
        return 2
    if args.rate < 1 or args.rounds < 1 or args.sustain < 1 or args.window_ms <= 0:
        print("rilke: bad argument: --rate, --rounds, --sustain and --window-ms must be > 0")
        return 2
    if args.retry_backoff_max_ms is not None and args.retry_backoff_max_ms <= 0:
        print("rilke: bad argument: --retry-backoff-max-ms must be > 0")
        return 2
    if args.before_s < SETTLE_S + args.window_ms / 1000 or args.after_s <= 0:
        print(f"rilke: bad argument: --before-s must be >= {SETTLE_S:g} s and a window")
        return 2
    tune_malloc()
    rounds: list[RoundFigures] = []
    topic = "bench-failover"
    with SpawnedCluster(args.nodes) as cluster:
        cluster.create_topic(topic, 1, 3)
        for i in range(args.rounds):
            figures = one_round(cluster, topic, args)
            rounds.append(figures)
            _print_round(i, figures, args)
            if i + 1 < args.rounds:
                cluster.restart(figures.killed)
                cluster.wait(cluster.formed, 120, "the killed node back")
                cluster.wait(lambda: cluster.all_led(topic, 1), 120, "the partition led")
    write_json(
        args.json,
        {
            "benchmark": "failover",
            "goal_s": GOAL_S,
            "settings": {k: getattr(args, k) for k in _SETTINGS},
            "rounds": [asdict(r) for r in rounds],
        },
    )
    bad = any(r.first_ack_s is None or r.duplicate_offsets or r.unresolved for r in rounds)
    return 1 if bad else 0


_SETTINGS = (
    "nodes",
    "rate",
    "record_size",
    "before_s",
    "after_s",
    "window_ms",
    "full_fraction",
    "sustain",
    "linger_ms",
    "retry_backoff_max_ms",
)


def _s(value: float | None, over: str = "not within the run") -> str:
    return over if value is None else f"{value * 1000:,.0f} ms"


def _print_round(i: int, r: RoundFigures, args: argparse.Namespace) -> None:
    goal = ""
    if r.first_ack_s is not None:
        goal = f"  (goal {GOAL_S:g} s: {'met' if r.first_ack_s <= GOAL_S else 'missed'})"
    print_table(
        f"rilke bench failover round {i + 1}: {args.nodes} nodes, replication factor 3, "
        f"acks=all, {args.rate:,} records/s of {args.record_size} B; kill -9 of leader "
        f"{r.killed} (epoch {r.old_epoch})",
        [
            (
                "steady rate before the kill",
                f"{r.steady_per_s:,.0f} acks/s"
                + ("" if r.steady_per_s >= args.full_fraction * args.rate else "  (NOT steady)"),
            ),
            ("kill to first acknowledged write", _s(r.first_ack_s) + goal),
            (
                f"kill to full rate ({args.full_fraction:.0%}, {args.sustain} windows)",
                _s(r.full_rate_s),
            ),
            ("kill to new leader in Metadata", _s(r.election_s)),
            ("acknowledged after the kill, before the outage", f"{r.stragglers}"),
            (
                "records sent / acknowledged / failed / unresolved",
                f"{r.sent:,} / {r.acknowledged:,} / {r.failed:,} / {r.unresolved:,}"
                + (f"  first: {r.first_errors[0]}" if r.first_errors else ""),
            ),
            ("offsets acknowledged twice", f"{r.duplicate_offsets}"),
        ],
    )
