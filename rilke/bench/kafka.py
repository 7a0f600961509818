"""`rilke bench kafka`: the Kafka listener driven by confluent-kafka beside Rilke's own client.

One broker is started for the run (``rilke server --kafka-listen``, a temporary data dir,
OS-chosen ports). In that same run, phase after phase, it measures msgs/s of
``--record-size``-byte records:

- produce with acks=1 and with acks=all (idempotent), each into a fresh topic: confluent-kafka
  as a Kafka user runs it (librdkafka's batching with ``linger.ms``), then Rilke's Producer over
  gRPC with the settings of ``rilke bench produce``;
- consume a filled partition from the earliest offset: confluent-kafka's Consumer (assigned,
  no group), then Rilke's Consumer.

librdkafka is C, so on the Kafka path the broker, not the client, is what is measured. Beside
msgs/s each phase reports the CPU the broker process and the client (this process) spent: the
broker's CPU microseconds per record compare the two paths even where a client is the bound.
``--profile-dir`` records each phase of the broker with py-spy (when installed) and prints
where its time went.

confluent-kafka is optional: ``pip install 'rilke[bench]'`` (or ``pip install
confluent-kafka``) brings it; without it the Kafka phases are refused with that advice, or
skipped with ``--clients rilke``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from rilke.bench.common import (
    SpawnedBroker,
    ensure_topic,
    payloads,
    print_table,
    tune_malloc,
    write_json,
)

PHASES = ("produce-acks1", "produce-acksall", "consume")
CLIENTS = ("kafka", "rilke")
INSTALL_HINT = (
    "confluent-kafka is not installed: pip install 'rilke[bench]' (or pip install "
    "confluent-kafka), or run only Rilke's client with --clients rilke"
)
# The longest any phase may take before it is called failed (a stuck client, a dead broker).
PHASE_DEADLINE_S = 600.0
# Until every node of --spawn-cluster lists every node's Kafka listener (they register after
# forming: about a heartbeat).
KAFKA_LISTED_TIMEOUT_S = 60.0
# Records a consume phase asks for per call (both clients hand out batches of this many).
CONSUME_BATCH = 10_000


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "kafka",
        help="the Kafka listener (confluent-kafka) against Rilke's gRPC path, in one run",
        description="Start one broker with --kafka-listen, then measure produce (acks=1, "
        "acks=all) and consume msgs/s with confluent-kafka (librdkafka) and with Rilke's own "
        "client over gRPC, and print both with their ratio and the broker's CPU per record.",
    )
    p.add_argument(
        "--count", "-n", type=int, default=200_000, help="records per phase (default 200,000)"
    )
    p.add_argument(
        "--record-size", type=int, default=100, help="value bytes per record (default 100)"
    )
    p.add_argument("--partitions", type=int, default=1, help="partitions per topic (default 1)")
    p.add_argument(
        "--phases",
        default=",".join(PHASES),
        help=f"comma-separated phases to run (default {','.join(PHASES)})",
    )
    p.add_argument(
        "--clients",
        default=",".join(CLIENTS),
        help="comma-separated clients: kafka (confluent-kafka), rilke (default both)",
    )
    p.add_argument(
        "--linger-ms", type=float, default=5, help="both producers' linger (default 5 ms)"
    )
    p.add_argument(
        "--profile-dir",
        metavar="DIR",
        help="record the broker with py-spy during each phase into DIR and print the "
        "functions it spent its time in (needs py-spy: pip install py-spy)",
    )
    p.add_argument(
        "--spawn-cluster",
        type=int,
        default=0,
        metavar="N",
        help="run N `rilke server` nodes with --initial-voters and --kafka-listen instead of "
        "one broker; clients bootstrap at all of them (the CPU figures are all nodes')",
    )
    p.add_argument(
        "--replication-factor",
        type=int,
        default=0,
        help="the topics' replication factor with --spawn-cluster (default min(3, N))",
    )
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.set_defaults(func=run)


class Outcome(NamedTuple):
    """What one client did in a phase: records done, failed, the first error, and the
    seconds from the first record sent or asked for to the last acknowledged or received
    (connecting and closing left out)."""

    records: int
    errors: int
    first_error: str
    elapsed_s: float


@dataclass
class PhaseResult:
    phase: str
    client: str
    records: int
    elapsed_s: float
    broker_cpu_s: float | None
    client_cpu_s: float
    errors: int = 0
    first_error: str = ""
    profile: list[tuple[str, float]] = field(default_factory=list)
    # The seconds over which the CPU figures were taken (the phase with connecting and
    # closing): the CPU shares below are of this, not of elapsed_s.
    window_s: float = 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def broker_us_per_record(self) -> float | None:
        if self.broker_cpu_s is None or not self.records:
            return None
        return self.broker_cpu_s / self.records * 1e6

    def as_json(self, record_size: int) -> dict[str, Any]:
        per = self.broker_us_per_record()
        return {
            "phase": self.phase,
            "client": self.client,
            "records": self.records,
            "errors": self.errors,
            "elapsed_s": round(self.elapsed_s, 3),
            "msgs_per_s": round(self.msgs_per_s),
            "mb_per_s": round(self.msgs_per_s * record_size / 1e6, 2),
            "broker_cpu_s": None if self.broker_cpu_s is None else round(self.broker_cpu_s, 3),
            "broker_cpu_us_per_record": None if per is None else round(per, 2),
            "client_cpu_s": round(self.client_cpu_s, 3),
            "profile_top": [[name, round(share, 4)] for name, share in self.profile],
        }


# --- measuring ---------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), from /proc; None where
    /proc is not there."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the command name: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Profiler:
    """py-spy recording the broker during one phase (``record --format raw``: collapsed
    stacks), or nothing when no directory was asked for."""

    def __init__(self, directory: str | None, pid: int) -> None:
        self.directory = Path(directory) if directory else None
        self.pid = pid
        # On PATH, or installed beside this Python (a virtualenv not activated).
        beside = Path(sys.executable).with_name("py-spy")
        self.exe = (shutil.which("py-spy") or shutil.which(beside)) if directory else None
        if self.directory is not None:
            if self.exe is None:
                raise RuntimeError("--profile-dir needs py-spy: pip install py-spy")
            self.directory.mkdir(parents=True, exist_ok=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: Path | None = None

    def start(self, name: str) -> None:
        if self.directory is None or self.exe is None:
            return
        self._out = self.directory / f"{name}.txt"
        self._proc = subprocess.Popen(
            [
                self.exe,
                "record",
                "--pid",
                str(self.pid),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(self._out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # py-spy attaches before the phase starts (not a synchronisation)

    def stop(self, top: int = 12) -> list[tuple[str, float]]:
        """Stop recording; the ``top`` functions by share of samples spent in them (self)."""
        proc, out = self._proc, self._out
        self._proc = self._out = None
        if proc is None or out is None:
            return []
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if not out.exists():
            return []
        return summarize_collapsed(out.read_text(), top)


def summarize_collapsed(text: str, top: int) -> list[tuple[str, float]]:
    """From py-spy's collapsed stacks (``frame;frame;... count`` per line, the innermost frame
    last), the ``top`` innermost functions by share of the samples of busy threads (idle
    waits in the event loop's selector and in gRPC's polling threads left out)."""
    own: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        if _idle(leaf):
            continue
        n = int(count)
        own[_function(leaf)] += n
        total += n
    return [(name, n / total) for name, n in own.most_common(top)] if total else []


# Waits, not work (py-spy samples only threads it sees running, but a thread blocked in a
# call that does not release its state can still show): (function, file name).
_IDLE = {("select", "selectors.py"), ("wait", "threading.py"), ("_worker", "thread.py")}


def _idle(frame: str) -> bool:
    name, _, where = frame.partition(" (")
    file_name = where.rstrip(")").rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return (name.rsplit(".", 1)[-1], file_name) in _IDLE


def _function(frame: str) -> str:
    """``name (path/to/file.py:123)`` as ``name (file.py)``: lines of a function summed."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    short = "/".join(parts[-2:]) if "rilke" in parts else parts[-1]
    return f"{name} ({short})"


