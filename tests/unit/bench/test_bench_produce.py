"""`rilke bench produce --send-many`."""

from __future__ import annotations

import pytest


def test_bench_produce_send_many_sends_every_record_in_chunks() -> None:
    from rilke.bench.produce import _send_chunks

    class Fut:
        def add_callback(self, fn: object) -> None:
            pass

        def add_errback(self, fn: object) -> None:
            pass

    calls: list[list[bytes]] = []

    class FakeProducer:
        def send_many(self, topic: str, chunk: list[bytes]) -> list[Fut]:
            calls.append(chunk)
            return [Fut() for _ in chunk]

    values = [b"%d" % i for i in range(10)]
    _send_chunks(FakeProducer(), "t", values, 7, 9, 4, [], [])
    assert [len(c) for c in calls] == [4, 4, 1]
    assert [v for c in calls for v in c] == [values[i % 10] for i in range(7, 16)]


def test_paced_send_many_sends_whole_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """At a fixed rate, send_many is called with ``--send-many`` records each time, not with
    the few records due at each wake-up (whose per-call cost set the half-rate latency)."""
    import rilke.client.producer as producer_module
    from rilke.bench.produce import _produce

    calls: list[int] = []

    class Fut:
        def add_callback(self, fn: object) -> None:
            pass

        def add_errback(self, fn: object) -> None:
            pass

    class FakeProducer:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __enter__(self) -> FakeProducer:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def partitions_for(self, topic: str) -> list[int]:
            return [0]

        def send(self, topic: str, value: bytes, key: bytes | None = None) -> Fut:
            raise AssertionError("send() with --send-many")

        def send_many(self, topic: str, chunk: list[bytes]) -> list[Fut]:
            calls.append(len(chunk))
            return [Fut() for _ in chunk]

        def flush(self) -> None:
            pass

    monkeypatch.setattr(producer_module, "Producer", FakeProducer)
    settings = {
        "record_size": 10, "seed": 1, "keyed": False, "count": 2500, "duration": 0, "rate": 50_000,
        "send_many": 500, "acks": 1, "compression": "none", "batch_size": 16384, "linger_ms": 0,
        "max_in_flight": 5, "idempotence": False, "produce_path": "unary",
    }  # fmt: skip
    run = _produce("127.0.0.1:1", "t", settings)
    assert run["sent"] == 2500
    assert calls == [500] * 5
