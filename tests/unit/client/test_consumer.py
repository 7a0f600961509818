"""The consumer against the in-process fake broker."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from waiting import wait_for

from rilke.client import codec
from rilke.client.consumer import AIOConsumer, Consumer
from rilke.client.structs import TopicPartition
from rilke.errors import (
    CorruptRecordError,
    IllegalStateError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    UnknownTopicOrPartitionError,
)
from rilke.records import header as hdr

TP = TopicPartition("t", 0)


def put_batch(fake, values, topic="t", partition=0, control=False, ts=1000):
    """Append one batch of ``values`` to the fake's log and return its base offset."""
    b = codec.new_builder(0)
    for i, v in enumerate(values):
        b.append(None, v, None, ts + i)
    data = bytearray(b.build())
    if control:
        # Set the control attribute bit and fix the CRC (a control batch's records are
        # skipped anyway).
        from crc32c import crc32c

        data[22] |= hdr.CONTROL_MASK
        data[17:21] = crc32c(bytes(data[21:])).to_bytes(4, "big")
    base = fake.broker.next_offset[(topic, partition)]
    hdr.set_base_offset(data, base)
    fake.broker.topics[topic][partition].append(bytes(data))
    fake.broker.next_offset[(topic, partition)] = base + len(values)
    return base


def poll_all(c, n, timeout_s=5.0):
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(200).values():
            out.extend(recs)
    return out


def test_assign_poll_from_earliest(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b", b"c"])
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        recs = poll_all(c, 3)
        assert [(r.offset, r.value) for r in recs] == [(0, b"a"), (1, b"b"), (2, b"c")]
        assert recs[0].timestamp == 1000 and recs[0].topic == "t" and recs[0].headers == ()
        assert c.position(TP) == 3
        assert c.lag(TP) == 0 and c.highwater(TP) == 3


def poll_until_error(c, error, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline, f"poll() did not raise {error.__name__}"
        try:
            c.poll(100)
        except error as e:
            return e


def test_a_deleted_topic_is_reported_to_a_standalone_consumer(fake):
    """Issue 8: it used to poll empty forever."""
    fake.broker.create("t", 1)
    put_batch(fake, [b"a"])
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        assert len(poll_all(c, 1)) == 1
        del fake.broker.topics["t"]
        e = poll_until_error(c, UnknownTopicOrPartitionError)
        assert "t-0" in str(e) and "deleted" in str(e)
        poll_until_error(c, UnknownTopicOrPartitionError)  # again, until assigned elsewhere
        fake.broker.create("t", 1)  # created again: read again, from the reset position
        put_batch(fake, [b"again"])
        c.seek(TP, 0)
        assert [r.value for r in poll_all(c, 1)] == [b"again"]


def test_a_partition_beyond_the_topics_count_is_reported(fake):
    fake.broker.create("t", 1)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition("t", 3)])
        e = poll_until_error(c, UnknownTopicOrPartitionError)
        assert "only 1 partition" in str(e)


def test_latest_reads_only_new_records(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"old"])
    with Consumer(bootstrap_servers=fake.address) as c:
        c.assign([TP])
        assert c.position(TP) == 1
        put_batch(fake, [b"new"])
        assert [r.value for r in poll_all(c, 1)] == [b"new"]


def test_seek_inside_a_batch_skips_earlier_records(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"0", b"1", b"2", b"3"])
    with Consumer(bootstrap_servers=fake.address) as c:
        c.assign([TP])
        c.seek(TP, 2)
        assert [r.offset for r in poll_all(c, 2)] == [2, 3]


def test_control_batches_are_skipped(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a"])
    put_batch(fake, [b"ctl"], control=True)
    put_batch(fake, [b"b"])
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        assert [(r.offset, r.value) for r in poll_all(c, 2)] == [(0, b"a"), (2, b"b")]


def test_the_position_moves_past_a_trailing_control_batch(fake):
    """A log that ends in a control batch (a transaction marker, or the no-op a new Raft
    leader writes) is read to its end: position() is the log end, so a group's lag is 0."""
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"])
    put_batch(fake, [b"ctl"], control=True)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        assert [r.value for r in poll_all(c, 2)] == [b"a", b"b"]
        wait_for(lambda: (c.poll(50), c.position(TP))[1] == 3, 10, "the position past the marker")
        put_batch(fake, [b"c"])  # and reading goes on from there
        assert [(r.offset, r.value) for r in poll_all(c, 1)] == [(3, b"c")]


def test_the_position_moves_past_a_compacted_gap_the_broker_names(fake):
    """Offsets compacted away after the last batch (or before any) are skipped where the
    broker's next_offset says; without it the consumer cannot know and waits at the gap."""
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"])
    fake.broker.next_offset[("t", 0)] = 5  # offsets 2..4 compacted away
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        assert [r.value for r in poll_all(c, 2)] == [b"a", b"b"]
        wait_for(lambda: (c.poll(50), c.position(TP))[1] == 5, 10, "the position past the gap")
        put_batch(fake, [b"c"])
        fake.broker.next_offset[("t", 0)] = 9  # and a log that is all gap from the position
        wait_for(lambda: (c.poll(50), c.position(TP))[1] == 9, 10, "past the second gap")
        put_batch(fake, [b"d"])
        assert [(r.offset, r.value) for r in poll_all(c, 1)] == [(9, b"d")]
    fake.broker.next_offset[("t", 0)] = 12
    fake.broker.tell_next_offset = False
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        c.seek(TP, 10)  # in the tail gap: no batch after it, no word from the broker
        assert c.poll(300) == {} and c.position(TP) == 10


def test_a_log_of_control_batches_only_is_read_past(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"ctl"], control=True)
    put_batch(fake, [b"ctl"], control=True)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        wait_for(lambda: (c.poll(50), c.position(TP))[1] == 2, 10, "the position past both")


