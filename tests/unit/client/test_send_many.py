"""Producer.send_many against the in-process fake broker: where records go, their futures,
and bad input that queues nothing."""

from __future__ import annotations

import asyncio

import pytest

from rilke.client import codec
from rilke.client.producer import AIOProducer, Producer
from rilke.errors import KafkaTimeoutError, MessageSizeTooLargeError, UnknownTopicOrPartitionError
from rilke.records import header as hdr


def stored(fake, topic, partition):
    out = []
    for b in fake.broker.topics[topic][partition]:
        out.extend(
            (r[0], r[1], r[2], r[3]) for r in codec.read_records(b, hdr.read_header(b), True)
        )
    return out


def test_many_values_become_records_in_order_each_with_its_future(fake):
    fake.broker.create("t", 1)
    values = [b"v%d" % i for i in range(5000)]
    with Producer(fake.address, batch_size=4096, linger_ms=1) as p:
        p.send("t", b"before")
        futs = p.send_many("t", values, timestamp_ms=1234)
        p.send("t", b"after")
        mds = [f.get(10) for f in futs]
    assert [m.offset for m in mds] == list(range(1, 5001))
    assert {(m.topic, m.partition, m.timestamp) for m in mds} == {("t", 0, 1234)}
    got = stored(fake, "t", 0)
    assert [r[3] for r in got] == [b"before", *values, b"after"]
    assert {r[1] for r in got[1:-1]} == {1234} and {r[2] for r in got} == {None}
    assert len(fake.broker.topics["t"][0]) > 10  # batch_size was respected: many batches


def test_keys_go_where_send_would_put_them(fake):
    fake.broker.create("t", 5)
    keys = [b"key-%d" % (i % 37) for i in range(400)]
    values = [b"x%d" % i for i in range(400)]
    with Producer(fake.address) as p:
        one = [p.send("t", v, key=k) for k, v in zip(keys, values, strict=True)]
        many = p.send_many("t", values, keys)
        p.flush(10)
        expected = [f.get(1).partition for f in one]
        got = [f.get(1) for f in many]
    assert [m.partition for m in got] == expected
    for partition in range(5):  # and in each partition, in the order given
        mine = [v for v, m in zip(values, got, strict=True) if m.partition == partition]
        kept = [r[3] for r in stored(fake, "t", partition)]
        assert kept[len(kept) - len(mine) :] == mine


def test_an_explicit_partition_and_str_values(fake):
    fake.broker.create("t", 3)
    with Producer(fake.address) as p:
        futs = p.send_many("t", ["héllo", bytearray(b"b"), None], ["k", None, b"k3"], partition=2)
        assert [f.get(5).partition for f in futs] == [2, 2, 2]
    assert [(r[2], r[3]) for r in stored(fake, "t", 2)] == [
        (b"k", "héllo".encode()),
        (None, b"b"),
        (b"k3", None),
    ]


def test_bad_input_queues_nothing(fake):
    fake.broker.create("t", 2)
    with Producer(fake.address, max_request_size=10_000) as p:
        with pytest.raises(TypeError, match=r"values\[1\] must be bytes"):
            p.send_many("t", [b"ok", 5])
        with pytest.raises(TypeError, match="sequences"):
            p.send_many("t", b"one value")
        with pytest.raises(ValueError, match="2 values but 1 keys"):
            p.send_many("t", [b"a", b"b"], [b"k"])
        with pytest.raises(MessageSizeTooLargeError):
            p.send_many("t", [b"ok", bytes(20_000)])
        with pytest.raises(MessageSizeTooLargeError):
            p.send_many("t", [b"ok", bytes(9_000)], [b"k", bytes(9_000)])  # one of 18 KB
        p.send_many("t", [bytes(9_000), b"ok"], [b"k", bytes(5_000)])  # each fits
        with pytest.raises(UnknownTopicOrPartitionError):
            p.send_many("t", [b"ok"], partition=2)
        with pytest.raises(ValueError, match="timestamp_ms"):
            p.send_many("t", [b"ok"], timestamp_ms=-1)
        p.flush(5)
    assert sum(len(stored(fake, "t", i)) for i in range(2)) == 2


def test_a_full_buffer_blocks_then_says_how_many_were_queued(fake):
    fake.broker.create("t", 1)

    async def never(method, request):
        if method == "Produce":
            await asyncio.sleep(5)
        return 0

    fake.broker.faults.append(never)
    p = Producer(fake.address, buffer_memory=2000, batch_size=500, max_block_ms=100, linger_ms=0)
    try:
        with pytest.raises(KafkaTimeoutError, match=r"buffer_memory .* of 100 records were queued"):
            p.send_many("t", [b"x" * 100] * 100)
    finally:
        p.close(0.1)


def test_aio_send_many(fake):
    fake.broker.create("t", 1)

    async def main():
        async with AIOProducer(fake.address, linger_ms=1) as p:
            futs = await p.send_many("t", [b"a", b"b", b"c"])
            return [(await f).offset for f in futs]

    assert asyncio.run(main()) == [0, 1, 2]


def test_with_a_serializer_each_record_takes_the_send_path(fake):
    fake.broker.create("t", 1)
    with Producer(fake.address, value_serializer=lambda v: v.upper().encode()) as p:
        futs = p.send_many("t", ["a", "b"])
        assert [f.get(5).offset for f in futs] == [0, 1]
    assert [r[3] for r in stored(fake, "t", 0)] == [b"A", b"B"]


def test_the_futures_of_a_call_index_slice_and_iterate_like_a_list():
    from rilke.client.send_many import RecordFutures

    a, b = object(), object()
    futs = RecordFutures()
    futs._add(a, 5, 3)  # records 0-2 of the call: batch a, indexes 5-7
    futs._add(b, 0, 2)  # records 3-4: batch b, indexes 0-1
    expected = [(a, 5), (a, 6), (a, 7), (b, 0), (b, 1)]
    assert len(futs) == 5
    assert [tuple(f) for f in futs] == expected
    assert [tuple(futs[i]) for i in range(5)] == expected
    assert tuple(futs[-1]) == (b, 1) and tuple(futs[-5]) == (a, 5)
    assert [tuple(f) for f in futs[1:4:2]] == [(a, 6), (b, 0)]
    for bad in (5, -6):
        with pytest.raises(IndexError):
            futs[bad]
    assert list(RecordFutures()) == []
