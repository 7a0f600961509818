"""The idempotent producer keeps every unacknowledged batch of a partition within the
broker's dedup window (its last five batches per producer), so a retry is answered as a
duplicate with its original offset and never written twice (tests/faults/FINDINGS.md 1)."""

from __future__ import annotations

from rilke.client import codec
from rilke.client.producer import Producer
from rilke.client.sender import MAX_UNACKNOWLEDGED_BATCHES
from rilke.errors import RilkeError
from rilke.partition.producer_state import BATCHES_REMEMBERED
from rilke.records import header as hdr
from tests.waiting import wait_for


def stored_values(fake, topic, partition):
    out = []
    for b in fake.broker.topics[topic][partition]:
        h = hdr.read_header(b)
        out.extend(r[3] for r in codec.read_records(b, h, True))
    return out


def test_the_window_is_the_brokers():
    assert MAX_UNACKNOWLEDGED_BATCHES == BATCHES_REMEMBERED


def test_answers_held_by_the_broker_keep_later_batches_within_its_dedup_window(fake):
    """The broker writes four batches but holds their answers (another partition of the
    requests was stalled: a full disk) past the producer's request timeout, while it answers
    later requests at once. Those later batches must not push the four out of the broker's
    window: their retries are then duplicates (original offsets), not out of order (which
    made the producer take a new id and write them again)."""
    fake.broker.create("t", 1)
    fake.broker.real_producer_state = True
    held = []

    def hold(request):
        if len(held) < 4:
            held.append(request)
            return fake.broker.hang.wait()  # until the producer's deadline ends the call
        return None

    fake.broker.before_answer = hold
    with Producer(
        fake.address,
        linger_ms=0,
        request_timeout_ms=1000,
        retry_backoff_ms=10,
        retry_backoff_max_ms=50,
    ) as p:
        futs = []
        for i in range(4):
            futs.append(p.send("t", b"%d" % i))
            wait_for(lambda i=i: len(held) > i, 10, f"request {i} written and held")
        futs.extend(p.send("t", b"%d" % i) for i in range(4, 14))
        p.flush(30)
        assert p._aio.sender.producer_resets == 0
    errors = [f.exception() for f in futs if f.failed()]
    assert errors == []
    stored = stored_values(fake, "t", 0)
    assert stored == [b"%d" % i for i in range(14)]  # each once, in order
    for i, f in enumerate(futs):
        assert stored[f.get(1).offset] == b"%d" % i


def test_a_batch_that_may_be_written_is_not_sent_again_under_a_new_producer_id(fake):
    """A batch whose request ended without an answer (the broker wrote it) waits for a retry
    when another batch fails for good and the producer takes a new id: under the new id the
    broker cannot know it for a retry, so it fails (it may be in the log) rather than being
    written a second time (seed 103: 14 duplicates)."""
    from rilke.errors import KafkaTimeoutError

    fake.broker.create("t", 2)
    held = []

    def hold(request):
        if not held and request.partitions[0].partition == 0:
            held.append(request)
            return fake.broker.hang.wait()  # until the producer's deadline ends the call
        return None

    def refuse_partition_1(method, request):
        if method == "Produce" and any(p.partition == 1 for p in request.partitions):
            return 33  # InvalidRequest: the batch fails for good
        return 0

    fake.broker.before_answer = hold
    fake.broker.faults.append(refuse_partition_1)
    with Producer(
        fake.address,
        linger_ms=0,
        request_timeout_ms=1000,
        retry_backoff_ms=10,
        retry_backoff_max_ms=50,
    ) as p:
        written = p.send("t", b"a0", partition=0)
        wait_for(lambda: held, 10, "the first batch written and its answer held")
        refused = p.send("t", b"b0", partition=1)
        p.flush(30)
        assert p._aio.sender.producer_resets == 1
        after = p.send("t", b"a1", partition=0)
        assert after.get(10).offset == 1
    assert isinstance(refused.exception(), RilkeError)
    assert isinstance(written.exception(), KafkaTimeoutError)
    assert stored_values(fake, "t", 0) == [b"a0", b"a1"]  # a0 once
