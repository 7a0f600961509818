"""The producer against the in-process fake broker."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from rilke.client.producer import AIOProducer, Producer
from rilke.errors import (
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderError,
    ProducerClosedError,
    UnknownTopicOrPartitionError,
)
from rilke.records import header as hdr


def stored_values(fake, topic, partition):
    from rilke.client import codec

    out = []
    for b in fake.broker.topics[topic][partition]:
        h = hdr.read_header(b)
        out.extend(r[3] for r in codec.read_records(b, h, True))
    return out


def fail_first(times, method, answer):
    """A fake-broker fault: answer the first ``times`` calls of ``method`` with ``answer`` (a
    wire error code or a gRPC status), then let every call through."""
    left = [times]

    def fault(called, request):
        if called == method and left[0] > 0:
            left[0] -= 1
            return answer
        return 0

    return fault


def test_send_returns_metadata_with_offsets(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address, linger_ms=1) as p:
        futs = [p.send("t", f"v{i}".encode()) for i in range(10)]
        mds = [f.get(5) for f in futs]
    assert [m.offset for m in mds] == list(range(10))
    assert {m.topic for m in mds} == {"t"} and {m.partition for m in mds} == {0}
    assert stored_values(fake, "t", 0) == [f"v{i}".encode() for i in range(10)]


def test_keyless_records_stick_to_a_partition_until_its_batch_fills(fake):
    """Keyless records fill one partition's batch, then move to another partition (KIP-480),
    through send() and send_many alike."""
    fake.broker.create("t", 4)
    with Producer(fake.address, linger_ms=60_000, batch_size=1000) as p:
        futs = [p.send("t", bytes(100)) for _ in range(8)]  # 8 x (100 + 32) + 61 >= 1000
        assert len({f._batch.tp.partition for f in futs}) == 1 and futs[-1]._batch.full
        after = p.send("t", b"next")
        assert after._batch.tp.partition != futs[0]._batch.tp.partition
        many = p.send_many("t", [bytes(100)] * 20)
        moved = p.send("t", b"moved")
        assert moved._batch.tp.partition == p._aio._sticky._current["t"]
        assert moved._batch is not many[-1]._batch or not many[-1]._batch.full
        p.flush(10)
    assert sum(len(stored_values(fake, "t", i)) for i in range(4)) == 30


def test_keys_land_on_kafka_partitions(fake):
    from kafka.partitioner.default import murmur2 as kmurmur2

    fake.broker.create("t", 7)
    with Producer(fake.address) as p:
        futs = {k: p.send("t", b"x", key=k) for k in (b"a", b"key-1", b"hello world", b"")}
        p.flush(5)
    for k, f in futs.items():
        assert f.get(1).partition == (kmurmur2(k) & 0x7FFFFFFF) % 7


def test_str_values_are_utf8_and_headers_travel(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address) as p:
        p.send("t", "héllo", key="k", headers=[("h", "v")]).get(5)
    from rilke.client import codec

    b = fake.broker.topics["t"][0][0]
    (rec,) = list(codec.read_records(b, hdr.read_header(b), True))
    assert tuple(rec[2:5]) == (b"k", "héllo".encode(), (("h", b"v"),))


def test_unknown_topic_raises_clear_error(fake):
    with (
        Producer(fake.address) as p,
        pytest.raises(UnknownTopicOrPartitionError, match="create it"),
    ):
        p.send("nope", b"x")


def test_bad_partition_and_oversized_record(fake):
    fake.broker.create("t", 2)
    with Producer(fake.address, max_request_size=1000) as p:
        with pytest.raises(UnknownTopicOrPartitionError):
            p.send("t", b"x", partition=5)
        with pytest.raises(MessageSizeTooLargeError):
            p.send("t", b"x" * 2000)
        with pytest.raises(TypeError):
            p.send("t", 12345)
        with pytest.raises(ValueError, match="timestamp_ms"):
            p.send("t", b"x", timestamp_ms=-5)


def test_bad_settings_raise_value_error():
    with pytest.raises(ValueError):
        Producer("127.0.0.1:1", acks=2)
    with pytest.raises(ValueError):
        Producer("127.0.0.1:1", compression="zip")
    with pytest.raises(ValueError):
        Producer("", linger_ms=1)


def test_retriable_errors_are_retried_in_order(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(fail_first(3, "Produce", NotLeaderError.code))
    with Producer(
        fake.address, linger_ms=0, batch_size=64, retry_backoff_ms=1, retry_backoff_max_ms=5
    ) as p:
        futs = [p.send("t", f"{i}".encode()) for i in range(50)]
        offsets = [f.get(10).offset for f in futs]
    assert offsets == sorted(offsets)
    assert stored_values(fake, "t", 0) == [f"{i}".encode() for i in range(50)]
    # NOT_LEADER made the client look the leader up again.
    assert fake.broker.calls.count("Metadata") >= 2


def test_transport_failure_is_retried(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(fail_first(2, "Produce", grpc.StatusCode.UNAVAILABLE))
    with Producer(fake.address, retry_backoff_ms=1, retry_backoff_max_ms=5) as p:
        assert p.send("t", b"x").get(10).offset == 0


def test_non_retriable_error_fails_the_future(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(lambda m, r: 33 if m == "Produce" else 0)
    with Producer(fake.address) as p:
        f = p.send("t", b"x")
        with pytest.raises(Exception) as info:
            f.get(5)
        assert info.value.__class__.__name__ == "InvalidRequestError"
        errors = []
        f.add_errback(errors.append)
        assert errors and errors[0] is info.value


def test_delivery_timeout_expires_records(fake):
    fake.broker.create("t", 1)

    async def hang(method, request):
        if method == "Produce":
            await asyncio.sleep(0.3)
            return NotLeaderError.code
        return 0

    fake.broker.faults.append(hang)
    with Producer(
        fake.address, delivery_timeout_ms=200, request_timeout_ms=150, retry_backoff_ms=10
    ) as p:
        f = p.send("t", b"x")
        with pytest.raises((KafkaTimeoutError, NotLeaderError)):
            f.get(5)


def test_request_deadline_maps_to_retriable_timeout(fake):
    fake.broker.create("t", 1)
    seen = []

    async def slow_once(method, request):
        if method == "Produce" and not seen:
            seen.append(1)
            await asyncio.sleep(0.5)
        return 0

    fake.broker.faults.append(slow_once)
    with Producer(fake.address, request_timeout_ms=100, retry_backoff_ms=1) as p:
        md = p.send("t", b"x").get(10)
    # The first attempt timed out client-side and was retried; idempotence turns the late
    # duplicate into a DuplicateSequence success or the retry lands first.
    assert md.partition == 0
    assert len(stored_values(fake, "t", 0)) == 1


def test_idempotent_sequences_are_stamped(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address, batch_size=100, linger_ms=0) as p:
        for _i in range(20):
            p.send("t", b"x" * 30)
        p.flush(5)
    seqs = []
    for b in fake.broker.topics["t"][0]:
        h = hdr.read_header(b)
        assert h.producer_id > 0
        seqs.append((h.base_sequence, h.records_count))
    expected = 0
    for seq, n in seqs:
        assert seq == expected
        expected += n
    assert expected == 20


def test_callbacks_and_batching(fake):
    fake.broker.create("t", 1)
    got = []
    with Producer(fake.address, linger_ms=50) as p:
        for _i in range(100):
            p.send("t", b"v").add_callback(got.append)
        p.flush(5)
    assert sorted(m.offset for m in got) == list(range(100))
    # linger packs the records into few requests
    assert len(fake.broker.produce_requests) < 10


def test_send_after_close_raises(fake):
    fake.broker.create("t", 1)
    p = Producer(fake.address)
    p.send("t", b"x")
    p.close(5)
    with pytest.raises(ProducerClosedError):
        p.send("t", b"y")


def test_buffer_full_blocks_then_times_out(fake):
    fake.broker.create("t", 1)

    async def never(method, request):
        if method == "Produce":
            await asyncio.sleep(5)
        return 0

    fake.broker.faults.append(never)
    p = Producer(fake.address, buffer_memory=1000, batch_size=500, max_block_ms=100, linger_ms=0)
    try:
        with pytest.raises(KafkaTimeoutError, match="buffer_memory"):
            for _ in range(100):
                p.send("t", b"x" * 100)
    finally:
        p.close(0.1)


def test_aio_producer(fake):
    fake.broker.create("t", 3)

    async def main():
        async with AIOProducer(fake.address, linger_ms=1) as p:
            md = await p.send_and_wait("t", b"a", partition=2)
            fut = await p.send("t", b"b", partition=2)
            await p.flush(5)
            md2 = await fut
            return md, md2

    md, md2 = asyncio.run(main())
    assert (md.partition, md.offset, md2.offset) == (2, 0, 1)


async def _until(condition, timeout_s=10.0):
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.001)


def _sender_asleep(p):
    sender = p.sender
    return (
        sender is not None
        and not sender._requests
        and not sender._wake.is_set()
        and p.acc.sender_sleeping
    )


def test_linger_0_sends_with_one_drain_and_no_extra_pass(fake):
    fake.broker.create("t", 1)

    async def main():
        async with AIOProducer(fake.address, linger_ms=0) as p:
            await p.send_and_wait("t", b"warm-up")
            drains = []
            real = p.acc.drain
            p.acc.drain = lambda now, sendable: drains.append(now) or real(now, sendable)
            for i in range(3):
                await _until(lambda: _sender_asleep(p))
                before = len(drains)
                md = await p.send_and_wait("t", b"v%d" % i)
                assert md.offset == i + 1
                await _until(lambda: _sender_asleep(p))
                # One drain sends it, one more when its response frees the window: no
                # extra pass after sending while nothing was queued.
                assert len(drains) - before == 2

    asyncio.run(main())


def test_a_batch_opened_just_after_the_senders_drain_is_sent(fake):
    # Another thread's append may land between the sender's drain and its sleep: it must
    # wake the sender (it used to wait for the next wake, forever at a low rate).
    fake.broker.create("t", 1)

    async def main():
        async with AIOProducer(fake.address, linger_ms=0) as p:
            await p.send_and_wait("t", b"warm-up")
            await _until(lambda: _sender_asleep(p))
            real = p.acc.drain
            late = []

            def drain_then_append(now, sendable):
                out = real(now, sendable)
                if not late:
                    batch, index, _ = p.acc.append(p._tps[("t", 0)], None, b"late", None, 1)
                    late.append((batch, index))
                return out

            p.acc.drain = drain_then_append
            p.sender.wake()
            await _until(lambda: bool(late) and late[0][0].done, 5.0)
            assert late[0][0].metadata(late[0][1]).offset == 1

    asyncio.run(main())


def test_init_producer_id_retried_until_the_broker_answers(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(fail_first(2, "InitProducerId", grpc.StatusCode.UNAVAILABLE))
    with Producer(fake.address, retry_backoff_ms=1, retry_backoff_max_ms=5) as p:
        assert p.send("t", b"x").get(10).offset == 0
    assert fake.broker.calls.count("InitProducerId") == 3


def test_broker_without_idempotence_falls_back(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(
        lambda m, r: grpc.StatusCode.UNIMPLEMENTED if m == "InitProducerId" else 0
    )
    with Producer(fake.address) as p:
        assert p.send("t", b"x").get(10).offset == 0
    h = hdr.read_header(fake.broker.topics["t"][0][0])
    assert h.producer_id == -1


def test_a_failed_batch_does_not_wedge_later_ones(fake):
    """A non-retriable failure leaves a sequence gap; later batches go out again under a new
    producer id and land."""
    fake.broker.create("t", 1)
    seen = {"n": 0}

    async def fail_second(method, request):
        if method != "Produce":
            return 0
        seen["n"] += 1
        if seen["n"] == 2:
            await asyncio.sleep(0.05)  # let later batches overtake it on the wire
            return 33
        return 0

    fake.broker.faults.append(fail_second)
    with Producer(
        fake.address, linger_ms=0, batch_size=64, retry_backoff_ms=1, retry_backoff_max_ms=5
    ) as p:
        futs = [p.send("t", b"%03d" % i) for i in range(40)]
        p.flush(10)
    failed = [f for f in futs if f.failed()]
    ok = [f for f in futs if f.succeeded()]
    assert failed and len(failed) + len(ok) == 40
    assert all(f.exception().__class__.__name__ == "InvalidRequestError" for f in failed)
    # Everything that succeeded is stored exactly once, in send order.
    stored = stored_values(fake, "t", 0)
    expected = [b"%03d" % i for i, f in enumerate(futs) if f.succeeded()]
    assert stored == expected
    assert fake.broker.out_of_order > 0  # later batches did overtake the failed one
    assert p._aio.sender.producer_resets == 1
    assert fake.broker.calls.count("InitProducerId") == 2


def test_a_written_batch_answered_with_an_error_never_hides_later_records(fake):
    """The broker wrote a batch but answered it with an error (a deposed leader, a lost
    answer), and the producer gave up on it: its sequences may be in the log, so they are
    never given to other records (the broker would take those for duplicates of the first
    and the producer would report records delivered that are not in the log). The fault
    runs found this (tests/faults/FINDINGS.md 3)."""
    fake.broker.create("t", 1)
    fake.broker.answer_written = lambda n: 33 if n == 2 else 0
    with Producer(fake.address, linger_ms=0, retry_backoff_ms=1, retry_backoff_max_ms=5) as p:
        futs = []
        for i in range(5):
            futs.append(p.send("t", b"%d" % i))
            p.flush(10)  # one batch at a time
    assert [f.failed() for f in futs] == [False, True, False, False, False]
    stored = stored_values(fake, "t", 0)
    assert stored == [b"0", b"1", b"2", b"3", b"4"]  # the failed one is there too
    for i, f in enumerate(futs):
        if f.succeeded():
            assert stored[f.get(1).offset] == b"%d" % i
    assert p._aio.sender.producer_resets == 1


@pytest.mark.parametrize("path", ["unary", "stream"])
def test_produce_paths_deliver_in_order(fake, path):
    fake.broker.create("t", 2)
    with Producer(fake.address, produce_path=path, linger_ms=0, batch_size=200) as p:
        futs = [p.send("t", b"%d" % i, partition=i % 2) for i in range(200)]
        p.flush(10)
        mds = [f.get(1) for f in futs]
    assert [m.offset for m in mds if m.partition == 0] == list(range(100))
    assert stored_values(fake, "t", 1) == [b"%d" % i for i in range(1, 200, 2)]


def test_stream_failure_is_retried_on_a_new_stream(fake):
    fake.broker.create("t", 1)
    fake.broker.faults.append(fail_first(1, "Produce", grpc.StatusCode.UNAVAILABLE))
    with Producer(
        fake.address, produce_path="stream", retry_backoff_ms=1, retry_backoff_max_ms=5
    ) as p:
        assert p.send("t", b"x").get(10).offset == 0
    assert stored_values(fake, "t", 0) == [b"x"]


def test_unknown_produce_path_is_refused():
    with pytest.raises(ValueError, match="produce_path"):
        Producer("127.0.0.1:1", produce_path="carrier-pigeon")


def test_send_from_many_threads(fake):
    import threading

    fake.broker.create("t", 1)
    with Producer(fake.address, linger_ms=1, batch_size=2000) as p:

        def worker(n):
            for i in range(300):
                p.send("t", b"%d-%d" % (n, i))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        p.flush(10)
    values = stored_values(fake, "t", 0)
    assert len(values) == 1200
    for n in range(4):
        mine = [v for v in values if v.startswith(b"%d-" % n)]
        assert mine == [b"%d-%d" % (n, i) for i in range(300)]  # each thread's order kept
