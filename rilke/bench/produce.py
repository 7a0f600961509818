"""`rilke bench produce`: producer throughput and send-to-acknowledgement latency.

One or more producer processes each send ``--count`` records (or for ``--duration``) of
``--record-size`` bytes; every 64th record's send time is kept and its acknowledgement
callback measures its latency, so measuring costs little per record. With ``--rate`` (a fixed
low rate: latency, not throughput) every record is measured, and the bare gRPC unary round
trip is measured before and after the phase (:mod:`rilke.bench.latency`) and reported beside
it as a ratio.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time
from typing import Any

from rilke.bench import latency
from rilke.bench.common import (
    add_common_arguments,
    broker_for,
    ensure_topic,
    parse_topic_configs,
    payloads,
    percentiles,
    print_table,
    progress,
    replication_factor_of,
    spawn_arguments_error,
    tune_malloc,
    write_json,
)
from rilke.bench.peers import (
    CLUSTER_PRODUCE_FIGURES,
    PRODUCE_FIGURES,
    add_peer_arguments,
    print_peer_table,
)

SAMPLE_EVERY = 64
HALF_RATE_SAMPLE_ABOVE = 10_000
"""Records/s above which the half-rate run samples one record in SAMPLE_EVERY, not every one."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "produce",
        help="producer throughput and latency",
        description="Produce records as fast as the producer can and report msgs/s, MB/s and "
        "send-to-ack latency percentiles.",
    )
    add_common_arguments(p)
    p.add_argument(
        "--count",
        "-n",
        type=int,
        default=1_000_000,
        help="records per producer (default 1,000,000)",
    )
    p.add_argument(
        "--duration", type=float, help="produce for this many seconds instead of --count"
    )
    p.add_argument(
        "--keyed", action="store_true", help="give each record a key (hashed to partitions)"
    )
    p.add_argument("--acks", default="1", choices=["0", "1", "all", "-1"])
    p.add_argument(
        "--no-floor",
        action="store_true",
        help="with --rate: do not measure the bare gRPC round trip beside the latency",
    )
    p.add_argument("--compression", default="none", choices=["none", "gzip", "lz4"])
    p.add_argument("--producers", type=int, default=1, help="producer processes (default 1)")
    p.add_argument(
        "--rate",
        type=int,
        default=0,
        metavar="MSGS_PER_S",
        help="send at this rate per producer (default 0: as fast as possible); latency "
        "at a rate below the maximum shows the producer's own delay, not queueing: every "
        "record's latency is measured, beside the bare gRPC unary round trip of the same run",
    )
    p.add_argument(
        "--batch-size", type=int, default=512 * 1024, help="producer batch_size (default 512 KiB)"
    )
    p.add_argument("--linger-ms", type=float, default=5)
    p.add_argument("--max-in-flight", type=int, default=5)
    p.add_argument("--no-idempotence", action="store_true", help="enable_idempotence=False")
    p.add_argument(
        "--topic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config of the topic when created, e.g. flush.messages=1 (repeatable)",
    )
    p.add_argument(
        "--produce-path",
        choices=["unary", "stream"],
        default="unary",
        help="concurrent unary Produce calls or one ProduceStream per broker (default unary)",
    )
    p.add_argument(
        "--send-many",
        type=int,
        default=0,
        metavar="N",
        help="send with Producer.send_many, N records a call (default 0: send() per record); "
        "keyless records only",
    )
    p.add_argument(
        "--half-rate",
        action="store_true",
        help="then send at half the rate just reached and report its latency (--peers does "
        "too; with --producers 1)",
    )
    add_peer_arguments(p)
    p.set_defaults(func=run)


