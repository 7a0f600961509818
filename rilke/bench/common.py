"""Shared parts of `rilke bench produce` and `rilke bench consume`.

Record payloads, percentiles, the results table, a broker started for the run
(--spawn-broker), and the allocator settings these virtual machines need for large buffers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "8388608", "MALLOC_TRIM_THRESHOLD_": "67108864"}
"""Keep glibc from returning (and re-faulting) large buffers: see ../shared/peers/README.md."""


def tune_malloc() -> None:
    """Apply :data:`MALLOC_ENV` to this process through mallopt (best effort, Linux/glibc)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 8 * 1024 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 64 * 1024 * 1024)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):
        pass


_WORDS = [
    "page_view",
    "add_to_cart",
    "checkout",
    "search",
    "login",
    "logout",
    "click",
    "scroll",
    "signup",
    "purchase",
    "home",
    "products",
    "cart",
    "account",
    "help",
    "blog",
    "pricing",
    "docs",
    "settings",
    "orders",
]


def payloads(size: int, n: int = 1024, seed: int = 1) -> list[bytes]:
    """``n`` distinct JSON-like values of exactly ``size`` bytes (event records, as logs carry)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = json.dumps(
            {
                "id": rng.randrange(10**9),
                "user": f"u{rng.randrange(10**6):06d}",
                "event": rng.choice(_WORDS),
                "path": "/" + "/".join(rng.choice(_WORDS) for _ in range(2)),
                "ms": rng.randrange(10**4),
                "seq": i,
                "pad": "",
            },
            separators=(",", ":"),
        )
        if len(text) < size:
            text = text[:-2] + "x" * (size - len(text)) + text[-2:]
        out.append(text.encode()[:size])
    return out


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values_ms`` (nearest rank); zeros for an empty list."""
    if not values_ms:
        return {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    s = sorted(values_ms)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, round(q * len(s)) - 1))]

    return {"p50_ms": rank(0.50), "p95_ms": rank(0.95), "p99_ms": rank(0.99), "max_ms": s[-1]}


