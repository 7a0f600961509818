"""`rilke bench codec`: the record-batch codec's speed, in one process.

Measures, for records of ``--value-bytes`` (default 100) byte values in batches of about
``--batch-bytes`` (default 16 KiB):

- builder: records/s through BatchBuilder.append + build, per codec (none and lz4 by default);
- reader: records/s through read_records over the same batches (CRC checked, decompressed);
- check_batch: MB/s of header + CRC validation, the broker's per-batch work;

and, when kafka-python is installed, the same builder and reader figures for its
DefaultRecordBatchBuilder / DefaultRecordBatch as a side-by-side peer.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from rilke.records import (
    BatchBuilder,
    Compression,
    check_batch,
    is_supported,
    read_records,
    record_size_upper_bound,
)

_BASE_TS = 1_700_000_000_000


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "codec", help="record-batch codec speed: builder, reader, check_batch"
    )
    parser.add_argument("--records", type=int, default=300_000, help="records per run")
    parser.add_argument("--value-bytes", type=int, default=100, help="value size")
    parser.add_argument("--batch-bytes", type=int, default=16 * 1024, help="batch size target")
    parser.add_argument(
        "--codecs",
        default="none,lz4",
        help="comma-separated codecs (none, gzip, lz4, zstd); default none,lz4",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts")
    parser.add_argument("--no-peer", action="store_true", help="skip the kafka-python figures")
    parser.set_defaults(func=run)


def _best(repeat: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _values(n: int, size: int) -> list[bytes]:
    # Half random, half repeated: compressible like typical JSON-ish payloads, not trivially.
    pool = [os.urandom(size // 2) + b"x" * (size - size // 2) for _ in range(64)]
    return [pool[i % 64] for i in range(n)]


def _build_rilke(codec: Compression, values: list[bytes], batch_bytes: int) -> list[bytes]:
    batches: list[bytes] = []
    builder = BatchBuilder(compression=codec)
    append = builder.append
    per_record = record_size_upper_bound(None, values[0])
    ts = _BASE_TS
    for value in values:
        if append(None, value, None, ts) + per_record > batch_bytes:
            batches.append(builder.build())
            builder = BatchBuilder(compression=codec)
            append = builder.append
    if not builder.is_empty:
        batches.append(builder.build())
    return batches


def _read_rilke(buf: bytes) -> int:
    n = 0
    for _ in read_records(buf):
        n += 1
    return n


def _check_all(buf: bytes) -> int:
    pos = 0
    end = len(buf)
    while pos < end:
        pos += check_batch(buf, pos).size
    return pos


def _peer(values: list[bytes], codec: Compression, batch_bytes: int) -> Callable[[], list[bytes]]:
    from kafka.record.default_records import DefaultRecordBatchBuilder

    def build() -> list[bytes]:
        batches: list[bytes] = []
        builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, batch_bytes)
        offset = 0
        for value in values:
            if builder.append(offset, _BASE_TS, None, value, []) is None:
                batches.append(bytes(builder.build()))
                builder = DefaultRecordBatchBuilder(2, codec, False, -1, -1, -1, batch_bytes)
                offset = 0
                builder.append(offset, _BASE_TS, None, value, [])
            offset += 1
        batches.append(bytes(builder.build()))
        return batches

    return build


def _peer_read(buf: bytes) -> int:
    from kafka.record import MemoryRecords

    n = 0
    records = MemoryRecords(buf)
    while records.has_next():
        batch = records.next_batch()
        batch.validate_crc()
        for _ in batch:
            n += 1
    return n


def run(args: argparse.Namespace) -> int:
    codecs = [Compression.parse(name) for name in args.codecs.split(",") if name.strip()]
    n = args.records
    values = _values(n, args.value_bytes)
    peer = False
    if not args.no_peer:
        try:
            import kafka.record  # noqa: F401

            peer = True
        except ImportError:
            peer = False
    print(
        f"rilke bench codec: {n} records of {args.value_bytes}-byte values, "
        f"batches of ~{args.batch_bytes} bytes, best of {args.repeat}"
    )
    print(f"{'codec':<6} {'impl':<13} {'build rec/s':>12} {'read rec/s':>12} {'batch bytes':>12}")
    for codec in codecs:
        if not is_supported(codec):
            print(f"{codec.name.lower():<6} (not supported by this build)")
            continue
        batches = _build_rilke(codec, values, args.batch_bytes)
        buf = b"".join(batches)
        assert _read_rilke(buf) == n
        t_build = _best(args.repeat, partial(_build_rilke, codec, values, args.batch_bytes))
        t_read = _best(args.repeat, partial(_read_rilke, buf))
        print(
            f"{codec.name.lower():<6} {'rilke':<13} {n / t_build:>12,.0f} {n / t_read:>12,.0f} "
            f"{len(buf) // len(batches):>12,}"
        )
        if peer:
            build = _peer(values, codec, args.batch_bytes)
            pbuf = b"".join(build())
            assert _peer_read(pbuf) == n
            p_build = _best(args.repeat, build)
            p_read = _best(args.repeat, partial(_peer_read, pbuf))
            print(
                f"{'':<6} {'kafka-python':<13} {n / p_build:>12,.0f} {n / p_read:>12,.0f} "
                f"{'':>12}   rilke/peer: build x{p_build / t_build:.1f}, read x{p_read / t_read:.1f}"
            )
    for batch_bytes in (args.batch_bytes, 1024 * 1024):
        batches = _build_rilke(Compression.NONE, values, batch_bytes)
        buf = b"".join(batches)
        t_check = _best(args.repeat, partial(_check_all, buf))
        print(
            f"check_batch ({len(buf) // len(batches):,}-byte batches): "
            f"{len(buf) / t_check / 1e6:,.0f} MB/s, {len(batches) / t_check:,.0f} batches/s"
        )
    return 0
