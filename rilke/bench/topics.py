"""`rilke bench topics`: creating many topics, and what it does to other requests meanwhile.

Creates ``--count`` topics (``--partitions`` each) with CreateTopics requests of ``--batch``
topics, ``--concurrency`` requests in flight, while a probe sends Metadata for one existing
topic over and over, one call at a time ``--probe-interval-ms`` apart, and records each
call's latency. A broker that does
the file work of creation on its event loop answers the probe only between creations; one that
does it on worker threads answers within about a scheduling quantum.

Reports the time to create them all (topics/s), the probe's latency while creation runs
(p50/p99/max) and, for comparison, while the broker is idle. With ``--fill N`` the first N
topics then get ``--segments`` segments per partition (of ``--segment-bytes``, set on every
topic) and are read back whole. With ``--spawn-broker`` a broker is started in a temporary
directory (``--max-open-files`` passed on), its open descriptors are counted after each
phase, and after the run it is restarted once to time its start with all those topics
(``--no-restart`` skips it).

Example (10,000 partitions, 1,000 of them with 5 segments):
``rilke bench topics --spawn-broker --count 10000 --batch 100 --fill 1000 --segments 5``
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from typing import Any

from rilke.bench.common import (
    SpawnedBroker,
    add_common_arguments,
    percentiles,
    print_table,
    write_json,
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "topics",
        help="time to create many topics, and Metadata latency while they are created",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_arguments(parser)
    parser.add_argument("--count", type=int, default=2000, help="topics to create (2000)")
    parser.add_argument("--batch", type=int, default=1, help="topics per CreateTopics (1)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (4)")
    parser.add_argument("--idle-seconds", type=float, default=2.0, help="idle probe time (2)")
    parser.add_argument(
        "--probe-interval-ms",
        type=float,
        default=5.0,
        help="pause between two Metadata probes (5): a probe that never pauses takes CPU "
        "from the creations on a small machine once the broker answers it at once",
    )
    parser.add_argument(
        "--no-restart", action="store_true", help="do not time a restart of a spawned broker"
    )
    parser.add_argument("--fill", type=int, default=0, help="topics to fill with segments (0)")
    parser.add_argument("--segments", type=int, default=5, help="segments per filled partition")
    parser.add_argument(
        "--segment-bytes", type=int, default=64 * 1024, help="segment.bytes of the topics (64 KiB)"
    )
    parser.add_argument(
        "--max-open-files", type=int, default=None, help="the spawned broker's descriptor budget"
    )
    parser.set_defaults(func=run)


def _stubs(address: str) -> tuple[Any, Any, Any]:
    import grpc

    from rilke.proto import rilke_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(address)
    broker: Any = pb_grpc.BrokerStub(channel)  # type: ignore[no-untyped-call]
    admin: Any = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
    return channel, broker, admin


def _probe(
    address: str, topic: str, stop: threading.Event, out: list[float], interval_s: float
) -> None:
    from rilke.proto import rilke_pb2 as pb

    channel, broker, _ = _stubs(address)
    try:
        request = pb.MetadataRequest(topics=[topic])
        while not stop.is_set():
            start = time.perf_counter()
            broker.Metadata(request, timeout=60)
            out.append((time.perf_counter() - start) * 1000)
            stop.wait(interval_s)  # pacing of the load, not a synchronisation
    finally:
        channel.close()


def _create(address: str, names: list[str], args: argparse.Namespace, errors: list[str]) -> None:
    from rilke.proto import rilke_pb2 as pb

    channel, _, admin = _stubs(address)
    try:
        for i in range(0, len(names), args.batch):
            configs = {"segment.bytes": str(args.segment_bytes)}
            request = pb.CreateTopicsRequest(
                topics=[
                    pb.NewTopic(
                        name=name,
                        num_partitions=args.partitions,
                        replication_factor=1,
                        configs=configs,
                    )
                    for name in names[i : i + args.batch]
                ],
                timeout_ms=60_000,
            )
            for result in admin.CreateTopics(request, timeout=120).results:
                if result.error.code:
                    errors.append(f"{result.name}: {result.error.message}")
    finally:
        channel.close()


def _probe_for(address: str, topic: str, seconds: float, interval_s: float) -> list[float]:
    stop = threading.Event()
    latencies: list[float] = []
    thread = threading.Thread(
        target=_probe, args=(address, topic, stop, latencies, interval_s), daemon=True
    )
    thread.start()
    time.sleep(seconds)  # a benchmark phase's length, not a synchronisation
    stop.set()
    thread.join(60)
    return latencies


def _fill(address: str, names: list[str], args: argparse.Namespace) -> dict[str, float]:
    """Give every partition of ``names`` ``--segments`` segments, then read them all back."""
    from rilke.proto import rilke_pb2 as pb

    value = b"x" * 4000
    batch = _batch(value)
    per_segment = max(1, args.segment_bytes // len(batch))
    channel, broker, _ = _stubs(address)
    start = time.perf_counter()
    try:
        for name in names:
            for _ in range(per_segment * args.segments):
                request = pb.ProduceRequest(
                    acks=1,
                    timeout_ms=30_000,
                    partitions=[
                        pb.ProducePartitionData(topic=name, partition=p, records=batch)
                        for p in range(args.partitions)
                    ],
                )
                for result in broker.Produce(request, timeout=60).partitions:
                    if result.error.code:
                        raise RuntimeError(f"produce to {name}: {result.error.message}")
        filled = time.perf_counter()
        read = 0
        for name in names:
            for p in range(args.partitions):
                offset = 0
                while True:
                    fetched = broker.Fetch(
                        pb.FetchRequest(
                            partitions=[
                                pb.FetchPartition(
                                    topic=name,
                                    partition=p,
                                    fetch_offset=offset,
                                    partition_max_bytes=1 << 20,
                                )
                            ]
                        ),
                        timeout=60,
                    ).partitions[0]
                    if fetched.error.code:
                        raise RuntimeError(f"fetch {name}-{p}: {fetched.error.message}")
                    if not fetched.records:
                        break
                    read += len(fetched.records)
                    offset = _next_offset(fetched.records)
                    if offset >= fetched.high_watermark:
                        break
    finally:
        channel.close()
    return {
        "fill_s": filled - start,
        "read_s": time.perf_counter() - filled,
        "read_mb": read / 1e6,
    }


def _batch(value: bytes) -> bytes:
    from rilke.records.builder import BatchBuilder

    builder = BatchBuilder()
    builder.append(None, value, None, int(time.time() * 1000))
    return bytes(builder.build())


def _next_offset(records: bytes) -> int:
    from rilke.records.header import iter_headers

    last = 0
    for _, header in iter_headers(records):
        last = header.last_offset + 1
    return last


def _open_fds(pid: int | None) -> int:
    if pid is None:
        return -1
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def _run_against(address: str, args: argparse.Namespace, pid: int | None = None) -> dict[str, Any]:
    prefix = f"bench-topics-{int(time.time() * 1000) % 10**10}"
    probe_topic = f"{prefix}-probe"
    errors: list[str] = []
    _create(
        address,
        [probe_topic],
        argparse.Namespace(batch=1, partitions=1, segment_bytes=args.segment_bytes),
        errors,
    )
    interval_s = args.probe_interval_ms / 1000
    idle = percentiles(_probe_for(address, probe_topic, args.idle_seconds, interval_s))
    names = [f"{prefix}-{i:06d}" for i in range(args.count)]
    shares = [names[i :: args.concurrency] for i in range(args.concurrency)]
    stop = threading.Event()
    latencies: list[float] = []
    probe = threading.Thread(
        target=_probe, args=(address, probe_topic, stop, latencies, interval_s), daemon=True
    )
    creators = [
        threading.Thread(target=_create, args=(address, share, args, errors), daemon=True)
        for share in shares
    ]
    probe.start()
    start = time.perf_counter()
    for creator in creators:
        creator.start()
    for creator in creators:
        creator.join()
    seconds = time.perf_counter() - start
    stop.set()
    probe.join(60)
    fds = {"after_create": _open_fds(pid)}
    fill: dict[str, float] = {}
    if args.fill:
        fill = _fill(address, names[: args.fill], args)
        fds["after_fill_and_read"] = _open_fds(pid)
    return {
        "fill": fill,
        "open_fds": fds,
        "count": args.count,
        "partitions": args.partitions,
        "batch": args.batch,
        "concurrency": args.concurrency,
        "create_seconds": seconds,
        "topics_per_s": args.count / seconds if seconds else 0.0,
        "errors": errors[:10],
        "error_count": len(errors),
        "metadata_idle": idle,
        "metadata_during_create": {**percentiles(latencies), "calls": len(latencies)},
    }


def run(args: argparse.Namespace) -> int:
    if args.count < 1 or args.batch < 1 or args.concurrency < 1 or args.partitions < 1:
        print("rilke bench topics: --count, --batch, --concurrency, --partitions must be >= 1")
        return 2
    restart: dict[str, float] = {}
    if args.spawn_broker:
        extra = (
            [] if args.max_open_files is None else ["--max-open-files", str(args.max_open_files)]
        )
        broker = SpawnedBroker(extra)
        try:
            result = _run_against(broker.address, args, broker.proc.pid)
            if not args.no_restart:
                restart = broker.restart_timed()
                restart["open_fds"] = _open_fds(broker.proc.pid)
        finally:
            broker.stop()
    else:
        result = _run_against(args.bootstrap_servers, args)
    during, idle = result["metadata_during_create"], result["metadata_idle"]
    rows = [
        (
            "created",
            f"{args.count} topics x {args.partitions} partition(s) in "
            f"{result['create_seconds']:.1f} s ({result['topics_per_s']:.0f} topics/s; "
            f"{args.batch} per request, {args.concurrency} in flight)",
        ),
        (
            "Metadata while creating",
            "p50 {p50_ms:.1f} / p99 {p99_ms:.1f} / max {max_ms:.1f} ms".format(**during)
            + f" ({during['calls']} calls)",
        ),
        (
            "Metadata idle",
            "p50 {p50_ms:.1f} / p99 {p99_ms:.1f} / max {max_ms:.1f} ms".format(**idle),
        ),
    ]
    if result["fill"]:
        rows.append(
            (
                "filled and read",
                f"{args.fill} topics x {args.segments} segments: "
                "{fill_s:.1f} s, read back {read_mb:.0f} MB in {read_s:.1f} s".format(
                    **result["fill"]
                ),
            )
        )
    if result["open_fds"].get("after_create", -1) >= 0:
        rows.append(
            (
                "broker's open descriptors",
                ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result["open_fds"].items())
                + (f", after restart {restart['open_fds']:.0f}" if restart else ""),
            )
        )
    if restart:
        rows.append(("restart (stop, start)", "{stop_s:.1f} s, {start_s:.1f} s".format(**restart)))
    if result["error_count"]:
        rows.append(("errors", f"{result['error_count']}: {result['errors'][0]}"))
    print_table("rilke bench topics", rows)
    write_json(args.json, {"benchmark": "topics", **result, "restart": restart})
    return 1 if result["error_count"] else 0