# --- the clients ----------------------------------------------------------------------------


def kafka_produce(
    bootstrap: str, topic: str, count: int, size: int, *, acks: str, linger_ms: float
) -> Outcome:
    """Send ``count`` records with confluent-kafka; (delivered, failed, first error)."""
    from confluent_kafka import Producer

    failures: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            failures.append(str(err))

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "rilke-bench-kafka",
            "acks": acks,
            "enable.idempotence": acks == "all",
            "linger.ms": linger_ms,
            "compression.type": "none",
            "delivery.report.only.error": True,
            "on_delivery": on_delivery,
        }
    )
    producer.list_topics(topic, timeout=30)
    values = payloads(size)
    produce, poll = producer.produce, producer.poll
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                produce(topic, values[i & 1023])
                break
            except BufferError:  # librdkafka's queue is full: let it drain
                poll(0.005)
        if not i & 4095:
            poll(0)
    undelivered = producer.flush(PHASE_DEADLINE_S)
    elapsed = time.perf_counter() - start
    failed = len(failures) + undelivered
    first = failures[0] if failures else ("flush timed out" if undelivered else "")
    return Outcome(count - failed, failed, first, elapsed)


def kafka_consume(bootstrap: str, topic: str, partitions: int, count: int) -> Outcome:
    """Read ``count`` records from the start of ``topic`` with confluent-kafka (assigned, no
    group); (records, errors, first error)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "client.id": "rilke-bench-kafka",
            "group.id": "rilke-bench-kafka",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            # librdkafka stops fetching for fetch.queue.backoff.ms (default 1 s) once it holds
            # queued.min.messages; a reader that drains faster than that would otherwise
            # measure that pause, not the broker (seen: 178k msgs/s with the default, over
            # 700k/s with 10 ms, on the same broker).
            "fetch.queue.backoff.ms": 10,
        }
    )
    try:
        # Leaders known before assign: else librdkafka retries its offset lookup on a 500 ms
        # timer, a client delay that would be counted as the broker's.
        consumer.list_topics(topic, timeout=30)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        got = errors = 0
        first = ""
        start = time.perf_counter()
        deadline = time.monotonic() + PHASE_DEADLINE_S
        while got < count and time.monotonic() < deadline:
            # consume() waits for the whole number asked for (or the timeout): never ask
            # for more than are left.
            for msg in consumer.consume(min(CONSUME_BATCH, count - got), 1.0):
                err = msg.error()
                if err is None:
                    got += 1
                else:
                    errors += 1
                    first = first or str(err)
        return Outcome(got, errors, first, time.perf_counter() - start)
    finally:
        consumer.close()


def rilke_produce(
    bootstrap: str, topic: str, count: int, size: int, *, acks: str, linger_ms: float
) -> Outcome:
    """Send ``count`` records with Rilke's Producer (rilke bench produce's settings)."""
    from rilke.bench.produce import _produce

    settings = {
        "record_size": size,
        "count": count,
        "duration": None,
        "keyed": False,
        "acks": acks,
        "compression": "none",
        "batch_size": 512 * 1024,
        "linger_ms": linger_ms,
        "max_in_flight": 5,
        "idempotence": acks == "all",
        "produce_path": "unary",
        "rate": 0,
        "seed": 1,
    }
    result = _produce(bootstrap, topic, settings)
    failed = result["error_count"]
    return Outcome(
        result["sent"] - failed, failed, (result["errors"] or [""])[0], result["elapsed_s"]
    )


def rilke_consume(bootstrap: str, topic: str, partitions: int, count: int) -> Outcome:
    """Read ``count`` records from the start of ``topic`` with Rilke's Consumer (assigned)."""
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    with Consumer(
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        max_poll_records=CONSUME_BATCH,
        client_id="rilke-bench-kafka",
    ) as consumer:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        consumer.seek_to_beginning()
        got = 0
        start = time.perf_counter()
        deadline = time.monotonic() + PHASE_DEADLINE_S
        while got < count and time.monotonic() < deadline:
            got += sum(len(records) for records in consumer.poll(1000).values())
        return Outcome(got, 0, "", time.perf_counter() - start)


