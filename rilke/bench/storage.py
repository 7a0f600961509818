"""`rilke bench storage`: the partition log against plain files, in the same run.

Measures, for 16 KiB batches (by default, 1 GiB of them):

- append throughput (MB/s, batches/s) of ``PartitionLog.append`` against plain buffered file
  writes of the same bytes, without fsync and with an fsync every 1 MiB (``flush()`` for the
  log, ``fdatasync`` for the file);
- with ``--batches-per-append N`` (N > 1), also append throughput when each call carries N
  batches back to back (as the broker appends a produce request's batches for one partition),
  against plain writes of the same N-batch buffers, without fsync;
- read throughput of the whole log (``PartitionLog.read`` in 1 MiB steps) against a plain
  sequential read of the same bytes;
- the time to open the log after a clean shutdown (the marker present: nothing scanned), and
  after kill -9 (a child process appending is SIGKILLed: only segments past the last flushed
  checkpoint are scanned).

The two sides of each comparison run interleaved in chunks, so that noise from other work on
the machine falls on both. Figures are printed and, with ``--json``, written to a file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from crc32c import crc32c

MiB = 1 << 20
_CHUNK_BYTES = 32 * MiB  # how much each side does before the other takes its turn
_READ_BYTES = MiB


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "storage",
        help="partition log append/read/open throughput against plain files",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="log size (default 1024)")
    parser.add_argument(
        "--fsync-size-mb",
        type=int,
        default=None,
        help="bytes for the fsync-every-1-MiB runs (default: --size-mb)",
    )
    parser.add_argument("--batch-kb", type=int, default=16, help="batch size (default 16)")
    parser.add_argument(
        "--batches-per-append",
        type=int,
        default=1,
        help="also measure appends of N batches per call (default 1: only single batches)",
    )
    parser.add_argument(
        "--segment-mb", type=int, default=128, help="segment.bytes in MiB (default 128)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: tmp)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


# --- batches ---------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        byte = zigzag & 0x7F
        zigzag >>= 7
        if zigzag:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def make_batch(batch_bytes: int, records: int, seed: int, timestamp_ms: int) -> bytes:
    """A RecordBatch v2 of ``records`` uncompressed records, about ``batch_bytes`` long.

    A minimal encoder for the benchmark's input (the broker never encodes records).
    """
    value_size = max((batch_bytes - 61) // records - 12, 1)
    body = bytearray()
    filler = bytes((seed + i) & 0xFF for i in range(256)) * (value_size // 256 + 1)
    for i in range(records):
        record = bytearray()
        record += b"\x00"  # attributes
        record += _varint(i)  # timestamp delta
        record += _varint(i)  # offset delta
        key = b"key-%d-%d" % (seed, i)
        record += _varint(len(key)) + key
        record += _varint(value_size) + filler[:value_size]
        record += _varint(0)  # headers
        body += _varint(len(record)) + record
    after_crc = struct.pack(
        ">hiqqqhii", 0, records - 1, timestamp_ms, timestamp_ms + records - 1, -1, -1, -1, records
    )
    crc = crc32c(bytes(body), crc32c(after_crc))
    length = 4 + 1 + 4 + len(after_crc) + len(body)
    return struct.pack(">qiibI", 0, length, -1, 2, crc) + after_crc + bytes(body)


# --- helpers ---------------------------------------------------------------------------------


def _progress(total: int, desc: str, enabled: bool) -> Any:
    from rilke.bench.common import progress_bar

    return progress_bar(
        total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, leave=False
    )


def _interleave(chunks: int, sides: dict[str, Callable[[int], int]], bar: Any) -> dict[str, float]:
    """Run each side's chunk function in turn for ``chunks`` rounds; seconds per side."""
    seconds = dict.fromkeys(sides, 0.0)
    for chunk in range(chunks):
        order = list(sides) if chunk % 2 == 0 else list(reversed(sides))
        for name in order:
            start = time.perf_counter()
            done = sides[name](chunk)
            seconds[name] += time.perf_counter() - start
            bar.update(done)
    return seconds


def _figures(total_bytes: int, batches: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "mb_per_s": round(total_bytes / MiB / seconds, 1),
        "batches_per_s": round(batches / seconds, 0),
    }