def _produce(
    bootstrap: str, topic: str, args: dict[str, Any], counter: Any = None, bar: Any = None
) -> dict[str, Any]:
    """One producer's run; returns counts, elapsed seconds and sampled latencies (ms)."""
    from rilke.client.producer import Producer

    tune_malloc()
    values = payloads(args["record_size"], seed=args["seed"])
    nvalues = len(values)
    keys = [b"key-%d" % i for i in range(1000)] if args["keyed"] else None
    latencies: list[float] = []
    errors: list[BaseException] = []
    count = args["count"]
    duration = args["duration"]
    rate = args["rate"]
    # At a fixed low rate every record is measured (there are few); at full speed one in 64.
    sample_every = args.get("sample_every") or (1 if rate else SAMPLE_EVERY)
    many = args.get("send_many", 0)
    with Producer(
        bootstrap,
        acks=args["acks"],
        compression=args["compression"],
        batch_size=args["batch_size"],
        linger_ms=args["linger_ms"],
        max_in_flight=args["max_in_flight"],
        enable_idempotence=args["idempotence"],
        produce_path=args["produce_path"],
        client_id="rilke-bench",
    ) as producer:
        producer.partitions_for(topic)
        send = producer.send
        perf = time.perf_counter
        wall_start = time.time()
        start = perf()
        end_at = start + duration if duration else None
        sent = 0
        step = max(4096, many)
        # Paced send_many sends whole calls of ``many`` records: sending what is due each
        # wake-up made calls of a few records, whose per-call cost, not the broker, set the
        # half-rate latency (353 ms at half of 1.1M/s, above the full-speed run's 220 ms).
        need = many or 1
        while True:
            if end_at is None:
                if sent >= count:
                    break
                n = min(step, count - sent)
            else:
                if perf() >= end_at:
                    break
                n = step
            if rate:
                # Paced: send what is due by now (at most a step), else sleep until the next
                # record is due (not in short polls: a waking caller thread takes the GIL
                # from the client's loop thread, and showed as latency).
                due = int((perf() - start) * rate) - sent
                if due < need:
                    time.sleep(max(0.0, start + (sent + need) / rate - perf()))
                    continue
                n = min(n, due - due % need)
            if many:
                _send_chunks(producer, topic, values, sent, n, many, latencies, errors)
            for i in range(sent, sent + n) if not many else ():
                if i % sample_every:
                    send(topic, values[i % nvalues], keys[i % 1000] if keys else None)
                else:
                    t0 = perf()
                    fut = send(topic, values[i % nvalues], keys[i % 1000] if keys else None)
                    fut.add_callback(_latency_callback(latencies, t0))
                    fut.add_errback(errors.append)
            sent += n
            if counter is not None:
                with counter.get_lock():
                    counter.value += n
            if bar is not None:
                bar.update(n)
        producer.flush()
        elapsed = perf() - start
        wall_end = time.time()
    return {
        "sent": sent,
        "elapsed_s": elapsed,
        "wall": (wall_start, wall_end),
        "latencies_ms": latencies,
        "errors": [repr(e) for e in errors[:5]],
        "error_count": len(errors),
    }


def _send_chunks(  # noqa: PLR0917
    producer: Any,
    topic: str,
    values: list[bytes],
    sent: int,
    n: int,
    many: int,
    latencies: list[float],
    errors: list[BaseException],
) -> None:
    """Send records sent..sent+n with send_many, ``many`` a call; the latency of each call's
    first record is sampled."""
    nvalues = len(values)
    perf = time.perf_counter
    for start in range(sent, sent + n, many):
        count = min(many, sent + n - start)
        first = start % nvalues
        chunk = values[first : first + count]
        while len(chunk) < count:
            chunk += values[: count - len(chunk)]
        t0 = perf()
        futs = producer.send_many(topic, chunk)
        futs[0].add_callback(_latency_callback(latencies, t0))
        for fut in futs[::SAMPLE_EVERY]:  # every batch holds more records than that
            fut.add_errback(errors.append)


def _latency_callback(latencies: list[float], t0: float) -> Any:
    def record(_metadata: Any) -> None:
        latencies.append((time.perf_counter() - t0) * 1000)

    return record


def _child(bootstrap: str, topic: str, args: dict[str, Any], counter: Any, out: Any) -> None:
    try:
        out.put(_produce(bootstrap, topic, args, counter))
    except BaseException as exc:
        out.put({"fatal": repr(exc)})


