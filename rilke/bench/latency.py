"""The floor a low-load latency is judged against: a bare gRPC unary round trip.

``rilke bench produce --rate N`` and ``rilke bench consume`` (its live phase) report their
latencies beside the round trip of the smallest possible gRPC call, measured in the same run
on the same machine: a ``grpc.aio`` server in a child process that answers an opaque bytes
request with the same bytes (no protobuf, no handler work), and a synchronous stub in this
process with one call in flight (the method of ../shared/peers/bench_grpc.py). A ratio near 1
says the client and broker add little over the network stack; the goal of issue 15 is produce
p50 within 1.3x (p99 3x) and end to end within 2.5x of this p50.

The child is ``python -m rilke.bench.latency --serve`` on 127.0.0.1 with an OS-chosen port,
which it prints as ``listening on HOST:PORT``; :class:`FloorServer` starts and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rilke.bench.common import percentiles

FLOOR_METHOD = "/rilke.bench.Floor/Echo"
"""The one method of the floor server: bytes in, the same bytes out."""

PAYLOAD = b"t" * 16
"""The request of each round trip (as the peers' bench: a 16-byte payload)."""

WARMUP_CALLS = 200
"""Round trips made and not counted before measuring (channel set-up, first-call paths)."""

START_TIMEOUT_S = 60.0
"""How long :class:`FloorServer` waits for its child to report its port."""


class FloorServer:
    """The echo server in a child process; a context manager (stopped, and killed if it does
    not stop, on exit). ``address`` is its ``host:port``. Raises RuntimeError if the child
    does not report its port within ``START_TIMEOUT_S``."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rilke.bench.latency", "--serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.address = self._wait_listening(START_TIMEOUT_S)

    def _wait_listening(self, timeout_s: float) -> str:
        found: list[str] = []
        stdout = self.proc.stdout
        assert stdout is not None

        def reader() -> None:
            for line in stdout:
                m = re.search(rb"listening on (\S+:\d+)", line)
                if m:
                    found.append(m.group(1).decode())
                    break
            for _ in stdout:  # drain, so the child never blocks on a full pipe
                pass

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not found and time.monotonic() < deadline and self.proc.poll() is None:
            thread.join(0.05)
        if not found:
            self.stop()
            raise RuntimeError("the gRPC floor server did not start")
        return found[0]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> FloorServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def unary_round_trips(
    address: str, count: int, max_seconds: float, rate: float = 0.0
) -> list[float]:
    """``count`` round trips (at most ``max_seconds`` of them, after ``WARMUP_CALLS``) to the
    floor server at ``address``, one in flight, with a synchronous stub; each in ms.

    ``rate`` > 0 paces the calls (one every ``1/rate`` s on a fixed schedule, sleeping between
    them, as a benchmark's ``--rate`` does): on an idle machine a call that follows a sleep of
    a few ms costs more than one that follows another call (the CPUs and both processes'
    threads must wake), so a latency measured at a low rate is judged fairly only against a
    round trip at the same rate. 0: back to back (the method of ../shared/peers)."""
    import grpc

    latencies: list[float] = []
    with grpc.insecure_channel(address) as channel:
        echo = channel.unary_unary(FLOOR_METHOD)
        for _ in range(WARMUP_CALLS):
            echo(PAYLOAD, timeout=10)
        perf = time.perf_counter
        period = 1.0 / rate if rate > 0 else 0.0
        stop_at = perf() + max_seconds
        due = perf()
        for _ in range(count):
            if period:
                due += period
                pause = due - perf()
                if pause > 0:
                    time.sleep(pause)
            t0 = perf()
            echo(PAYLOAD, timeout=10)
            t1 = perf()
            latencies.append((t1 - t0) * 1000)
            if t1 > stop_at:
                break
    return latencies


PACED_FLOOR_SECONDS = 3.0
"""How long each paced floor run lasts (``measure_floors``)."""


def measure_floor(count: int = 2000, max_seconds: float = 3.0) -> list[float]:
    """Start a floor server, measure ``unary_round_trips`` against it, stop it."""
    with FloorServer() as server:
        return unary_round_trips(server.address, count, max_seconds)


def measure_floors(rate: float) -> tuple[list[float], list[float]]:
    """The back-to-back floor and the floor paced at ``rate`` (> 0; at most
    ``PACED_FLOOR_SECONDS``), against one floor server."""
    if rate <= 0:
        raise ValueError(f"a paced floor needs a rate > 0, got {rate}")
    with FloorServer() as server:
        back_to_back = unary_round_trips(server.address, 2000, 3.0)
        paced = unary_round_trips(
            server.address, max(50, int(rate * PACED_FLOOR_SECONDS)), PACED_FLOOR_SECONDS, rate
        )
    return back_to_back, paced


def paced_rows(
    what: str, rate: float, measured: dict[str, float], paced: dict[str, float]
) -> list[tuple[str, str]]:
    """Table rows: the floor paced at ``rate`` and ``what``'s p50/p99 as multiples of it."""
    rows = [
        (
            f"floor at {rate:,.0f}/s: gRPC unary p50/p99",
            f"{paced['p50_ms']:.3f} / {paced['p99_ms']:.3f} ms (one call every "
            f"{1000 / rate:.1f} ms, same run)",
        )
    ]
    if paced["p50_ms"] > 0 and paced["p99_ms"] > 0:
        rows.append((f"{what} / floor at {rate:,.0f}/s", _ratios(measured, paced)))
    return rows


def paced_json(paced: dict[str, float], measured: dict[str, float]) -> dict[str, Any]:
    """The paced floor's percentiles and the ratios to it, for a benchmark's JSON result."""
    out: dict[str, Any] = {f"paced_floor_{k}": round(v, 4) for k, v in paced.items()}
    if paced["p50_ms"] > 0:
        out["ratio_p50_to_paced_floor"] = round(measured["p50_ms"] / paced["p50_ms"], 3)
    if paced["p99_ms"] > 0:
        out["ratio_p99_to_paced_floor"] = round(measured["p99_ms"] / paced["p99_ms"], 3)
    return out


def ratio_rows(
    what: str, measured: dict[str, float], floor: dict[str, float]
) -> list[tuple[str, str]]:
    """Table rows: the floor's p50/p99 and ``what``'s p50 and p99 as multiples of them."""
    rows = [
        (
            "floor: gRPC unary p50/p99",
            f"{floor['p50_ms']:.3f} / {floor['p99_ms']:.3f} ms (bare round trip, same run)",
        )
    ]
    if floor["p50_ms"] > 0 and floor["p99_ms"] > 0:
        rows.append(
            (
                f"{what} / floor",
                f"{_ratios(measured, floor)}  "
                f"(p99 / floor p50 {measured['p99_ms'] / floor['p50_ms']:.2f}x)",
            )
        )
    return rows


def _ratios(measured: dict[str, float], floor: dict[str, float]) -> str:
    """``measured``'s p50 and p99 as multiples of ``floor``'s (both > 0)."""
    return (
        f"p50 {measured['p50_ms'] / floor['p50_ms']:.2f}x  "
        f"p99 {measured['p99_ms'] / floor['p99_ms']:.2f}x"
    )


def floor_json(floor: dict[str, float], measured: dict[str, float]) -> dict[str, Any]:
    """The floor's percentiles and the ratios, for a benchmark's JSON result."""
    out: dict[str, Any] = {f"floor_{k}": round(v, 4) for k, v in floor.items()}
    if floor["p50_ms"] > 0:
        out["ratio_p50"] = round(measured["p50_ms"] / floor["p50_ms"], 3)
        out["ratio_p99_to_floor_p50"] = round(measured["p99_ms"] / floor["p50_ms"], 3)
    if floor["p99_ms"] > 0:
        out["ratio_p99"] = round(measured["p99_ms"] / floor["p99_ms"], 3)
    return out


def floor_percentiles(*runs: Sequence[float]) -> dict[str, float]:
    """Percentiles over the round trips of several floor runs (before and after a phase)."""
    return percentiles([x for run in runs for x in run])


class Floors:
    """The floors of one benchmark run, measured before and after its phase: back to back
    and paced at the benchmark's rate; pooled for the ratios."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.back_to_back: list[float] = []
        self.paced: list[float] = []

    def measure(self) -> None:
        back_to_back, paced = measure_floors(self.rate)
        self.back_to_back += back_to_back
        self.paced += paced

    def rows(self, what: str, measured: dict[str, float]) -> list[tuple[str, str]]:
        return ratio_rows(what, measured, percentiles(self.back_to_back)) + paced_rows(
            what, self.rate, measured, percentiles(self.paced)
        )

    def json(self, measured: dict[str, float]) -> dict[str, Any]:
        return (
            floor_json(percentiles(self.back_to_back), measured)
            | paced_json(percentiles(self.paced), measured)
            | {"paced_floor_rate": self.rate}
        )


async def _serve() -> None:
    import grpc

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    server = grpc.aio.server()
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "rilke.bench.Floor", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rilke.bench.latency")
    parser.add_argument("--serve", action="store_true", help="run the floor server")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    if args.serve:
        asyncio.run(_serve())
        return 0
    pct = percentiles(measure_floor(args.count))
    print(
        "gRPC unary round trip p50/p95/p99/max: {p50_ms:.3f} / {p95_ms:.3f} / "
        "{p99_ms:.3f} / {max_ms:.3f} ms".format(**pct)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
