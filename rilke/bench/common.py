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
from collections.abc import Iterator, Sequence
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

    def __init__(self, extra_args: Sequence[str] = ()) -> None:
        self.dir = tempfile.mkdtemp(prefix="rilke-bench-")
        self._extra_args = list(extra_args)
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
        assert self.proc.stdout is not None
        stdout = self.proc.stdout

        def reader() -> None:
            for line in stdout:
                m = re.search(rb"listening on (\S+:\d+)", line)
                if m:
                    found.append(m.group(1).decode())
                    break
            for line in stdout:  # keep draining so the broker never blocks on a full pipe
                m = re.search(rb"kafka listener on (\S+:\d+)", line)
                if m:
                    self.kafka_address = m.group(1).decode()
                    self._kafka_listening.set()

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        deadline = time.monotonic() + timeout_s
        while not found and time.monotonic() < deadline and self.proc.poll() is None:
            t.join(0.05)
        if not found:
            self.stop()
            raise RuntimeError(f"the spawned broker did not start; see {self.log_path}")
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
    """The bootstrap address to benchmark: a spawned broker's, or --bootstrap-servers."""
    if not args.spawn_broker:
        yield args.bootstrap_servers
        return
    broker = SpawnedBroker()
    try:
        yield broker.address
    finally:
        broker.stop()


def parse_topic_configs(pairs: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` strings (from ``--topic-config``) as a dict; ValueError for a bad one."""
    configs: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--topic-config wants KEY=VALUE, got {pair!r}")
        configs[key] = value
    return configs


def ensure_topic(
    bootstrap: str, topic: str | None, partitions: int, configs: dict[str, str] | None = None
) -> str:
    """Create ``topic`` (default a fresh bench-... name) with ``configs`` if missing; return
    its name."""
    from rilke.client.admin import Admin
    from rilke.client.structs import NewTopic
    from rilke.errors import TopicAlreadyExistsError

    name = topic or f"bench-{int(time.time() * 1000) % 10**10}-{os.getpid()}"
    with Admin(bootstrap) as admin:
        try:
            admin.create_topics([NewTopic(name, partitions, configs=configs or None)])
        except TopicAlreadyExistsError:
            pass
    return name


def progress(total: int | None, disable: bool, unit: str = "msg") -> Any:
    from tqdm import tqdm

    return tqdm(
        total=total, disable=disable, unit=unit, unit_scale=True, file=sys.stderr, smoothing=0.1
    )


def live_producer(
    *,
    bootstrap: str,
    topic: str,
    rate: int,
    seconds: float,
    size: int,
    partitions: int = 0,
    pause_s: float = 0.001,
) -> None:
    """Send ``rate`` records/s of ``size`` bytes to ``topic`` for ``seconds``, then flush (the
    target of a child process in the latency phases of the consume benchmarks). With
    ``partitions`` > 0, round robin over partitions 0..partitions-1, so each one gets a steady
    stream and a pause shows as a gap; with 0, the producer's partitioner decides. Between
    rounds it sleeps ``pause_s``."""
    from rilke.client.producer import Producer

    tune_malloc()
    values = payloads(size)
    with Producer(bootstrap, acks=1, linger_ms=1, client_id="rilke-bench-live") as producer:
        producer.partitions_for(topic)
        start = time.perf_counter()
        sent = 0
        while True:
            elapsed = time.perf_counter() - start
            if elapsed >= seconds:
                break
            due = int(elapsed * rate)
            while sent < due:
                if partitions > 0:
                    producer.send(topic, values[sent & 1023], partition=sent % partitions)
                else:
                    producer.send(topic, values[sent & 1023])
                sent += 1
            time.sleep(pause_s)
        producer.flush()