def run(args: argparse.Namespace) -> int:
    if args.send_many and args.keyed:
        print("rilke: bad argument: --send-many sends keyless records; drop --keyed")
        return 2
    spawn_error = spawn_arguments_error(args)
    if spawn_error:
        print(f"rilke: bad argument: {spawn_error}")
        return 2
    if args.send_many < 0:
        print("rilke: bad argument: --send-many must be >= 0")
        return 2
    if args.rate < 0:
        print("rilke: bad argument: --rate must be >= 0 (0: as fast as possible)")
        return 2
    if args.producers < 1 or args.record_size < 0 or args.count < 1:
        print("rilke: bad argument: --producers and --count must be >= 1, --record-size >= 0")
        return 2
    tune_malloc()
    settings = {
        "record_size": args.record_size,
        "count": args.count,
        "duration": args.duration,
        "keyed": args.keyed,
        "acks": args.acks,
        "compression": args.compression,
        "batch_size": args.batch_size,
        "linger_ms": args.linger_ms,
        "max_in_flight": args.max_in_flight,
        "idempotence": not args.no_idempotence,
        "produce_path": args.produce_path,
        "rate": args.rate,
        "send_many": args.send_many,
        "seed": 1,
    }
    measure_floor = bool(args.rate) and not args.no_floor
    floors = latency.Floors(args.rate)
    with broker_for(args) as bootstrap:
        topic = ensure_topic(
            bootstrap,
            args.topic,
            args.partitions,
            parse_topic_configs(args.topic_config),
            replication_factor_of(args),
        )
        if measure_floor:  # beside the (idle) broker, before and after the phase
            floors.measure()
        total = None if args.duration else args.count * args.producers
        wall = time.perf_counter()
        if args.producers == 1:
            with progress(total, args.no_progress) as bar:
                results = [_produce(bootstrap, topic, settings, bar=bar)]
        else:
            ctx = mp.get_context("spawn")
            counter = ctx.Value("q", 0)
            out = ctx.Queue()
            procs = []
            for i in range(args.producers):
                s = dict(settings, seed=i + 1)
                proc = ctx.Process(
                    target=_child, args=(bootstrap, topic, s, counter, out), daemon=True
                )
                proc.start()
                procs.append(proc)
            results = []
            with progress(total, args.no_progress) as bar:
                seen = 0
                while len(results) < len(procs):
                    try:
                        results.append(out.get(timeout=0.2))
                    except Exception:
                        pass
                    value = counter.value
                    bar.update(value - seen)
                    seen = value
            for proc in procs:
                proc.join(10)
            fatal = [r["fatal"] for r in results if "fatal" in r]
            if fatal:
                print(f"rilke: a producer failed: {fatal[0]}")
                return 1
        wall = time.perf_counter() - wall
        wants_half = args.peers or args.half_rate
        half_rate = _half_rate_run(bootstrap, topic, settings, results) if wants_half else None
        if measure_floor:
            floors.measure()
    sent = sum(r["sent"] for r in results)
    # Producers start at different times: the aggregate rate is over the span that covers
    # them all, from the first one's start to the last one's end.
    elapsed = max(r["wall"][1] for r in results) - min(r["wall"][0] for r in results)
    lat = [x for r in results for x in r["latencies_ms"]]
    errors = sum(r["error_count"] for r in results)
    msgs = sent / elapsed if elapsed else 0.0
    pct = percentiles(lat)
    result = {
        "benchmark": "produce",
        "topic": topic,
        "records": sent,
        "errors": errors,
        "elapsed_s": round(elapsed, 3),
        "msgs_per_s": round(msgs),
        "mb_per_s": round(msgs * args.record_size / 1e6, 2),
        **{k: round(v, 3) for k, v in pct.items()},
        "latency_samples": len(lat),
        **(floors.json(pct) if measure_floor else {}),
        "settings": {k: v for k, v in settings.items() if k != "seed"}
        | {
            "producers": args.producers,
            "partitions": args.partitions,
            "replication_factor": replication_factor_of(args),
            "spawn_cluster": args.spawn_cluster,
            "topic_configs": args.topic_config,
        },
    }
    rows = [
        ("records", f"{sent:,}" + (f" ({errors} failed)" if errors else "")),
        ("elapsed", f"{elapsed:.2f} s"),
        ("throughput", f"{msgs:,.0f} msgs/s  {msgs * args.record_size / 1e6:.1f} MB/s"),
        (
            "latency p50/p95/p99/max",
            "{p50_ms:.2f} / {p95_ms:.2f} / {p99_ms:.2f} / {max_ms:.2f} ms ({n:,} records)".format(
                n=len(lat), **pct
            ),
        ),
    ]
    if measure_floor:
        rows += floors.rows("latency", pct)
    print_table(
        f"rilke bench produce: {args.producers} producer(s), {args.record_size} B records, "
        f"acks={args.acks}, compression={args.compression}, {args.partitions} partition(s)"
        + (f" of replication factor {rf}" if (rf := replication_factor_of(args)) > 1 else "")
        + (f" on {args.spawn_cluster} spawned nodes" if args.spawn_cluster else "")
        + (f", {args.rate:,}/s, linger {args.linger_ms} ms" if args.rate else "")
        + (f", send_many x{args.send_many}" if args.send_many else ""),
        rows,
    )
    if errors:
        print(f"  first errors: {results[0]['errors']}")
    if half_rate is not None and not args.peers:
        hp = percentiles(half_rate["latencies_ms"])
        result["half_rate"] = {"rate": half_rate["rate"], **hp}
        print_table(f"at half rate ({half_rate['rate']:,}/s)", [_half_rate_row(hp)])
    if args.peers:
        extra = []
        if half_rate is not None:
            hp = percentiles(half_rate["latencies_ms"])
            extra.append(
                (
                    f"latency at half rate ({half_rate['rate']:,}/s) p50/p99",
                    f"{hp['p50_ms']:.1f} / {hp['p99_ms']:.1f} ms",
                )
            )
            result["half_rate"] = {"rate": half_rate["rate"], **hp}
        else:
            extra.append(("latency at half rate", "measured with --producers 1 only"))
        replicated = replication_factor_of(args) > 1
        runs = print_peer_table(
            "side by side (same window, 100 B peers)",
            (
                f"Rilke produce acks={args.acks}"
                + (f", replication factor {replication_factor_of(args)}" if replicated else ""),
                f"{msgs:,.0f} msgs/s",
            ),
            msgs,
            CLUSTER_PRODUCE_FIGURES if replicated else PRODUCE_FIGURES,
            peers_dir=args.peers_dir,
            extra_rows=extra,
        )
        result["peers"] = {r.peer.name: r.figures or r.skipped or r.failed for r in runs}
    write_json(args.json, result)
    return 1 if errors else 0


def _half_rate_row(hp: dict[str, float]) -> tuple[str, str]:
    return (
        "latency p50/p95/p99/max",
        "{p50_ms:.2f} / {p95_ms:.2f} / {p99_ms:.2f} / {max_ms:.2f} ms".format(**hp),
    )


def _half_rate_run(
    bootstrap: str, topic: str, settings: dict[str, Any], results: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """Send-to-ack latency of one producer paced at half the rate one producer just reached
    (for ``--duration`` or 10 s): the latency when the producer is not the bound."""
    if len(results) != 1 or not results[0]["elapsed_s"]:
        return None
    rate = max(1, int(results[0]["sent"] / results[0]["elapsed_s"] / 2))
    # Sampled as the full-speed run was when fast: paced at 30,000/s on one broker (load
    # average 17, 2026-12-03), measuring every record kept the pace in one run of two (20,057
    # and 29,984 sent/s), one in 64 in both (29,989 and 29,976/s).
    run = _produce(
        bootstrap,
        topic,
        dict(
            settings,
            rate=rate,
            duration=settings["duration"] or 10,
            sample_every=SAMPLE_EVERY if rate > HALF_RATE_SAMPLE_ABOVE else 1,
        ),
    )
    run["rate"] = rate
    return run
