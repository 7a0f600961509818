"""`rilke bench produce --send-many`."""

from __future__ import annotations


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