# --- the run --------------------------------------------------------------------------------


def _choices(value: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in chosen if v not in allowed]
    if bad or not chosen:
        raise ValueError(
            f"{flag} takes a comma-separated list of {', '.join(allowed)}; got {value!r}"
        )
    return [v for v in allowed if v in chosen]


def _cpu_s(pids: list[int]) -> float | None:
    """The CPU seconds of all ``pids`` together (None if one cannot be read)."""
    seconds = [process_cpu_s(pid) for pid in pids]
    return None if None in seconds else sum(s for s in seconds if s is not None)


def _measure(
    phase: str,
    client: str,
    broker_pids: list[int],
    profiler: Profiler,
    fn: Callable[[], Outcome],
) -> PhaseResult:
    profiler.start(f"{phase}-{client}")
    cpu0, client0 = _cpu_s(broker_pids), time.process_time()
    window = time.perf_counter()
    try:
        outcome = fn()
    finally:
        window = time.perf_counter() - window
        cpu1, client1 = _cpu_s(broker_pids), time.process_time()
        top = profiler.stop()
    broker_cpu = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
    return PhaseResult(
        phase,
        client,
        outcome.records,
        outcome.elapsed_s,
        broker_cpu,
        client1 - client0,
        outcome.errors,
        outcome.first_error,
        top,
        window,
    )


