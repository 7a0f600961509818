"""The latency benchmarks' floor: the bare gRPC round trip and the ratios printed beside it."""

from __future__ import annotations

import time

import pytest

from rilke.bench import latency
from rilke.bench.common import SEND_TIME_HEADER, sent_ns


def test_ratios_divide_by_the_floor() -> None:
    measured = {"p50_ms": 1.5, "p95_ms": 2.0, "p99_ms": 6.0, "max_ms": 9.0}
    floor = {"p50_ms": 1.0, "p95_ms": 1.5, "p99_ms": 2.0, "max_ms": 3.0}
    out = latency.floor_json(floor, measured)
    assert out["floor_p50_ms"] == 1.0
    assert out["ratio_p50"] == 1.5
    assert out["ratio_p99"] == 3.0
    assert out["ratio_p99_to_floor_p50"] == 6.0
    rows = dict(latency.ratio_rows("latency", measured, floor))
    assert rows["latency / floor"].startswith("p50 1.50x  p99 3.00x")


def test_an_empty_floor_gives_no_ratio() -> None:
    zero = {"p50_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    assert "ratio_p50" not in latency.floor_json(zero, zero)
    assert [k for k, _ in latency.ratio_rows("latency", zero, zero)] == [
        "floor: gRPC unary p50/p99"
    ]


def test_floor_percentiles_pool_the_runs() -> None:
    pooled = latency.floor_percentiles([1.0, 2.0], [3.0, 4.0])
    assert pooled["p50_ms"] == 2.0 and pooled["max_ms"] == 4.0


def test_send_time_stamp_is_read_back() -> None:
    now = time.time_ns()
    headers = [("other", b"x"), (SEND_TIME_HEADER, now.to_bytes(8, "big"))]
    assert sent_ns(headers) == now
    assert sent_ns([("other", b"x")]) is None
    assert sent_ns([(SEND_TIME_HEADER, b"short")]) is None
    assert sent_ns([(SEND_TIME_HEADER, None)]) is None


@pytest.mark.slow
def test_floor_server_answers_and_stops() -> None:
    with latency.FloorServer() as server:
        trips = latency.unary_round_trips(server.address, 50, 30.0)
        proc = server.proc
    assert len(trips) == 50 and all(t > 0 for t in trips)
    assert proc.poll() is not None  # stopped on exit


def test_paced_rows_and_json_divide_by_the_paced_floor() -> None:
    measured = {"p50_ms": 2.0, "p95_ms": 3.0, "p99_ms": 4.0, "max_ms": 9.0}
    paced = {"p50_ms": 1.0, "p95_ms": 1.5, "p99_ms": 2.0, "max_ms": 3.0}
    rows = dict(latency.paced_rows("latency", 200, measured, paced))
    assert rows["floor at 200/s: gRPC unary p50/p99"].startswith("1.000 / 2.000 ms")
    assert "5.0 ms" in rows["floor at 200/s: gRPC unary p50/p99"]
    assert rows["latency / floor at 200/s"] == "p50 2.00x  p99 2.00x"
    out = latency.paced_json(paced, measured)
    assert out["ratio_p50_to_paced_floor"] == 2.0 and out["paced_floor_p99_ms"] == 2.0
    zero = dict.fromkeys(paced, 0.0)
    assert "ratio_p50_to_paced_floor" not in latency.paced_json(zero, measured)


def test_floors_pool_both_kinds_of_run(monkeypatch: pytest.MonkeyPatch) -> None:
    runs = iter([([1.0, 1.0], [3.0, 3.0]), ([1.0, 1.0], [5.0, 5.0])])
    monkeypatch.setattr(latency, "measure_floors", lambda rate: next(runs))
    floors = latency.Floors(200)
    floors.measure()
    floors.measure()
    measured = {"p50_ms": 4.0, "p95_ms": 4.0, "p99_ms": 4.0, "max_ms": 4.0}
    out = floors.json(measured)
    assert out["floor_p50_ms"] == 1.0 and out["ratio_p50"] == 4.0
    assert out["paced_floor_max_ms"] == 5.0 and out["paced_floor_rate"] == 200
    assert [k for k, _ in floors.rows("latency", measured)] == [
        "floor: gRPC unary p50/p99",
        "latency / floor",
        "floor at 200/s: gRPC unary p50/p99",
        "latency / floor at 200/s",
    ]


@pytest.mark.slow
def test_a_paced_floor_keeps_its_rate() -> None:
    with latency.FloorServer() as server:
        start = time.perf_counter()
        trips = latency.unary_round_trips(server.address, 20, 30.0, rate=100)
        took = time.perf_counter() - start
    assert len(trips) == 20
    # 20 calls one every 10 ms after the warm-up: at least 0.19 s whatever the machine.
    assert took >= 0.19


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["produce", "--spawn-broker", "--rate", "-1"], "--rate must be >= 0"),
        (["consume", "--spawn-broker", "--live-rate", "0"], "--live-rate must be >= 1"),
    ],
)
def test_a_rate_that_cannot_pace_is_refused_before_a_broker_starts(
    argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from rilke.cli.main import main

    assert main(["bench", *argv]) == 2
    assert says in capsys.readouterr().out


def test_a_paced_floor_needs_a_rate() -> None:
    with pytest.raises(ValueError, match="rate > 0"):
        latency.measure_floors(0)