# --- phases ----------------------------------------------------------------------------------


def _append_phase(  # noqa: PLR0917
    work: Path,
    batches: list[bytes],
    total: int,
    fsync_every: int | None,
    progress: bool,
    batches_per_append: int = 1,
) -> dict[str, Any]:
    """Append ``total`` bytes of ``batches`` (each an append's input, holding
    ``batches_per_append`` batches) to a log and to a plain file, interleaved."""
    from rilke.storage import LogConfig, LogManager

    multi = batches_per_append > 1
    plain_path = work / ("plain-multi.bin" if multi else "plain.bin")
    data_dir = work / ("data-fsync" if fsync_every else "data-multi" if multi else "data")
    batch_size = len(batches[0])
    per_chunk = max(_CHUNK_BYTES // batch_size, 1)
    count = total // batch_size
    chunks = (count + per_chunk - 1) // per_chunk
    manager = LogManager(data_dir, _bench_config(LogConfig), now_ms=_now_ms())
    log = manager.create("bench", 0, _bench_config(LogConfig))
    plain = open(plain_path, "wb")  # noqa: SIM115 (closed below)
    fd = plain.fileno()
    state = {"plain_since": 0, "log_since": 0}
    n_distinct = len(batches)

    def plain_chunk(chunk: int) -> int:
        written = 0
        write = plain.write
        for i in range(chunk * per_chunk, min((chunk + 1) * per_chunk, count)):
            batch = batches[i % n_distinct]
            write(batch)
            written += len(batch)
            if fsync_every:
                state["plain_since"] += len(batch)
                if state["plain_since"] >= fsync_every:
                    plain.flush()
                    os.fdatasync(fd)
                    state["plain_since"] = 0
        plain.flush()
        return written

    def log_chunk(chunk: int) -> int:
        written = 0
        append = log.append
        now = _now_ms()
        for i in range(chunk * per_chunk, min((chunk + 1) * per_chunk, count)):
            batch = batches[i % n_distinct]
            append(batch, now_ms=now)
            written += len(batch)
            if fsync_every:
                state["log_since"] += len(batch)
                if state["log_since"] >= fsync_every:
                    log.flush()
                    state["log_since"] = 0
        return written

    label = "append+fsync" if fsync_every else "append"
    with _progress(2 * count * batch_size, label, progress) as bar:
        seconds = _interleave(chunks, {"plain": plain_chunk, "log": log_chunk}, bar)
    plain.close()
    segments = len(log.segments)
    written = log.size_bytes()
    manager.close()
    assert written == plain_path.stat().st_size, (written, plain_path.stat().st_size)
    result = {
        "bytes": written,
        "batches": count * batches_per_append,
        "batches_per_append": batches_per_append,
        "plain": _figures(written, count * batches_per_append, seconds["plain"]),
        "log": _figures(written, count * batches_per_append, seconds["log"]),
        "ratio": round(seconds["plain"] / seconds["log"], 3),
        "segments": segments,
    }
    if fsync_every or multi:
        shutil.rmtree(data_dir)
        plain_path.unlink()
    return result


def _read_phase(work: Path, progress: bool) -> dict[str, Any]:
    from rilke.storage import LogConfig, LogManager

    plain_path = work / "plain.bin"
    total = plain_path.stat().st_size
    manager = LogManager(work / "data", _bench_config(LogConfig), now_ms=_now_ms())
    log = manager.get("bench", 0)
    assert log is not None
    chunks = (total + _CHUNK_BYTES - 1) // _CHUNK_BYTES
    plain = open(plain_path, "rb", buffering=0)  # noqa: SIM115 (closed below)
    state = {"offset": log.log_start_offset, "log_bytes": 0, "batches": 0}

    def plain_chunk(chunk: int) -> int:
        done = 0
        read = plain.read
        while done < _CHUNK_BYTES:
            data = read(_READ_BYTES)
            if not data:
                break
            done += len(data)
        return done

    def log_chunk(chunk: int) -> int:
        done = 0
        read = log.read
        end = log.log_end_offset
        offset = state["offset"]
        while done < _CHUNK_BYTES and offset < end:
            result = read(offset, _READ_BYTES)
            done += len(result.records)
            offset = result.next_offset
        state["offset"] = offset
        state["log_bytes"] += done
        return done

    with _progress(2 * total, "read", progress) as bar:
        seconds = _interleave(chunks, {"plain": plain_chunk, "log": log_chunk}, bar)
    plain.close()
    manager.close()
    assert state["log_bytes"] == total, (state["log_bytes"], total)
    return {
        "bytes": total,
        "plain": _figures(total, 0, seconds["plain"]) | {"batches_per_s": None},
        "log": _figures(total, 0, seconds["log"]) | {"batches_per_s": None},
        "ratio": round(seconds["plain"] / seconds["log"], 3),
    }


def _open_clean(work: Path) -> dict[str, Any]:
    from rilke.storage import LogConfig, LogManager

    start = time.perf_counter()
    manager = LogManager(work / "data", _bench_config(LogConfig), now_ms=_now_ms())
    seconds = time.perf_counter() - start
    log = manager.get("bench", 0)
    assert log is not None and manager.had_clean_shutdown
    report = log.recovery
    result = {
        "seconds": round(seconds, 4),
        "log_bytes": log.size_bytes(),
        "segments": len(log.segments),
        "segments_scanned": report.segments_scanned,
        "bytes_scanned": report.bytes_scanned,
    }
    manager.close()
    return result


_CHILD = """
import sys, time
from pathlib import Path
from rilke.bench.storage import _crash_child
_crash_child(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
"""


def _crash_child(data_dir: Path, batch_bytes: int, extra_bytes: int) -> None:
    """Append to the bench log as a broker would, then wait to be SIGKILLed mid-append.

    Appends ``extra_bytes`` with a flush every 1 MiB and maintenance (which writes the
    recovery-point checkpoint) every 16 MiB, then says "ready" and keeps appending without
    flushing until it is killed.
    """
    from rilke.storage import LogConfig, LogManager

    manager = LogManager(data_dir, _bench_config(LogConfig), now_ms=_now_ms())
    log = manager.get("bench", 0)
    assert log is not None
    batches = [make_batch(batch_bytes, 16, seed, _now_ms()) for seed in range(16)]
    written = 0
    i = 0
    while written < extra_bytes:
        log.append(batches[i % 16], now_ms=_now_ms())
        i += 1
        written += batch_bytes
        if written % MiB < batch_bytes:
            log.flush()
        if written % (16 * MiB) < batch_bytes:
            log.checkpoint()  # the recovery point a restart scans from
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.append(batches[i % 16], now_ms=_now_ms())
        i += 1
        if i % 64 == 0:
            print("appending", flush=True)


def _open_after_kill(work: Path, batch_bytes: int, extra_bytes: int) -> dict[str, Any]:
    from rilke.storage import LogConfig, LogManager
    from rilke.storage.recovery import Checkpoint

    data_dir = work / "data"
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(data_dir), str(batch_bytes), str(extra_bytes)],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"the appending child did not start: {line!r}")
        for _ in range(4):  # let it append some unflushed batches
            proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    checkpoint = Checkpoint.read(data_dir / "bench-0")
    start = time.perf_counter()
    manager = LogManager(data_dir, _bench_config(LogConfig), now_ms=_now_ms())
    seconds = time.perf_counter() - start
    log = manager.get("bench", 0)
    assert log is not None and not manager.had_clean_shutdown
    report = log.recovery
    bases = [s.base_offset for s in log.segments]
    recovery_point = checkpoint.recovery_point if checkpoint else -1
    from_checkpoint = [b for b in bases if b >= _segment_of(bases, recovery_point)]
    result = {
        "seconds": round(seconds, 4),
        "log_bytes": log.size_bytes(),
        "segments": len(bases),
        "recovery_point": recovery_point,
        "log_end_offset": log.log_end_offset,
        "segments_scanned": report.segments_scanned,
        "segments_from_checkpoint_on": from_checkpoint,
        "bytes_scanned": report.bytes_scanned,
        "bytes_truncated": report.bytes_truncated,
        "only_past_checkpoint": set(report.segments_scanned) <= set(from_checkpoint),
    }
    manager.close()
    return result