def test_corrupt_batch_raises_when_checking_crcs(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"aaaa"])
    data = bytearray(fake.broker.topics["t"][0][0])
    data[-2] ^= 0xFF
    fake.broker.topics["t"][0][0] = bytes(data)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        with pytest.raises(CorruptRecordError):
            poll_all(c, 1)


def test_max_records_and_iteration(fake):
    fake.broker.create("t", 2)
    put_batch(fake, [b"%d" % i for i in range(10)])
    put_batch(fake, [b"x"], partition=1)
    with Consumer(
        "t", bootstrap_servers=fake.address, auto_offset_reset="earliest", max_poll_records=3
    ) as c:
        assert c.assignment() == {TP, TopicPartition("t", 1)}
        got = c.poll(2000)
        assert sum(len(v) for v in got.values()) <= 3
        seen = [r for v in got.values() for r in v]
        it = iter(c)
        while len(seen) < 11:
            seen.append(next(it))
        assert sorted((r.partition, r.offset) for r in seen) == sorted(
            [(0, i) for i in range(10)] + [(1, 0)]
        )


def test_offset_reset_none_raises(fake):
    fake.broker.create("t", 1)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="none") as c:
        c.assign([TP])
        with pytest.raises(NoOffsetForPartitionError):
            for _ in range(50):
                c.poll(100)


def test_out_of_range_with_reset_none_raises(fake):
    fake.broker.create("t", 1)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="none") as c:
        c.assign([TP])
        c.seek(TP, 50)
        with pytest.raises(OffsetOutOfRangeError):
            for _ in range(50):
                c.poll(100)


