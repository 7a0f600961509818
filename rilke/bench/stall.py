"""`rilke bench stall`: how long the broker keeps a small request waiting while it does
background disk work.

A probe sends ListOffsets (latest) for an idle partition over and over, one at a time, and
records each call's latency, in three phases:

- ``idle``: nothing else runs (the baseline);
- ``compaction``: a compacted topic (1 MiB segments) was filled with ``--records`` records of
  ``--keys`` keys; maintenance (every ``--maintenance-ms``) compacts it meanwhile;
- ``retention``: a topic of 32 MiB segments was filled with ``--retention-mb``; its
  retention.bytes is then set to 1, so maintenance deletes every rolled segment meanwhile
  (unlinking a large file that is in the page cache takes long: ~1 s per GiB measured here);
- ``fsync``: a producer sends acks=all to a topic with ``flush.messages=1``, so the broker
  fsyncs continuously.

A broker that fsyncs or compacts on its event loop answers the probe only after that work;
one that runs it on worker threads answers within about a scheduling quantum. With
``--spawn-broker`` the broker gets ``RILKE_MAINTENANCE_INTERVAL_MS=--maintenance-ms``; for a
running broker, set that yourself.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from rilke.bench.common import (
    add_common_arguments,
    broker_for,
    percentiles,
    print_table,
    write_json,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "stall",
        help="latency of a small request while the broker compacts or fsyncs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument("--records", type=int, default=200_000, help="compacted topic fill")
    parser.add_argument("--keys", type=int, default=1000, help="distinct keys in it")
    parser.add_argument(
        "--retention-mb", type=int, default=256, help="fill of the retention phase's topic"
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="probe time per phase")
    parser.add_argument(
        "--maintenance-ms", type=int, default=300, help="maintenance interval of a spawned broker"
    )
    parser.set_defaults(func=run)


def _probe(admin: Any, topic: str, seconds: float) -> list[float]:
    from rilke.client.structs import TopicPartition

    tp = TopicPartition(topic, 0)
    for _ in range(3):  # warm the connection and metadata
        admin.list_offsets({tp: "latest"})
    latencies = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        admin.list_offsets({tp: "latest"})
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def run(args: argparse.Namespace) -> int:
    from rilke.client.admin import Admin
    from rilke.client.producer import Producer
    from rilke.client.structs import NewTopic

    if args.spawn_broker:
        os.environ["RILKE_MAINTENANCE_INTERVAL_MS"] = str(args.maintenance_ms)
    prefix = f"stall-{int(time.time() * 1000) % 10**10}"
    value = b"v" * args.record_size
    phases: dict[str, dict[str, float]] = {}
    with broker_for(args) as bootstrap, Admin(bootstrap) as admin:
        idle, compacted, durable = f"{prefix}-idle", f"{prefix}-compact", f"{prefix}-durable"
        admin.create_topics(
            [
                NewTopic(idle, 1),
                NewTopic(
                    compacted,
                    1,
                    configs={
                        "cleanup.policy": "compact",
                        "segment.bytes": str(1 << 20),
                        "delete.retention.ms": "2000",
                    },
                ),
                NewTopic(durable, 1, configs={"flush.messages": "1"}),
                NewTopic(f"{prefix}-retention", 1, configs={"segment.bytes": str(32 << 20)}),
            ]
        )
        phases["idle"] = percentiles(_probe(admin, idle, min(args.seconds, 3.0)))
        with Producer(bootstrap, linger_ms=5) as producer:
            for i in range(args.records):
                producer.send(compacted, value, key=b"key-%d" % (i % args.keys))
            producer.flush()
        phases["compaction"] = percentiles(_probe(admin, idle, args.seconds))
        retained = f"{prefix}-retention"
        chunk = b"r" * 10_000
        with Producer(bootstrap, linger_ms=5) as producer:
            for _ in range(args.retention_mb * 100):
                producer.send(retained, chunk)
            producer.flush()
        admin.alter_configs({retained: {"retention.bytes": "1"}})
        phases["retention"] = percentiles(_probe(admin, idle, args.seconds))
        stop = threading.Event()

        def produce_durably() -> None:
            with Producer(bootstrap, acks="all", linger_ms=1) as producer:
                while not stop.is_set():
                    futures = [producer.send(durable, value) for _ in range(200)]
                    for future in futures:
                        future.get(30)

        writer = threading.Thread(target=produce_durably, daemon=True)
        writer.start()
        try:
            phases["fsync"] = percentiles(_probe(admin, idle, args.seconds))
        finally:
            stop.set()
            writer.join(60)
    print_table(
        "rilke bench stall: ListOffsets latency on an idle partition (p50 / p99 / max)",
        [
            (name, "{p50_ms:.1f} / {p99_ms:.1f} / {max_ms:.1f} ms".format(**figures))
            for name, figures in phases.items()
        ],
    )
    write_json(args.json, {"benchmark": "stall", "phases": phases})
    return 0
