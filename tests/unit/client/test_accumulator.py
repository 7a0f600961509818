"""The record accumulator on its own: batch size, linger, flush, buffer bound, expiry."""

from __future__ import annotations

import threading
import time

import pytest

from rilke.client.accumulator import BufferFull, RecordAccumulator
from rilke.client.structs import TopicPartition
from rilke.errors import ProducerClosedError

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


def make(**kw):
    settings = {
        "batch_size": 1000,
        "linger_ms": 100,
        "compression": 0,
        "buffer_memory": 10_000,
        "delivery_timeout_ms": 60_000,
    }
    settings.update(kw)
    return RecordAccumulator(**settings)


def always(_tp):
    return True


def test_batch_closes_at_batch_size_and_new_one_opens():
    acc = make()
    batches = []
    for _ in range(30):
        b, _, created = acc.append(TP0, None, b"x" * 100, None, 1)
        if created:
            batches.append(b)
    assert len(batches) >= 3
    assert all(b.full for b in batches[:-1])
    # A batch crosses batch_size by at most one record.
    assert all(b.size < 1000 + 200 for b in batches)
    assert sum(b.record_count for b in batches) == 30


def test_drain_waits_for_linger_unless_full_or_flushing():
    acc = make(linger_ms=100)
    b, _, _ = acc.append(TP0, None, b"x", None, 1)
    now = b.created_s
    ready, next_ready, more = acc.drain(now + 0.01, always)
    assert ready == [] and next_ready == pytest.approx(b.created_s + 0.1) and not more
    ready, _, more = acc.drain(now + 0.2, always)
    assert ready == [b] and b.full and not more
    b2, _, _ = acc.append(TP1, None, b"y", None, 1)
    acc.flushing += 1
    ready, _, _ = acc.drain(b2.created_s, always)
    assert ready == [b2]


def test_drain_skips_partitions_that_are_not_sendable_and_keeps_order():
    acc = make(batch_size=10)
    first, _, _ = acc.append(TP0, None, b"x" * 20, None, 1)
    second, _, _ = acc.append(TP0, None, b"x" * 20, None, 1)
    ready, _, more = acc.drain(time.monotonic(), lambda tp: False)
    assert ready == [] and not more
    # One batch per partition per drain: the second, full, is reported as left behind.
    assert acc.drain(time.monotonic(), always)[::2] == ([first], True)
    assert acc.drain(time.monotonic(), always)[::2] == ([second], False)


def test_drain_reports_a_batch_left_behind_only_when_it_is_ready():
    acc = make(batch_size=100, linger_ms=100)
    first, _, _ = acc.append(TP0, None, b"x" * 200, None, 1)  # full
    acc.append(TP0, None, b"x", None, 1)  # the open one behind it, lingering
    ready, next_ready, more = acc.drain(first.created_s, always)
    assert ready == [first] and not more and next_ready is None
    ready, _, more = acc.drain(first.created_s + 0.2, always)
    assert len(ready) == 1 and not more


def test_a_batch_opened_while_the_sender_sleeps_wakes_it_once():
    acc = make(linger_ms=0)
    wakes = []
    acc.wakeup = lambda: wakes.append(1)
    # The sender sets the flag before it drains, so an append right after the drain wakes it.
    acc.sender_sleeping = True
    assert acc.drain(time.monotonic(), always)[0] == []
    acc.append(TP0, None, b"x", None, 1)
    acc.append(TP0, None, b"y", None, 1)  # the same open batch: no second wake
    assert wakes == [1] and not acc.sender_sleeping


def test_buffer_memory_bounds_new_batches_and_release_frees_it():
    acc = make(buffer_memory=500, batch_size=200)
    with pytest.raises(BufferFull):
        for _ in range(100):
            acc.append(TP0, None, b"x" * 100, None, 1)
    held = acc.snapshot_incomplete()
    acc.release(held)
    assert acc.buffered_bytes == 0
    acc.append(TP0, None, b"x", None, 1)


def test_expire_takes_queued_batches_past_their_deadline():
    acc = make(delivery_timeout_ms=50)
    b, _, _ = acc.append(TP0, None, b"x", None, 1)
    assert acc.expire(b.created_s + 0.01) == []
    assert acc.expire(b.created_s + 0.06) == [b]
    assert not acc.has_queued()


def test_append_after_close_raises():
    acc = make()
    acc.closed = True
    with pytest.raises(ProducerClosedError):
        acc.append(TP0, None, b"x", None, 1)


def test_bad_value_changes_nothing():
    acc = make()
    acc.append(TP0, None, b"ok", None, 1)
    before = acc.buffered_bytes
    with pytest.raises(TypeError):
        acc.append(TP0, None, 12345, None, 1)  # type: ignore[arg-type]
    assert acc.buffered_bytes == before