def test_out_of_range_resets_to_earliest(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a"])
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        c.seek(TP, 99)
        assert [r.value for r in poll_all(c, 1)] == [b"a"]


def test_offsets_queries(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"], ts=1000)
    put_batch(fake, [b"c"], ts=5000)
    with Consumer(bootstrap_servers=fake.address) as c:
        assert c.beginning_offsets([TP]) == {TP: 0}
        assert c.end_offsets([TP]) == {TP: 3}
        assert c.offsets_for_times({TP: 4000})[TP].offset == 2
        # The fake, like the broker, answers with the batch; the client finds the record.
        assert c.offsets_for_times({TP: 1001})[TP] == (1, 1001)
        with pytest.raises(IllegalStateError):
            c.seek(TopicPartition("other", 0), 1)
        with pytest.raises(ValueError):
            c.seek(TP, -1)


def test_bad_settings():
    with pytest.raises(ValueError):
        Consumer(bootstrap_servers="127.0.0.1:1", auto_offset_reset="smallest")
    with pytest.raises(TypeError):
        Consumer(bootstrap_servers="127.0.0.1:1", no_such_setting=1)


def test_aio_consumer(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"])

    async def main():
        async with AIOConsumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
            c.assign([TP])
            out = []
            while len(out) < 2:
                for recs in (await c.getmany(1000)).values():
                    out.extend(recs)
            return out

    assert [r.value for r in asyncio.run(main())] == [b"a", b"b"]


def test_a_busy_partition_does_not_starve_the_others(fake):
    fake.broker.create("t", 2)
    put_batch(fake, [b"a"] * 50, partition=0)
    put_batch(fake, [b"b"] * 50, partition=1)
    with Consumer(
        "t", bootstrap_servers=fake.address, auto_offset_reset="earliest", max_poll_records=10
    ) as c:
        assert c.position(TP) == 0 and c.position(TopicPartition("t", 1)) == 0
        # Both partitions' data arrive in one fetch; wait until both are buffered.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            st.chunks for st in c._aio.fetcher.partitions.values()
        ):
            time.sleep(0.01)
        seen = set(c.poll(1000)) | set(c.poll(1000))
        assert seen == {TopicPartition("t", 0), TopicPartition("t", 1)}


def test_iteration_ends_after_consumer_timeout_ms(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"])
    with Consumer(
        "t", bootstrap_servers=fake.address, auto_offset_reset="earliest", consumer_timeout_ms=300
    ) as c:
        assert [r.value for r in c] == [b"a", b"b"]  # and then it stops

    async def main():
        async with AIOConsumer(
            "t",
            bootstrap_servers=fake.address,
            auto_offset_reset="earliest",
            consumer_timeout_ms=300,
        ) as c:
            return [r.value async for r in c]

    assert asyncio.run(main()) == [b"a", b"b"]
    with pytest.raises(ValueError, match="consumer_timeout_ms"):
        Consumer(bootstrap_servers=fake.address, consumer_timeout_ms=-1)


def test_records_before_a_corrupt_batch_come_first_and_the_error_says_how_to_skip_it(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"good1"])
    put_batch(fake, [b"bad", b"bad"])
    put_batch(fake, [b"good2"])
    data = bytearray(fake.broker.topics["t"][0][1])
    data[-2] ^= 0xFF  # offsets 1-2: the CRC no longer holds
    fake.broker.topics["t"][0][1] = bytes(data)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        assert [r.value for r in poll_all(c, 1)] == [b"good1"]
        with pytest.raises(CorruptRecordError, match=r"t-0.*offsets 1-2.*seek\(\) to offset 3"):
            poll_all(c, 1)
        c.seek(TP, 3)
        assert [r.value for r in poll_all(c, 1)] == [b"good2"]


def test_records_fetched_before_a_fetch_error_are_handed_out_before_it(fake):
    """A broker that refuses offsets 4.. (CORRUPT_MESSAGE: "seek() to offset N") must not make
    the caller lose the records 0-3 still buffered: they come first, then the error."""
    fake.broker.create("t", 1)
    for value in (b"a", b"b", b"c", b"d"):
        put_batch(fake, [value])
    refused = threading.Event()

    def refuse_from_4(method, request):
        if method == "Fetch" and request.partitions[0].fetch_offset >= 4:
            refused.set()
            return 2
        return 0

    fake.broker.faults.append(refuse_from_4)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        c.position(TP)
        assert refused.wait(5)
        fetcher = c._aio.fetcher
        wait_for(lambda: fetcher.partitions[TP].error is not None, 5, "the fetch error")
        got = poll_all(c, 4)
        assert [r.offset for r in got] == [0, 1, 2, 3]
        with pytest.raises(CorruptRecordError):
            poll_all(c, 1)


def test_a_batch_whose_header_cannot_be_read_is_reported_after_the_records_before_it(fake):
    """The fetcher reads each header once when the data arrives; one that does not hold (here
    a magic byte that is not 2) ends the readable part: the records before it are handed out,
    then poll() raises, instead of the fetch failing unseen."""
    fake.broker.create("t", 1)
    put_batch(fake, [b"good1", b"good2"])
    put_batch(fake, [b"bad"])
    bad = bytearray(fake.broker.topics["t"][0].pop())
    bad[hdr.MAGIC_POS] = 7
    # Served after the good batch in the same response (the fake reads only the first header).
    fake.broker.topics["t"][0][0] += bytes(bad)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        assert [r.value for r in poll_all(c, 2)] == [b"good1", b"good2"]
        err = poll_until_error(c, CorruptRecordError)
        assert "t-0: the batch at offset 2 cannot be read" in str(err)
        assert "magic 7" in str(err)


def test_records_of_a_log_append_time_batch_carry_its_time_and_type(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"], ts=10)
    data = bytearray(fake.broker.topics["t"][0][0])
    hdr.set_log_append_time(data, 5555)
    fake.broker.topics["t"][0][0] = bytes(data)
    with Consumer(bootstrap_servers=fake.address, auto_offset_reset="earliest") as c:
        c.assign([TP])
        recs = poll_all(c, 2)
        assert [(r.offset, r.timestamp, r.timestamp_type, r.value) for r in recs] == [
            (0, 5555, 1, b"a"),
            (1, 5555, 1, b"b"),
        ]


def test_records_handed_to_a_waiting_poll_keep_coming(fake):
    # Each batch arrives while a blocking poll() waits for it (counted in pollers_waiting):
    # the fetch that brings it idles the loop until poll() has taken it (or HANDOVER_S
    # passed), and the fetching must go on after every such hand-over.
    fake.broker.create("t", 1)
    with Consumer(bootstrap_servers=fake.address) as c:
        c.assign([TP])
        c.seek(TP, 0)
        fetcher = c._aio.fetcher
        errors = []
        got = []

        def put_while_polling():
            try:
                for i in range(5):
                    wait_for(
                        lambda i=i: len(got) == i and fetcher.pollers_waiting == 1,
                        what="a poll waiting, every record before taken",
                    )
                    put_batch(fake, [b"v%d" % i])
            except AssertionError as exc:
                errors.append(exc)

        putter = threading.Thread(target=put_while_polling)
        putter.start()
        deadline = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < deadline:
            for records in c.poll(5000).values():
                got.extend(r.value for r in records)
        putter.join(30)
        assert not errors
        assert got == [b"v%d" % i for i in range(5)]
    assert fetcher.pollers_waiting == 0
