"""`rilke bench consume`: consumer throughput from a filled partition, and end-to-end latency.

Phase 1 fills the topic with ``--count`` records (skipped with ``--no-fill`` for a topic that
is already full). Phase 2 reads them all from the earliest offset: msgs/s and MB/s. Phase 3
(``--live-seconds``, 0 to skip) has a producer process (``--live-linger-ms``, default 0;
``--live-acks``, default 1) send ``--live-rate`` records/s while the consumer tails the topic:
end-to-end latency is the time from each record's send (stamped in a header in nanoseconds)
to its return from poll(), reported beside the bare gRPC unary round trip measured before and
after the phase (:mod:`rilke.bench.latency`) as a ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import operator
import time
from typing import Any

from rilke.bench import latency
from rilke.bench.common import (
    add_common_arguments,
    broker_for,
    ensure_topic,
    live_producer,
    parse_topic_configs,
    payloads,
    percentiles,
    print_table,
    progress,
    replication_factor_of,
    sent_ns,
    spawn_arguments_error,
    tail_live,
    tune_malloc,
    write_json,
)
from rilke.bench.peers import CONSUME_FIGURES, add_peer_arguments, print_peer_table

_value = operator.itemgetter(6)  # ConsumerRecord.value


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "consume",
        help="consumer throughput and end-to-end latency",
        description="Fill a topic, read it back as fast as the consumer can (msgs/s, MB/s), "
        "then measure end-to-end latency while a producer sends at a steady rate.",
    )
    add_common_arguments(p)
    p.add_argument(
        "--count",
        "-n",
        type=int,
        default=1_000_000,
        help="records to fill and read (default 1,000,000)",
    )
    p.add_argument(
        "--no-fill", action="store_true", help="read --count records of an existing --topic"
    )
    p.add_argument("--max-poll-records", type=int, default=10_000)
    p.add_argument("--live-seconds", type=float, default=5.0, help="latency phase length (0: skip)")
    p.add_argument(
        "--live-rate", type=int, default=20_000, help="records/s sent in the latency phase"
    )
    p.add_argument(
        "--live-linger-ms",
        type=float,
        default=0,
        help="linger_ms of the latency phase's producer (default 0: send at once)",
    )
    p.add_argument(
        "--live-acks",
        default="1",
        choices=["0", "1", "all", "-1"],
        help="acks of the latency phase's producer (default 1)",
    )
    p.add_argument(
        "--topic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config of the topic when created, e.g. flush.messages=1 (repeatable)",
    )
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="do not measure the bare gRPC round trip beside the end-to-end latency",
    )
    p.add_argument(
        "--group",
        metavar="G",
        help="consume as a consumer group (see rilke.bench.group_consume): throughput of 1 vs "
        "--consumers members, end-to-end latency, rebalance times",
    )
    p.add_argument("--consumers", type=int, default=3, help="members of the group (default 3)")
    p.add_argument(
        "--session-timeout-ms",
        type=int,
        default=10_000,
        help="consumers' session timeout in the group benchmark (default 10000)",
    )
    add_peer_arguments(p)
    p.set_defaults(func=run)


def _fill(bootstrap: str, topic: str, count: int, size: int, bar: Any) -> None:
    from rilke.client.producer import Producer

    values = payloads(size)
    with Producer(bootstrap, acks=1, client_id="rilke-bench-fill") as producer:
        producer.partitions_for(topic)
        for start in range(0, count, 8192):
            n = min(8192, count - start)
            for i in range(start, start + n):
                producer.send(topic, values[i & 1023])
            bar.update(n)
        producer.flush()


def run(args: argparse.Namespace) -> int:
    if args.group:
        from rilke.bench.group_consume import run_group

        return run_group(args)
    from rilke.client.consumer import Consumer
    from rilke.client.structs import TopicPartition

    if args.count < 1 or args.record_size < 0:
        print("rilke: bad argument: --count must be >= 1 and --record-size >= 0")
        return 2
    if args.live_seconds > 0 and args.live_rate < 1:
        print("rilke: bad argument: --live-rate must be >= 1 (or --live-seconds 0: no live phase)")
        return 2
    spawn_error = spawn_arguments_error(args)
    if spawn_error:
        print(f"rilke: bad argument: {spawn_error}")
        return 2
    if args.no_fill and not args.topic:
        print("rilke: bad argument: --no-fill needs --topic")
        return 2
    tune_malloc()
    with broker_for(args) as bootstrap:
        topic = ensure_topic(
            bootstrap,
            args.topic,
            args.partitions,
            parse_topic_configs(args.topic_config),
            replication_factor_of(args),
        )
        if not args.no_fill:
            with progress(args.count, args.no_progress) as bar:
                bar.set_description("fill")
                _fill(bootstrap, topic, args.count, args.record_size, bar)
        with Consumer(
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            max_poll_records=args.max_poll_records,
            client_id="rilke-bench",
        ) as consumer:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
            consumer.assign(tps)
            consumer.seek_to_beginning()
            got = 0
            nbytes = 0
            with progress(args.count, args.no_progress) as bar:
                bar.set_description("consume")
                start = time.perf_counter()
                deadline = start + 600
                while got < args.count and time.perf_counter() < deadline:
                    batch = consumer.poll(1000)
                    n = 0
                    for records in batch.values():
                        n += len(records)
                        # In C, not a Python loop per record: the bench must not be the bound.
                        nbytes += sum(map(len, filter(None, map(_value, records))))
                    got += n
                    bar.update(n)
                elapsed = time.perf_counter() - start
            latencies: list[float] = []
            live_sent = live_read = 0
            measure_floor = args.live_seconds > 0 and not args.no_floor
            floors = latency.Floors(args.live_rate)
            if measure_floor:
                floors.measure()
            if args.live_seconds > 0:
                consumer.seek_to_end()
                for tp in tps:
                    consumer.position(tp)
                ctx = mp.get_context("spawn")
                sent_count = ctx.Value("q", -1)
                proc = ctx.Process(
                    target=live_producer,
                    kwargs={
                        "bootstrap": bootstrap,
                        "topic": topic,
                        "rate": args.live_rate,
                        "seconds": args.live_seconds,
                        "size": args.record_size,
                        "linger_ms": args.live_linger_ms,
                        "acks": args.live_acks,
                        "stamp": True,
                        "sent_count": sent_count,
                    },
                    daemon=True,
                )
                proc.start()

                def stamped(records: Any, now_ns: int) -> None:
                    for r in records:
                        sent = sent_ns(r.headers)
                        if sent is not None:
                            latencies.append((now_ns - sent) / 1e6)

                live_sent, live_read = tail_live(
                    consumer, proc, sent_count, stamped, args.live_seconds + 30
                )
            if measure_floor:
                floors.measure()
    msgs = got / elapsed if elapsed else 0.0
    pct = percentiles(latencies)
    result = {
        "benchmark": "consume",
        "topic": topic,
        "records": got,
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": round(msgs),
        "mb_per_s": round(nbytes / elapsed / 1e6, 2) if elapsed else 0.0,
        "live_records": len(latencies),
        "live_acknowledged": live_sent,
        "live_read": live_read,
        "live_rate": args.live_rate,
        **{f"e2e_{k}": round(v, 3) for k, v in pct.items()},
        **(floors.json(pct) if measure_floor else {}),
        "settings": {
            "record_size": args.record_size,
            "partitions": len(tps),
            "max_poll_records": args.max_poll_records,
            "live_linger_ms": args.live_linger_ms,
            "live_acks": args.live_acks,
            "topic_configs": args.topic_config,
        },
    }
    rows = [
        ("records", f"{got:,}"),
        ("elapsed", f"{elapsed:.2f} s"),
        (
            "throughput",
            f"{msgs:,.0f} msgs/s  {nbytes / elapsed / 1e6 if elapsed else 0:.1f} MB/s",
        ),
        (
            f"end-to-end at {args.live_rate:,}/s p50/p95/p99/max",
            "{p50_ms:.2f} / {p95_ms:.2f} / {p99_ms:.2f} / {max_ms:.2f} ms ({n:,} records)".format(
                n=len(latencies), **pct
            ),
        ),
    ]
    if args.live_seconds > 0:
        rows.append(("live records acknowledged / read", f"{live_sent:,} / {live_read:,}"))
    if measure_floor:
        rows += floors.rows("end-to-end", pct)
    print_table(
        f"rilke bench consume: {args.record_size} B records, {len(tps)} partition(s)"
        + (
            f"; live producer linger {args.live_linger_ms} ms, acks={args.live_acks}"
            if args.live_seconds > 0
            else ""
        ),
        rows,
    )
    if args.peers:
        runs = print_peer_table(
            "side by side (same window, 100 B peers)",
            ("Rilke consume a filled partition", f"{msgs:,.0f} msgs/s"),
            msgs,
            CONSUME_FIGURES,
            peers_dir=args.peers_dir,
        )
        result["peers"] = {r.peer.name: r.figures or r.skipped or r.failed for r in runs}
    write_json(args.json, result)
    if live_read < live_sent:
        print(f"rilke: the live phase read {live_read:,} of {live_sent:,} acknowledged records")
    return 0 if got >= args.count and live_read >= live_sent else 1