def run(args: argparse.Namespace) -> int:
    try:
        phases = _choices(args.phases, PHASES, "--phases")
        clients = _choices(args.clients, CLIENTS, "--clients")
    except ValueError as e:
        print(f"rilke: bad argument: {e}")
        return 2
    if args.count < 1 or args.record_size < 0 or args.partitions < 1:
        print("rilke: bad argument: --count and --partitions must be >= 1, --record-size >= 0")
        return 2
    nodes = args.spawn_cluster
    if nodes < 0 or args.replication_factor < 0 or (args.replication_factor and not nodes):
        print(
            "rilke: bad argument: --spawn-cluster N needs N >= 1; --replication-factor "
            "(>= 1) goes with --spawn-cluster"
        )
        return 2
    if nodes and args.profile_dir:
        print("rilke: bad argument: --profile-dir records one broker: not with --spawn-cluster")
        return 2
    rf = args.replication_factor or min(3, nodes) or 1
    if rf > max(nodes, 1):
        print(f"rilke: bad argument: --replication-factor {rf} is above the {nodes} node(s)")
        return 2
    if "kafka" in clients:
        try:
            import confluent_kafka  # noqa: F401
        except ImportError:
            print(f"rilke bench kafka: {INSTALL_HINT}")
            return 2
    tune_malloc()
    results: list[PhaseResult] = []
    with contextlib.ExitStack() as running:
        try:
            if nodes:
                brokers = _spawn_cluster(running, nodes)
            else:
                broker = SpawnedBroker(
                    ["--kafka-listen", "127.0.0.1:0", "--scrub-bytes-per-second", "0"]
                )
                running.callback(broker.stop)
                brokers = _Brokers(broker.address, broker.wait_kafka_address(), [broker.proc.pid])
            _run_phases(args, brokers, phases=phases, clients=clients, rf=rf, results=results)
        except RuntimeError as e:
            print(f"rilke bench kafka: {e}")
            return 1
    _report(args, results, nodes, rf)
    failed = [r for r in results if r.errors or r.records < args.count]
    for r in failed:
        print(
            f"  {r.phase} {r.client}: {r.records:,} of {args.count:,} records, {r.errors} "
            f"error(s){': ' + r.first_error if r.first_error else ''}"
        )
    return 1 if failed else 0


def _spawn_cluster(running: contextlib.ExitStack, nodes: int) -> _Brokers:
    """Start ``nodes`` voters with Kafka listeners (stopped when ``running`` closes); their
    gRPC and Kafka bootstrap lists and pids, once every node lists every Kafka listener.
    Raises ClusterError (a RuntimeError) naming what did not happen in time."""
    from rilke.bench.cluster_spawn import ClusterError, SpawnedCluster

    cluster = running.enter_context(
        SpawnedCluster(nodes, extra_args=["--kafka-listen", "127.0.0.1:0"])
    )
    deadline = time.monotonic() + KAFKA_LISTED_TIMEOUT_S
    while True:
        listed = {}
        for node in cluster.live():
            answer = cluster.describe(node)
            if answer is not None:
                listed = {b.node_id: f"{b.kafka_host}:{b.kafka_port}" for b in answer.brokers}
                listed = {n: a for n, a in listed.items() if not a.startswith(":")}
                break
        if len(listed) == nodes:
            break
        if time.monotonic() > deadline:
            raise ClusterError(
                f"{len(listed)} of {nodes} nodes' Kafka listeners registered after "
                f"{KAFKA_LISTED_TIMEOUT_S:.0f} s; see the logs in {cluster.root}"
            )
        time.sleep(0.1)
    kafka = ",".join(address for _, address in sorted(listed.items()))
    return _Brokers(cluster.bootstrap, kafka, [n.pid for n in cluster.nodes.values()])