def _segment_of(bases: list[int], offset: int) -> int:
    holder = bases[0]
    for base in bases:
        if base <= offset:
            holder = base
    return holder


# --- the command -----------------------------------------------------------------------------

_SEGMENT_BYTES = 128 * MiB


def _bench_config(log_config_cls: Any) -> Any:
    return log_config_cls(segment_bytes=_SEGMENT_BYTES, retention_ms=-1)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _batches(batch_bytes: int) -> Iterator[bytes]:
    now = _now_ms()
    for seed in range(64):
        yield make_batch(batch_bytes, 16, seed, now)


def run(args: argparse.Namespace) -> int:
    global _SEGMENT_BYTES
    _SEGMENT_BYTES = args.segment_mb * MiB
    total = args.size_mb * MiB
    fsync_total = (args.fsync_size_mb if args.fsync_size_mb is not None else args.size_mb) * MiB
    batch_bytes = args.batch_kb * 1024
    progress = not args.no_progress
    batches = list(_batches(batch_bytes))
    parent = args.dir
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rilke-bench-storage-", dir=parent))
    figures: dict[str, Any] = {
        "size_mb": args.size_mb,
        "batch_bytes": len(batches[0]),
        "segment_mb": args.segment_mb,
        "python": sys.version.split()[0],
    }
    try:
        print(
            f"rilke bench storage: {args.size_mb} MiB of {len(batches[0])}-byte batches in {work}"
        )
        figures["append_fsync_1mib"] = _append_phase(work, batches, fsync_total, MiB, progress)
        _report("append, fsync every 1 MiB", figures["append_fsync_1mib"])
        figures["append"] = _append_phase(work, batches, total, None, progress)
        _report("append, no fsync", figures["append"])
        n = args.batches_per_append
        if n > 1:
            units = [b"".join(batches[(i + j) % len(batches)] for j in range(n)) for i in range(64)]
            figures["append_multi"] = _append_phase(work, units, total, None, progress, n)
            _report(f"append {n} batches per call, no fsync", figures["append_multi"])
            per_batch = figures["append"]["plain"]["seconds"] / figures["append"]["bytes"]
            multi = figures["append_multi"]
            ratio = per_batch * multi["bytes"] / multi["log"]["seconds"]
            multi["ratio_vs_single_batch_plain"] = round(ratio, 3)
            print(
                f"  (the plain side above writes {n}-batch buffers too; against plain writes "
                f"of single batches, from the no-fsync run: ratio {ratio:.2f})"
            )
        figures["read"] = _read_phase(work, progress)
        _report("read whole log", figures["read"])
        figures["open_clean"] = _open_clean(work)
        print(
            f"open after clean shutdown: {figures['open_clean']['seconds'] * 1000:.1f} ms for "
            f"{figures['open_clean']['log_bytes'] / MiB:.0f} MiB in "
            f"{figures['open_clean']['segments']} segments; segments scanned: "
            f"{figures['open_clean']['segments_scanned']}"
        )
        extra = min(64 * MiB, max(total // 8, 4 * MiB))
        figures["open_after_kill"] = _open_after_kill(work, batch_bytes, extra)
        k = figures["open_after_kill"]
        print(
            f"open after kill -9: {k['seconds'] * 1000:.1f} ms for {k['log_bytes'] / MiB:.0f} MiB "
            f"in {k['segments']} segments; recovery point {k['recovery_point']}; scanned "
            f"segments {k['segments_scanned']} ({k['bytes_scanned'] / MiB:.1f} MiB), cut "
            f"{k['bytes_truncated']} bytes; only past the checkpoint: {k['only_past_checkpoint']}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


def _report(name: str, phase: dict[str, Any]) -> None:
    plain, log = phase["plain"], phase["log"]
    batches = (
        f", {log['batches_per_s']:.0f} vs {plain['batches_per_s']:.0f} batches/s"
        if log["batches_per_s"]
        else ""
    )
    print(
        f"{name}: log {log['mb_per_s']:.0f} MB/s, plain file {plain['mb_per_s']:.0f} MB/s"
        f"{batches}; ratio {phase['ratio']:.2f}"
    )