def print_table(title: str, rows: list[tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    print(title)
    for k, v in rows:
        print(f"  {k:<{width}}  {v}")


def write_json(path: str | None, result: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(result, indent=2) + "\n")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        "-b",
        metavar="HOST:PORT",
        default=os.environ.get("RILKE_BOOTSTRAP_SERVERS", "127.0.0.1:9292"),
        help="a running broker (default $RILKE_BOOTSTRAP_SERVERS or 127.0.0.1:9292)",
    )
    parser.add_argument(
        "--spawn-broker",
        action="store_true",
        help="start a broker for the run in a temporary directory (and stop it after)",
    )
    parser.add_argument(
        "--spawn-cluster",
        type=int,
        default=0,
        metavar="N",
        help="start a cluster of N `rilke server` nodes (--initial-voters, 127.0.0.1, temporary "
        "directories) for the run and stop it after; a new topic gets replication factor "
        "min(3, N)",
    )
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=0,
        metavar="R",
        help="of a new topic (default: min(3, N) with --spawn-cluster N, else 1)",
    )
    parser.add_argument(
        "--broker-metrics",
        action="store_true",
        help="the spawned broker also serves /metrics (--metrics-listen on a free port): to "
        "compare runs with metrics on and off",
    )
    parser.add_argument(
        "--scrape-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="with --spawn-broker --broker-metrics: GET /metrics every S seconds during the run "
        "and report the scrape times (default 0: no scrapes)",
    )
    parser.add_argument("--topic", help="topic to use (default: a new bench-... topic)")
    parser.add_argument(
        "--partitions", type=int, default=1, help="partitions of a new topic (default 1)"
    )
    parser.add_argument(
        "--record-size", type=int, default=100, help="value bytes per record (default 100)"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


class SpawnedBroker:
    """A `rilke server` child process on 127.0.0.1 with an OS-chosen port and a temp data dir."""

    def __init__(self, extra_args: Sequence[str] = (), *, metrics: bool = False) -> None:
        """``metrics``: also serve /metrics on a free port (``metrics_address`` once started)."""
        self.dir = tempfile.mkdtemp(prefix="rilke-bench-")
        self._extra_args = list(extra_args)
        if metrics:
            self._extra_args += ["--metrics-listen", "127.0.0.1:0"]
        self._metrics = metrics
        self.metrics_address: str | None = None
        self.log_path = Path(self.dir) / "broker.log"
        self._log = self.log_path.open("wb")
        self._launch()

    def _launch(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, **MALLOC_ENV}
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.kafka_address: str | None = None  # "rilke kafka listener on" (--kafka-listen)
        self._kafka_listening = threading.Event()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "rilke",
                "server",
                "--listen",
                "127.0.0.1:0",
                "--data-dir",
                str(Path(self.dir) / "data"),
                *self._extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        self.address = self._wait_listening(300.0)

    def restart_timed(self) -> dict[str, float]:
        """Stop the broker cleanly (SIGTERM) and start it again on the same data; the seconds
        each took (start: until it reports listening)."""
        start = time.perf_counter()
        self.proc.terminate()
        self.proc.wait(300)
        stopped = time.perf_counter()
        self._launch()
        return {"stop_s": stopped - start, "start_s": time.perf_counter() - stopped}

    def _wait_listening(self, timeout_s: float) -> str:
        found: list[str] = []
        metrics: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def reader() -> None:
            for line in stdout:
                # The broker's own line (the Kafka and metrics listeners print theirs after).
                m = re.search(rb"rilke broker listening on (\S+:\d+)", line)
                if m:
                    found.append(m.group(1).decode())
                m = re.search(rb"rilke metrics listening on (\S+:\d+)", line)
                if m:
                    metrics.append(m.group(1).decode())
                if found and (metrics or not self._metrics):
                    break
            for line in stdout:  # keep draining so the broker never blocks on a full pipe
                m = re.search(rb"kafka listener on (\S+:\d+)", line)
                if m:
                    self.kafka_address = m.group(1).decode()
                    self._kafka_listening.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout_s

        def started() -> bool:
            return bool(found) and (bool(metrics) or not self._metrics)

        while not started() and time.monotonic() < deadline and self.proc.poll() is None:
            t.join(0.05)
        if not started():
            self.stop()
            raise RuntimeError(f"the spawned broker did not start; see {self.log_path}")
        self.metrics_address = metrics[0] if metrics else None
        return found[0]

    def wait_kafka_address(self, timeout_s: float = 60.0) -> str:
        """The Kafka listener's address (a broker started with --kafka-listen); RuntimeError
        if it does not report one within ``timeout_s``."""
        if not self._kafka_listening.wait(timeout_s) or self.kafka_address is None:
            raise RuntimeError(
                f"the spawned broker reported no Kafka listener; see {self.log_path}"
            )
        return self.kafka_address

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def broker_for(args: argparse.Namespace) -> Iterator[str]:
    """The bootstrap address to benchmark: a spawned broker's or cluster's, or
    --bootstrap-servers."""
    if getattr(args, "spawn_cluster", 0):
        from rilke.bench.cluster_spawn import SpawnedCluster

        with SpawnedCluster(args.spawn_cluster) as cluster:
            yield cluster.bootstrap
        return
    if not args.spawn_broker:
        yield args.bootstrap_servers
        return
    broker = SpawnedBroker(metrics=getattr(args, "broker_metrics", False))
    scraper: MetricsScraper | None = None
    interval = getattr(args, "scrape_interval", 0.0)
    if interval > 0 and broker.metrics_address is not None:
        scraper = MetricsScraper(f"http://{broker.metrics_address}/metrics", interval)
    try:
        yield broker.address
    finally:
        if scraper is not None:
            scraper.stop()
            scraper.report()
        broker.stop()


class MetricsScraper:
    """GET a /metrics URL every ``interval_s`` on a thread (as Prometheus would) and keep
    each scrape's wall time, size and the broker's own collection time
    (``rilke_metrics_scrape_duration_seconds``, which reports the scrape before it)."""

    def __init__(self, url: str, interval_s: float) -> None:
        self.url = url
        self.interval_s = interval_s
        self.wall_ms: list[float] = []
        self.collect_ms: list[float] = []
        self.sizes: list[int] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import urllib.request

        while not self._stop.wait(self.interval_s):
            start = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as reply:
                    body = reply.read()
            except OSError:
                self.failures += 1
                continue
            self.wall_ms.append((time.perf_counter() - start) * 1000)
            self.sizes.append(len(body))
            m = re.search(rb"^rilke_metrics_scrape_duration_seconds (\S+)$", body, re.M)
            if m and self.wall_ms[1:]:  # the first scrape reports no earlier one
                self.collect_ms.append(float(m.group(1)) * 1000)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)

    def report(self) -> None:
        if not self.wall_ms:
            print(f"metrics scrapes: none succeeded ({self.failures} failed)")
            return
        wall = percentiles(self.wall_ms)
        rows = [
            (
                "scrapes",
                f"{len(self.wall_ms)} every {self.interval_s:g} s ({self.failures} failed)",
            ),
            ("wall p50/p99/max", "{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f} ms".format(**wall)),
            ("size", f"{max(self.sizes):,} bytes"),
        ]
        if self.collect_ms:
            collect = percentiles(self.collect_ms)
            rows.append(("collect p50/max", "{p50_ms:.1f} / {max_ms:.1f} ms".format(**collect)))
        print_table(f"metrics scrapes of {self.url}", rows)