def test_bad_value_in_a_new_batch_leaves_no_empty_batch():
    acc = make()
    with pytest.raises(TypeError):
        acc.append(TP0, None, 12345, None, 1)  # type: ignore[arg-type]
    assert not acc.has_queued() and acc.snapshot_incomplete() == []


def test_a_record_that_would_overflow_max_batch_bytes_starts_a_new_batch():
    acc = make(batch_size=10_000, max_batch_bytes=1000)
    first, _, _ = acc.append(TP0, None, b"x" * 600, None, 1, 600)
    second, _, created = acc.append(TP0, None, b"y" * 600, None, 1, 600)
    assert created and second is not first and first.full
    assert first.size <= 1000 and second.size <= 1000


def test_expire_knows_the_soonest_deadline_without_the_lock():
    """expire() answers "nothing yet" without taking the lock while no queued batch can have
    expired; a batch added later, in a new partition, still expires on time."""
    acc = make(delivery_timeout_ms=50)
    assert acc.next_expiry_s == float("inf")
    b0, _, _ = acc.append(TP0, None, b"x", None, 1)
    assert acc.next_expiry_s == b0.deadline_s
    answers: list[list[object]] = []
    with acc.lock:  # held: an expire() that took the lock would wait for it
        t = threading.Thread(target=lambda: answers.append(acc.expire(b0.deadline_s - 0.001)))
        t.start()
        t.join(5)
        assert answers == [[]], "expire() waited for the lock"
    t.join(5)
    b1, _, _ = acc.append(TP1, None, b"y", None, 1)
    assert acc.expire(b0.deadline_s) == [b0]
    assert acc.next_expiry_s == b1.deadline_s  # recomputed from what is left
    assert acc.expire(b1.deadline_s) == [b1]
    assert acc.next_expiry_s == float("inf") and not acc.has_queued()
    big = make(batch_size=10)
    b2, _, _ = big.append_many(TP0, None, [b"a" * 20, b"b"], 5, 0, 2, 20)
    assert big.next_expiry_s == b2.deadline_s


def test_records_stay_unencoded_until_the_batch_is_encoded_and_size_bounds_the_bytes():
    """An append keeps the record as columns (keys and headers only once a record has one);
    encoding the closed batch writes every record, within the size the accumulator counted."""
    from rilke.records import read_batch

    acc = make(batch_size=100_000, buffer_memory=1_000_000)
    b, _, _ = acc.append(TP0, None, b"a", None, 5)
    acc.append(TP0, None, b"b" * 300, None, 5 + 10**11)  # a far timestamp: a long varlong
    assert b.keys is None and b.headers is None and b.values == [b"a", b"b" * 300]
    acc.append(TP0, b"k", b"c", [("h", b"v")], 4)
    assert b.keys == [None, None, b"k"] and b.headers[:2] == [None, None]
    assert b.builder.record_count == 0  # nothing encoded yet
    ready, _, _ = acc.drain(time.monotonic() + 1, always)
    assert ready == [b]
    data = b.encode().build()
    assert len(data) <= b.size == acc.buffered_bytes
    records = read_batch(data, 0).records()
    assert [(r.key, r.value, r.timestamp, r.headers) for r in records] == [
        (None, b"a", 5, ()),
        (None, b"b" * 300, 5 + 10**11, ()),
        (b"k", b"c", 4, (("h", b"v"),)),
    ]


def test_a_bad_header_changes_nothing():
    acc = make()
    with pytest.raises(TypeError):
        acc.append(TP0, None, b"x", [(1, b"v")], 1)  # type: ignore[list-item]
    assert not acc.has_queued() and acc.buffered_bytes == 0
    b, _, _ = acc.append(TP0, None, b"x", None, 1)
    with pytest.raises(TypeError):
        acc.append(TP0, b"k", b"y", [("h", 5)], 1)  # type: ignore[list-item]
    assert b.values == [b"x"] and b.keys is None and b.headers is None and b.record_count == 1


def test_append_many_checks_every_record_before_appending():
    acc = make(batch_size=10_000)
    with pytest.raises(TypeError, match="value"):
        acc.append_many(TP0, None, [b"a", "text"], 5, 0, 2, 4)  # type: ignore[list-item]
    assert not acc.has_queued() and acc.buffered_bytes == 0
    b, first, end = acc.append_many(TP0, [b"k", None], [b"a", b"b"], 5, 0, 2, 2)
    assert (first, end) == (0, 2) and b.keys == [b"k", None] and b.timestamps == [5, 5]
