"""`rilke bench produce-path`: which produce path of the broker is faster, unary or stream.

Sends one pre-built batch over and over (so the client's record encoding is left out) to a
running broker: unary Produce with several calls in flight, and ProduceStream with a window of
requests in flight. Prints calls/s, msgs/s, MB/s and, when the broker runs on this machine
(``--broker-pid``), its CPU time per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_TOPIC = "bench-produce-path"
_MAX_MESSAGE = 64 << 20


@dataclass
class PathResult:
    path: str
    in_flight: int
    records_per_request: int
    request_bytes: int
    calls_per_s: float
    msgs_per_s: float
    mb_per_s: float
    broker_cpu_ms_per_call: float | None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "produce-path",
        help="compare unary Produce and ProduceStream against a running broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("RILKE_BOOTSTRAP_SERVERS", "127.0.0.1:9292"),
        help="broker HOST:PORT (RILKE_BOOTSTRAP_SERVERS; 127.0.0.1:9292)",
    )
    parser.add_argument("--topic", default=DEFAULT_TOPIC)
    parser.add_argument("--record-bytes", type=int, default=100)
    parser.add_argument(
        "--records-per-request", default="150,1000", help="comma-separated sizes to try"
    )
    parser.add_argument("--in-flight", default="1,4,16", help="comma-separated windows to try")
    parser.add_argument("--acks", type=int, choices=[0, 1, -1], default=1)
    parser.add_argument(
        "--topic-config",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config of the topic when created, e.g. flush.messages=1 (repeatable)",
    )
    parser.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    parser.add_argument("--broker-pid", type=int, help="to report the broker's CPU per call")
    parser.add_argument("--json", help="also write the results here")
    parser.set_defaults(func=run)


def _cpu_s(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _make_records(count: int, size: int) -> bytes:
    from rilke.records import BatchBuilder

    builder = BatchBuilder()
    now = int(time.time() * 1000)
    value = (b'{"id":0,"kind":"bench","payload":"' + b"x" * size)[:size]
    for _ in range(count):
        builder.append(None, value, None, now)
    return bytes(builder.build())


async def _unary(stub: Any, request: Any, in_flight: int, seconds: float) -> int:
    calls = 0
    end = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal calls
        while time.monotonic() < end:
            response = await stub.Produce(request, timeout=30)
            _check(response)
            calls += 1

    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return calls


async def _stream(stub: Any, request: Any, in_flight: int, seconds: float) -> int:
    calls = 0
    end = time.monotonic() + seconds
    window = asyncio.Semaphore(in_flight)
    call = stub.ProduceStream(timeout=seconds + 60)

    async def write() -> None:
        while time.monotonic() < end:
            await window.acquire()
            await call.write(request)
        await call.done_writing()

    async def read() -> None:
        nonlocal calls
        async for response in call:
            _check(response)
            calls += 1
            window.release()

    await asyncio.gather(write(), read())
    return calls


def _check(response: Any) -> None:
    for partition in response.partitions:
        if partition.error.code:
            raise RuntimeError(f"produce failed: {partition.error.message}")


async def _measure(args: argparse.Namespace) -> list[PathResult]:
    import grpc

    from rilke.proto import rilke_pb2 as pb
    from rilke.proto import rilke_pb2_grpc as pb_grpc

    options = [("grpc.max_send_message_length", _MAX_MESSAGE)]
    results: list[PathResult] = []
    async with grpc.aio.insecure_channel(args.bootstrap_servers, options=options) as channel:
        admin: Any = pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]
        stub: Any = pb_grpc.BrokerStub(channel)  # type: ignore[no-untyped-call]
        created = await admin.CreateTopics(
            pb.CreateTopicsRequest(
                topics=[
                    pb.NewTopic(
                        name=args.topic,
                        num_partitions=1,
                        configs={
                            "max.message.bytes": str(_MAX_MESSAGE),
                            **dict(item.split("=", 1) for item in args.topic_config),
                        },
                    )
                ]
            ),
            timeout=30,
        )
        code = created.results[0].error.code
        if code not in (0, 31):  # 31: it already exists
            raise RuntimeError(created.results[0].error.message)
        for count in (int(x) for x in args.records_per_request.split(",")):
            records = _make_records(count, args.record_bytes)
            request = pb.ProduceRequest(
                acks=args.acks,
                timeout_ms=30_000,
                partitions=[pb.ProducePartitionData(topic=args.topic, records=records)],
            )
            for path, fn in (("unary", _unary), ("stream", _stream)):
                for in_flight in (int(x) for x in args.in_flight.split(",")):
                    cpu0 = _cpu_s(args.broker_pid)
                    start = time.monotonic()
                    calls = await fn(stub, request, in_flight, args.seconds)
                    elapsed = time.monotonic() - start
                    cpu1 = _cpu_s(args.broker_pid)
                    cpu_ms = None
                    if cpu0 is not None and cpu1 is not None and calls:
                        cpu_ms = (cpu1 - cpu0) / calls * 1000
                    results.append(
                        PathResult(
                            path,
                            in_flight,
                            count,
                            len(records),
                            calls / elapsed,
                            calls * count / elapsed,
                            calls * len(records) / elapsed / 1e6,
                            cpu_ms,
                        )
                    )
    return results


def run(args: argparse.Namespace) -> int:
    try:
        results = asyncio.run(_measure(args))
    except Exception as e:
        print(f"rilke bench produce-path: {e}", file=sys.stderr)
        return 1
    print(
        f"{'path':7} {'in flight':>9} {'records':>8} {'bytes':>8} {'calls/s':>9} "
        f"{'msgs/s':>10} {'MB/s':>7} {'broker ms/call':>15}"
    )
    for r in results:
        cpu = "-" if r.broker_cpu_ms_per_call is None else f"{r.broker_cpu_ms_per_call:.3f}"
        print(
            f"{r.path:7} {r.in_flight:9d} {r.records_per_request:8d} {r.request_bytes:8d} "
            f"{r.calls_per_s:9.0f} {r.msgs_per_s:10.0f} {r.mb_per_s:7.1f} {cpu:>15}"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 0
