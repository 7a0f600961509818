"""Compression codecs: round trips, Kafka's LZ4 frame, bounded decompression, corruption."""

import gzip
import os

import lz4.frame
import pytest

from rilke.errors import (
    CorruptRecordError,
    DecompressedTooLargeError,
    RecordTooLargeError,
    UnsupportedCompressionError,
)
from rilke.records import compression
from rilke.records.compression import (
    Compression,
    compress,
    decompress,
    is_supported,
    supported_codecs,
)

CODECS = [c for c in supported_codecs() if c != Compression.NONE]
DATA = os.urandom(3000) + b"abcdefgh" * 20000  # 163000 bytes, compressible


def test_supported_codecs() -> None:
    assert Compression.NONE in supported_codecs()
    assert Compression.GZIP in supported_codecs()
    assert Compression.LZ4 in supported_codecs()
    assert is_supported(Compression.SNAPPY) == (compression._cramjam is not None)
    assert not is_supported(5)
    assert not is_supported(7)


@pytest.mark.parametrize("codec", list(supported_codecs()))
@pytest.mark.parametrize("data", [b"", b"x", DATA], ids=["empty", "one", "big"])
def test_round_trip(codec: Compression, data: bytes) -> None:
    packed = compress(codec, data)
    assert decompress(codec, packed) == data
    assert decompress(codec, bytearray(packed)) == data
    assert decompress(codec, memoryview(packed)) == data


def test_lz4_frame_is_kafkas() -> None:
    packed = compress(Compression.LZ4, DATA)
    # Magic, then FLG 0x60 (version 1, independent blocks, no checksums, no content size)
    # and BD 0x40 (64 KiB blocks): what KafkaLZ4BlockOutputStream writes.
    assert packed[:4] == b"\x04\x22\x4d\x18"
    assert packed[4] == 0x60
    assert packed[5] == 0x40
    info = lz4.frame.get_frame_info(packed)
    assert not info["block_linked"]
    assert not info["content_checksum"]


def test_lz4_reads_other_frames() -> None:
    # kafka-python stores the content size and uses default block sizes.
    packed = lz4.frame.compress(DATA, block_linked=False)
    assert decompress(Compression.LZ4, packed) == DATA
    packed = lz4.frame.compress(DATA, content_checksum=True, block_linked=True)
    assert decompress(Compression.LZ4, packed) == DATA


def test_gzip_reads_concatenated_members() -> None:
    packed = gzip.compress(b"one") + gzip.compress(b"two")
    assert decompress(Compression.GZIP, packed) == b"onetwo"
    assert gzip.decompress(compress(Compression.GZIP, DATA)) == DATA


@pytest.mark.parametrize("codec", list(supported_codecs()))
def test_limit_is_exact(codec: Compression) -> None:
    packed = compress(codec, DATA)
    assert decompress(codec, packed, len(DATA)) == DATA
    for limit in (0, 1, len(DATA) - 1):
        with pytest.raises(DecompressedTooLargeError):
            decompress(codec, packed, limit)


@pytest.mark.parametrize("codec", CODECS)
def test_decompression_bomb_is_bounded(codec: Compression) -> None:
    bomb = compress(codec, bytes(64 * 1024 * 1024))
    assert len(bomb) < 4 * 1024 * 1024  # snappy inflates only ~21x; the others far more
    with pytest.raises(DecompressedTooLargeError) as info:
        decompress(codec, bomb, 1024 * 1024)
    assert isinstance(info.value, RecordTooLargeError)


@pytest.mark.parametrize("codec", CODECS)
def test_every_truncation_is_corrupt(codec: Compression) -> None:
    data = DATA[:40000] + DATA[-40000:]
    packed = compress(codec, data)
    for cut in range(len(packed)):
        try:
            out = decompress(codec, packed[:cut])
        except CorruptRecordError:
            continue
        # snappy's xerial framing has no end marker: a stream cut between blocks is a valid,
        # shorter stream (the batch CRC catches that cut, not the codec).
        assert codec == Compression.SNAPPY, f"cut at {cut} accepted"
        assert cut == 16 or packed[:cut] == compress(codec, out)


@pytest.mark.parametrize("codec", CODECS)
def test_trailing_garbage_is_corrupt(codec: Compression) -> None:
    packed = compress(codec, b"hello" * 100)
    with pytest.raises(CorruptRecordError):
        decompress(codec, packed + b"\x00\x01")


@pytest.mark.parametrize("codec", CODECS)
def test_garbage_is_corrupt(codec: Compression) -> None:
    with pytest.raises(CorruptRecordError):
        decompress(codec, b"this is not compressed at all")


def test_unsupported_codecs() -> None:
    for codec in (5, 7):
        with pytest.raises(UnsupportedCompressionError):
            compress(codec, b"x")
        with pytest.raises(UnsupportedCompressionError):
            decompress(codec, b"x")


def test_zstd_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_zstd_mod", None)
    assert not is_supported(Compression.ZSTD)
    with pytest.raises(UnsupportedCompressionError, match="zstandard"):
        compress(Compression.ZSTD, b"x")
    with pytest.raises(UnsupportedCompressionError, match="zstandard"):
        decompress(Compression.ZSTD, b"x")


def test_parse() -> None:
    assert Compression.parse("lz4") is Compression.LZ4
    assert Compression.parse(" GZIP ") is Compression.GZIP
    assert Compression.parse(4) is Compression.ZSTD
    with pytest.raises(UnsupportedCompressionError):
        Compression.parse("brotli")
    with pytest.raises(UnsupportedCompressionError):
        Compression.parse(9)


def test_snappy_absent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compression, "_cramjam", None)
    assert not is_supported(Compression.SNAPPY)
    with pytest.raises(UnsupportedCompressionError, match="cramjam"):
        compress(Compression.SNAPPY, b"x")
    with pytest.raises(UnsupportedCompressionError, match="cramjam"):
        decompress(Compression.SNAPPY, b"x")


@pytest.mark.skipif(not is_supported(Compression.SNAPPY), reason="needs cramjam")
def test_snappy_is_xerial_framed() -> None:
    packed = compress(Compression.SNAPPY, DATA)
    assert packed[:16] == b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01"
    # 163000 bytes in 32 KiB blocks: five blocks of a 4-byte length and a raw snappy block.
    pos, blocks = 16, 0
    while pos < len(packed):
        pos += 4 + int.from_bytes(packed[pos : pos + 4], "big")
        blocks += 1
    assert (pos, blocks) == (len(packed), 5)
    # A stream without the xerial header is one raw block.
    import cramjam

    assert decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(b"raw"))) == b"raw"
    assert decompress(Compression.SNAPPY, packed[:16]) == b""
    for bad in (packed[:18], packed[:16] + b"\x7f\xff\xff\xff", packed[:16] + b"\xff\xff\xff\xff"):
        with pytest.raises(CorruptRecordError):
            decompress(Compression.SNAPPY, bad)