def parse_topic_configs(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (from ``--topic-config``) as a dict; ValueError for a bad one."""
    configs: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--topic-config wants KEY=VALUE, got {pair!r}")
        configs[key] = value
    return configs


def spawn_arguments_error(args: argparse.Namespace) -> str | None:
    """What is wrong with --spawn-broker / --spawn-cluster / --replication-factor, or None."""
    nodes = getattr(args, "spawn_cluster", 0) or 0
    factor = getattr(args, "replication_factor", 0) or 0
    if nodes and args.spawn_broker:
        return "--spawn-broker and --spawn-cluster exclude each other"
    if nodes < 0 or factor < 0:
        return "--spawn-cluster and --replication-factor must be >= 1"
    if nodes and factor > nodes:
        return f"--replication-factor {factor} is more than the {nodes} node(s) of --spawn-cluster"
    return None


def replication_factor_of(args: argparse.Namespace) -> int:
    """--replication-factor, else min(3, N) with --spawn-cluster N, else 1."""
    given = int(getattr(args, "replication_factor", 0) or 0)
    if given:
        return given
    return min(3, int(getattr(args, "spawn_cluster", 0) or 0)) or 1


def ensure_topic(
    bootstrap: str,
    topic: str | None,
    partitions: int,
    configs: dict[str, str] | None = None,
    replication_factor: int = 1,
) -> str:
    """Create ``topic`` (default a fresh bench-... name) with ``configs`` if missing; return
    its name. With several bootstrap addresses (a cluster) it returns once every one of them
    lists each partition with a leader (ClusterError after a deadline), so the run does not
    time the elections."""
    from rilke.client.admin import Admin
    from rilke.client.structs import NewTopic
    from rilke.errors import TopicAlreadyExistsError

    name = topic or f"bench-{int(time.time() * 1000) % 10**10}-{os.getpid()}"
    with Admin(bootstrap) as admin:
        try:
            admin.create_topics(
                [NewTopic(name, partitions, replication_factor, configs=configs or None)]
            )
        except TopicAlreadyExistsError:
            pass
    addresses = [a.strip() for a in bootstrap.split(",") if a.strip()]
    if len(addresses) > 1:
        from rilke.bench.cluster_spawn import MetadataProbe

        probe = MetadataProbe()
        try:
            probe.wait_led(addresses, name, partitions)
        finally:
            probe.close()
    return name


class NoProgress:
    """What a progress bar is without tqdm (the ``bench`` extra): the same calls, no output."""

    def __enter__(self) -> NoProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: float = 1) -> None:
        pass

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(**settings: Any) -> Any:
    """A tqdm bar with ``settings``, or a :class:`NoProgress` when tqdm is not installed
    (``pip install 'rilke[bench]'`` brings it)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return NoProgress()
    return tqdm(**settings)


def progress(total: int | None, disable: bool, unit: str = "msg") -> Any:
    return progress_bar(
        total=total, disable=disable, unit=unit, unit_scale=True, file=sys.stderr, smoothing=0.1
    )


SEND_TIME_HEADER = "rilke-bench-sent-ns"
"""A live producer's record header: its send time, ``time.time_ns()`` as 8 big-endian bytes."""


def sent_ns(headers: Sequence[tuple[str, bytes | None]]) -> int | None:
    """The send time a live producer stamped into a record's headers (None: no stamp)."""
    for key, value in headers:
        if key == SEND_TIME_HEADER and value is not None and len(value) == 8:
            return int.from_bytes(value, "big")
    return None


def live_producer(
    *,
    bootstrap: str,
    topic: str,
    rate: int,
    seconds: float,
    size: int,
    partitions: int = 0,
    pause_s: float = 0.001,
    linger_ms: float = 1,
    acks: str = "1",
    stamp: bool = False,
    sent_count: Any = None,
) -> None:
    """Send ``rate`` records/s of ``size`` bytes to ``topic`` for ``seconds``, then flush (the
    target of a child process in the latency phases of the consume benchmarks). With
    ``partitions`` > 0, round robin over partitions 0..partitions-1, so each one gets a steady
    stream and a pause shows as a gap; with 0, the producer's partitioner decides. Between
    rounds it sleeps ``pause_s``. With ``stamp``, each record carries its send time in the
    header ``SEND_TIME_HEADER`` (nanoseconds, where the record timestamp has milliseconds).
    ``sent_count`` (a multiprocessing Value): set to the number of records acknowledged once
    they all are, so that the reader knows how many to wait for (:func:`tail_live`)."""
    from rilke.client.producer import Producer

    tune_malloc()
    values = payloads(size)
    with Producer(
        bootstrap, acks=acks, linger_ms=linger_ms, client_id="rilke-bench-live"
    ) as producer:
        producer.partitions_for(topic)
        start = time.perf_counter()
        sent = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate)
            while sent < due:
                headers = [(SEND_TIME_HEADER, time.time_ns().to_bytes(8, "big"))] if stamp else None
                if partitions > 0:
                    producer.send(
                        topic, values[sent & 1023], partition=sent % partitions, headers=headers
                    )
                else:
                    producer.send(topic, values[sent & 1023], headers=headers)
                sent += 1
            time.sleep(pause_s)
        producer.flush()
        if sent_count is not None:
            sent_count.value = sent


def tail_live(
    consumer: Any,
    proc: Any,
    sent_count: Any,
    on_records: Callable[[Any, int], None],
    deadline_s: float,
) -> tuple[int, int]:
    """Poll ``consumer`` while the live producer ``proc`` (a :func:`live_producer` process
    given ``sent_count``) runs, then until every record it had acknowledged has been read, or
    ``deadline_s`` passed. ``on_records(records, now_ns)`` sees each polled list. Returns
    (records acknowledged, records read); they differ only when the deadline cut the tail
    (acknowledged is -1 when the producer failed).
    The process is joined (killed after 30 s) before returning."""
    read = 0
    end_at = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end_at:
            if not proc.is_alive() and (sent_count.value < 0 or read >= sent_count.value):
                break
            batch = consumer.poll(200)
            now_ns = time.time_ns()
            for records in batch.values():
                on_records(records, now_ns)
                read += len(records)
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    return sent_count.value, read
