"""The optional accelerator (rilke/records/_hot.py compiled by mypyc): chosen only when built
and current, forced off by RILKE_PURE_PYTHON=1, and decoding exactly as the source does."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rilke.errors import CorruptRecordError
from rilke.records import BatchBuilder, Compression, accel, check_batch
from rilke.records.header import HEADER_SIZE


def test_the_choice_needs_a_current_build_and_no_pure_flag(tmp_path: Path) -> None:
    source = tmp_path / "_hot.py"
    built = tmp_path / "_hot.so"
    source.write_text("")
    built.write_text("")
    os.utime(source, (1000, 1000))
    os.utime(built, (2000, 2000))
    assert accel.decide(source, built, force_pure=False) == "compiled"
    assert accel.decide(source, built, force_pure=True) == "pure"
    assert accel.decide(source, None, force_pure=False) == "pure"
    os.utime(source, (3000, 3000))  # the source changed after the build
    assert accel.decide(source, built, force_pure=False) == "stale"


def test_rilke_pure_python_forces_the_source() -> None:
    code = "from rilke.records import accel; print(accel.COMPILED, accel.hot.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, accel.PURE_ENV: "1"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["False", str(Path(accel.__file__).with_name("_hot.py"))]


def _random_batches(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        b = BatchBuilder(base_offset=rng.randrange(1 << 40))
        ts = rng.randrange(1 << 41)
        for _ in range(rng.randrange(1, 40)):
            key = None if rng.random() < 0.3 else rng.randbytes(rng.randrange(0, 300))
            value = None if rng.random() < 0.1 else rng.randbytes(rng.choice([0, 5, 100, 20000]))
            headers = [(f"h{i}", rng.randbytes(rng.randrange(3))) for i in range(rng.randrange(3))]
            b.append(key, value, headers, ts + rng.randrange(-5, 100_000))
        out.append(b.build())
    return out


@pytest.mark.skipif(not accel.COMPILED, reason="accelerator not built (scripts/build_accel.sh)")
def test_the_compiled_loops_decode_and_fail_as_the_source_does() -> None:
    source = accel.load_source()
    rng = random.Random(14)
    for data in _random_batches(rng, 60):
        header = check_batch(data)
        args = (header, data, HEADER_SIZE, len(data))
        assert accel.hot.decode_columns(*args) == source.decode_columns(*args)
        # Cut or corrupt the records part: both raise the same kind of error, or both decode.
        for _ in range(5):
            broken = bytearray(data)
            broken[rng.randrange(HEADER_SIZE, len(data))] ^= 1 << rng.randrange(8)
            cut = rng.randrange(HEADER_SIZE, len(data) + 1)
            for buf, end in ((bytes(broken), len(data)), (data, cut)):
                results = []
                for module in (accel.hot, source):
                    try:
                        results.append(module.decode_columns(header, buf, HEADER_SIZE, end))
                    except (CorruptRecordError, IndexError, ValueError) as exc:
                        results.append(type(exc))
                assert results[0] == results[1]


@pytest.mark.skipif(not accel.COMPILED, reason="accelerator not built (scripts/build_accel.sh)")
def test_the_compiled_encoder_writes_what_the_source_writes() -> None:
    source = accel.load_source()
    rng = random.Random(15)
    for _ in range(40):
        n = rng.randrange(1, 200)
        keys = [None if rng.random() < 0.3 else rng.randbytes(rng.randrange(50)) for _ in range(n)]
        values = [
            None if rng.random() < 0.1 else rng.randbytes(rng.randrange(9000)) for _ in range(n)
        ]
        args = (
            rng.choice([keys, None]),
            values,
            rng.randrange(n),
            n,
            rng.randrange(10_000),
            rng.choice([b"\x00", b"\x80\x01"]),
            rng.randrange(1, 100_000),
        )
        assert accel.hot.encode_records(*args) == source.encode_records(*args)
    for module in (accel.hot, source):
        with pytest.raises(TypeError, match="value must be bytes"):
            module.encode_records(None, [b"a", "b"], 0, 2, 0, b"\x00", 1 << 20)


def test_the_reader_uses_the_chosen_loops() -> None:
    b = BatchBuilder(compression=Compression.NONE)
    b.append(b"k", b"v", None, 5)
    from rilke.records import read_batch

    assert read_batch(b.build()).columns().keys == [b"k"]
    assert sys.modules["rilke.records._hot"] is accel.hot
