"""End to end: damage to an old, closed segment of a real broker (issue 8, defect 2).

The broker used to answer a fetch over a corrupt batch header with ``internal error:
SegmentCorruptError`` and, on the next restart, delete every segment after the damaged one.
Now the damage is reported (an ERROR naming the file, bytes and offsets), fetches over it
answer CORRUPT_MESSAGE with the offset to skip to, everything else stays served, and the
same holds after further restarts.
"""

from __future__ import annotations

import re
import struct
import time
from pathlib import Path

from rilke_broker_process import BrokerFactory
from waiting import wait_for

from rilke import Admin, Consumer, NewTopic, Producer, TopicPartition
from rilke.errors import CorruptRecordError
from rilke.records.header import read_header

RECORDS = 2000
BAD_LENGTH = 0x7FFFFF00
TP = TopicPartition("t", 0)


def consume_skipping(address: str, timeout_s: float = 30.0) -> tuple[list[int], list[str]]:
    """Every offset of t-0 from the start, seeking past what the broker refuses as the error
    says; and the errors' messages."""
    offsets: list[int] = []
    errors: list[str] = []
    with Consumer(bootstrap_servers=address, auto_offset_reset="earliest") as consumer:
        consumer.assign([TP])
        end = consumer.end_offsets([TP])[TP]
        deadline = time.monotonic() + timeout_s
        while (not offsets or offsets[-1] < end - 1) and time.monotonic() < deadline:
            try:
                for records in consumer.poll(200).values():
                    offsets.extend(r.offset for r in records)
            except CorruptRecordError as exc:
                errors.append(str(exc))
                match = re.search(r"seek\(\) to offset (\d+)", str(exc))
                assert match, str(exc)
                consumer.seek(TP, int(match.group(1)))
    return offsets, errors


def segment_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "t-0").glob("*.log"))


def test_a_bad_batch_length_in_an_old_segment_loses_nothing_else(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    broker = broker_factory(data_dir)
    with Admin(broker.address) as admin:
        admin.create_topics([NewTopic("t", 1, configs={"segment.bytes": "100000"})])
    with Producer(broker.address, linger_ms=0, batch_size=4096) as producer:
        for i in range(RECORDS):
            producer.send("t", b"%05d" % i + b"x" * 380, partition=0)
        producer.flush(30)
    assert broker.stop() == 0
    files = segment_files(data_dir)
    assert len(files) >= 9
    middle = files[len(files) // 2]
    data = middle.read_bytes()
    first = read_header(data, 0)
    second = read_header(data, first.size)
    bad_first, bad_next = second.base_offset, second.next_offset
    with open(middle, "r+b") as f:
        f.seek(first.size + 8)
        f.write(struct.pack(">i", BAD_LENGTH))

    for _ in range(2):  # the first start after the damage, and a restart after that
        broker = broker_factory(data_dir)
        offsets, errors = consume_skipping(broker.address)
        assert offsets == [o for o in range(RECORDS) if not bad_first <= o < bad_next], (
            errors,
            broker.log_text()[-3000:],
        )
        assert len(errors) == 1
        assert f"seek() to offset {bad_next}" in errors[0]
        assert f"offsets {bad_first}-{bad_next - 1}" in errors[0]
        with Consumer(bootstrap_servers=broker.address) as consumer:
            assert consumer.end_offsets([TP])[TP] == RECORDS
            assert consumer.beginning_offsets([TP])[TP] == 0
        assert broker.stop() == 0
        log_text = broker.log_text()
        assert re.search(
            rf"ERROR .*{middle.name}: bytes {first.size}-\d+ .*offsets {bad_first}-"
            rf"{bad_next - 1}",
            log_text,
        ), log_text[-3000:]
        assert not re.search(r"deleted [1-9]\d* segment", log_text), log_text[-3000:]
        assert segment_files(data_dir)[: len(files)] == files


def test_the_scrubber_finds_a_flipped_byte_and_the_broker_refuses_it(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    broker = broker_factory(data_dir, "--scrub-bytes-per-second", "0")
    with Admin(broker.address) as admin:
        admin.create_topics([NewTopic("t", 1, configs={"segment.bytes": "100000"})])
    with Producer(broker.address, linger_ms=0, batch_size=4096) as producer:
        for i in range(RECORDS):
            producer.send("t", b"%05d" % i + b"x" * 380, partition=0)
        producer.flush(30)
    assert broker.stop() == 0
    files = segment_files(data_dir)
    middle = files[len(files) // 2]
    data = middle.read_bytes()
    first = read_header(data, 0)
    second = read_header(data, first.size)
    with open(middle, "r+b") as f:  # one byte of the second batch's records
        f.seek(first.size + second.size - 7)
        byte = f.read(1)
        f.seek(first.size + second.size - 7)
        f.write(bytes([byte[0] ^ 0x20]))

    broker = broker_factory(data_dir, "--scrub-bytes-per-second", "4MiB")
    wait_for(
        lambda: f"{middle.name}: bytes {first.size}-" in broker.log_text(),
        20,
        "the scrubber's report of the damaged batch",
    )
    # A consumer that does not check CRCs (librdkafka's default) gets no damaged record.
    offsets: list[int] = []
    errors: list[str] = []
    with Consumer(
        bootstrap_servers=broker.address, auto_offset_reset="earliest", check_crcs=False
    ) as consumer:
        consumer.assign([TP])
        deadline = time.monotonic() + 30
        while (not offsets or offsets[-1] < RECORDS - 1) and time.monotonic() < deadline:
            try:
                for records in consumer.poll(200).values():
                    for r in records:
                        assert r.value == b"%05d" % r.offset + b"x" * 380, r.offset
                        offsets.append(r.offset)
            except CorruptRecordError as exc:
                errors.append(str(exc))
                assert "corrupt on this broker" in str(exc)
                consumer.seek(TP, second.next_offset)
    assert len(errors) == 1
    assert offsets == [
        o for o in range(RECORDS) if not second.base_offset <= o < second.next_offset
    ]