class _Brokers(NamedTuple):
    """What the phases run against: gRPC and Kafka bootstrap lists, the broker processes."""

    grpc: str
    kafka: str
    pids: list[int]


def _run_phases(
    args: argparse.Namespace,
    brokers: _Brokers,
    *,
    phases: list[str],
    clients: list[str],
    rf: int,
    results: list[PhaseResult],
) -> None:
    """Every phase with every client, appended to ``results``."""
    grpc_address, kafka_address, pids = brokers
    profiler = Profiler(args.profile_dir, pids[0])
    filled: str | None = None
    for phase in phases:
        if phase == "consume" and filled is None:
            filled = ensure_topic(grpc_address, None, args.partitions, replication_factor=rf)
            rilke_produce(
                grpc_address,
                filled,
                args.count,
                args.record_size,
                acks="1",
                linger_ms=args.linger_ms,
            )
        for client in clients:
            address = kafka_address if client == "kafka" else grpc_address
            go: Callable[[], Outcome]
            if phase == "consume":
                consume = kafka_consume if client == "kafka" else rilke_consume
                assert filled is not None
                go = partial(consume, address, filled, args.partitions, args.count)
            else:
                topic = ensure_topic(grpc_address, None, args.partitions, replication_factor=rf)
                filled = filled or topic
                produce = kafka_produce if client == "kafka" else rilke_produce
                acks = "1" if phase == "produce-acks1" else "all"
                go = partial(
                    produce,
                    address,
                    topic,
                    args.count,
                    args.record_size,
                    acks=acks,
                    linger_ms=args.linger_ms,
                )
            results.append(_measure(phase, client, pids, profiler, go))


def _report(args: argparse.Namespace, results: list[PhaseResult], nodes: int, rf: int) -> None:
    by = {(r.phase, r.client): r for r in results}
    rows: list[tuple[str, str]] = []
    for r in results:
        per = r.broker_us_per_record()
        cpu = (
            "-"
            if r.broker_cpu_s is None
            else f"broker {r.broker_cpu_s / r.window_s:.0%} CPU, {per:.2f} us/record"
        )
        rows.append(
            (
                f"{r.phase:<16} {r.client:<5}",
                f"{r.msgs_per_s:>10,.0f} msgs/s {r.msgs_per_s * args.record_size / 1e6:6.1f} MB/s"
                f"  {cpu}, client {r.client_cpu_s / r.window_s:.0%} CPU",
            )
        )
    for phase in PHASES:
        k, g = by.get((phase, "kafka")), by.get((phase, "rilke"))
        if k is not None and g is not None and g.msgs_per_s > 0:
            ratio = f"kafka/rilke msgs/s {k.msgs_per_s / g.msgs_per_s:.2f}x"
            kp, gp = k.broker_us_per_record(), g.broker_us_per_record()
            if kp is not None and gp is not None and gp > 0:
                ratio += f", broker CPU per record {kp / gp:.2f}x"
            rows.append((f"{phase:<16} ratio", ratio))
    print_table(
        f"rilke bench kafka: {args.count:,} records of {args.record_size} B per phase, "
        f"{args.partitions} partition(s), "
        f"{f'{nodes} nodes, replication factor {rf}' if nodes else 'one broker'} "
        "(kafka: confluent-kafka "
        f"{_ck_version()}; rilke: gRPC)",
        rows,
    )
    for r in results:
        if r.profile:
            print(f"\nbroker profile, {r.phase} {r.client} (share of busy samples, self):")
            for name, share in r.profile:
                print(f"  {share:6.1%}  {name}")
    write_json(
        args.json,
        {
            "benchmark": "kafka",
            "settings": {
                "count": args.count,
                "record_size": args.record_size,
                "partitions": args.partitions,
                "linger_ms": args.linger_ms,
                "nodes": nodes or 1,
                "replication_factor": rf,
            },
            "phases": [r.as_json(args.record_size) for r in results],
        },
    )


def _ck_version() -> str:
    try:
        import confluent_kafka

        return f"{confluent_kafka.version()}/librdkafka {confluent_kafka.libversion()[0]}"
    except ImportError:
        return "not installed"
