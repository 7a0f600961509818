"""Compression of a batch's records section: none, gzip, LZ4 (Kafka's frame) and zstd.

The codec ids are the values of the batch attributes' low three bits, as in Kafka:
0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.

- gzip: an RFC 1952 stream (what Java's GZIPOutputStream writes); concatenated members are
  read as one stream, as GZIPInputStream does.
- LZ4: one LZ4 frame with independent 64 KiB blocks, no block or content checksum and no
  content size, byte for byte the frame Kafka's KafkaLZ4BlockOutputStream writes. Any valid
  LZ4 frame is accepted on read (kafka-python stores the content size, for example).
- zstd: a zstd frame, through the optional ``zstandard`` package. Without it, both directions
  raise :class:`UnsupportedCompressionError`.
- snappy: Kafka's (Java's xerial snappy-java) framing: a 16-byte header, then blocks of a
  big-endian int32 length and a raw snappy block of at most 32 KiB of input; through the
  optional ``cramjam`` package. A stream without the xerial header is read as one raw block,
  as snappy-java and kafka-python do.

Decompression is bounded: it stops as soon as the output would exceed ``max_bytes`` and raises
:class:`DecompressedTooLargeError`, so a small hostile batch cannot make us allocate gigabytes.
Corrupt or truncated compressed data raises :class:`CorruptRecordError`.

Sans-I/O; thread-safe (no shared state besides immutable module constants).
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Any

import lz4.frame

from rilke.errors import (
    CorruptRecordError,
    DecompressedTooLargeError,
    UnsupportedCompressionError,
)

_zstd_mod: Any
try:  # zstd is optional: `pip install zstandard` (the `zstd` extra) enables it.
    import zstandard as _zstd_mod
except ImportError:  # pragma: no cover - exercised only where zstandard is absent
    _zstd_mod = None

_cramjam: Any
try:  # snappy is optional: `pip install cramjam` (the `snappy` extra) enables it.
    import cramjam as _cramjam
except ImportError:  # pragma: no cover - exercised only where cramjam is absent
    _cramjam = None

DEFAULT_MAX_DECOMPRESSED_BYTES = 64 * 1024 * 1024
GZIP_LEVEL = 6  # zlib's default, and Kafka's (gzip level -1)
LZ4_LEVEL = 0  # lz4's default fast mode, as Kafka's default
ZSTD_LEVEL = 3  # zstd's default, as Kafka's

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # gzip header and trailer, not raw or zlib
_LZ4_BLOCK_SIZE = lz4.frame.BLOCKSIZE_MAX64KB

# snappy-java's stream header: marker -126, "SNAPPY", NUL, version 1, minimum compatible 1.
_XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK_SIZE = 32 * 1024  # snappy-java's default, what Kafka's producer writes
_BLOCK_LENGTH = struct.Struct(">i")


class Compression(enum.IntEnum):
    """Compression codec ids as stored in a batch's attributes (bits 0-2)."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def parse(cls, name: str | int) -> Compression:
        """The codec for a name ("none", "gzip", "lz4", "zstd", "snappy") or id.

        Raises :class:`UnsupportedCompressionError` for anything else.
        """
        if isinstance(name, int):
            try:
                return cls(name)
            except ValueError:
                raise UnsupportedCompressionError(f"unknown compression codec id {name}") from None
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise UnsupportedCompressionError(f"unknown compression codec {name!r}") from None


def is_supported(codec: int) -> bool:
    """Whether this build can compress and decompress ``codec``."""
    if codec in (Compression.NONE, Compression.GZIP, Compression.LZ4):
        return True
    if codec == Compression.ZSTD:
        return _zstd_mod is not None
    return codec == Compression.SNAPPY and _cramjam is not None


def supported_codecs() -> tuple[Compression, ...]:
    """Every codec this build supports, in id order."""
    return tuple(c for c in Compression if is_supported(c))


def _unsupported(codec: int) -> UnsupportedCompressionError:
    if codec == Compression.ZSTD:
        return UnsupportedCompressionError(
            "zstd compression needs the 'zstandard' package (pip install zstandard)"
        )
    if codec == Compression.SNAPPY:
        return UnsupportedCompressionError(
            "snappy compression needs the 'cramjam' package (pip install cramjam)"
        )
    return UnsupportedCompressionError(f"unknown compression codec id {codec}")


def compress(codec: int, data: bytes | bytearray | memoryview) -> bytes:
    """Compress ``data`` (a batch's records section) with ``codec``.

    Returns ``bytes(data)`` for :attr:`Compression.NONE`. Raises
    :class:`UnsupportedCompressionError` for a codec this build cannot write.
    """
    if codec == Compression.NONE:
        return bytes(data)
    if codec == Compression.LZ4:
        out: bytes = lz4.frame.compress(
            data,
            compression_level=LZ4_LEVEL,
            block_size=_LZ4_BLOCK_SIZE,
            block_linked=False,
            content_checksum=False,
            block_checksum=False,
            store_size=False,
        )
        return out
    if codec == Compression.GZIP:
        comp = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        return comp.compress(data) + comp.flush()
    if codec == Compression.ZSTD and _zstd_mod is not None:
        zout: bytes = _zstd_mod.ZstdCompressor(level=ZSTD_LEVEL).compress(data)
        return zout
    if codec == Compression.SNAPPY and _cramjam is not None:
        return _snappy_compress(data)
    raise _unsupported(codec)


def decompress(
    codec: int,
    data: bytes | bytearray | memoryview,
    max_bytes: int = DEFAULT_MAX_DECOMPRESSED_BYTES,
) -> bytes:
    """Decompress a records section compressed with ``codec``, producing at most ``max_bytes``.

    Raises :class:`DecompressedTooLargeError` if the output would exceed ``max_bytes`` (the
    decompressor stops there; it never inflates the whole thing first),
    :class:`CorruptRecordError` if the data is not a whole, valid stream of that codec (trailing
    bytes after the stream included), and :class:`UnsupportedCompressionError` for a codec this
    build cannot read.
    """
    if max_bytes < 0:
        raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
    if codec == Compression.NONE:
        if len(data) > max_bytes:
            raise _too_large(max_bytes)
        return bytes(data)
    if codec == Compression.LZ4:
        return _lz4_decompress(data, max_bytes)
    if codec == Compression.GZIP:
        return _gzip_decompress(data, max_bytes)
    if codec == Compression.ZSTD and _zstd_mod is not None:
        return _zstd_decompress(data, max_bytes)
    if codec == Compression.SNAPPY and _cramjam is not None:
        return _snappy_decompress(data, max_bytes)
    raise _unsupported(codec)


def _too_large(max_bytes: int) -> DecompressedTooLargeError:
    return DecompressedTooLargeError(
        f"batch decompresses to more than the maximum of {max_bytes} bytes"
    )


def _lz4_decompress(data: bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    dec = lz4.frame.LZ4FrameDecompressor()
    try:
        # Ask for one byte more than allowed: getting it proves the output is too large.
        out: bytes = dec.decompress(data, max_length=max_bytes + 1)
    except RuntimeError as exc:  # lz4 reports every frame error as RuntimeError
        raise CorruptRecordError(f"corrupt LZ4 data: {exc}") from None
    if len(out) > max_bytes:
        raise _too_large(max_bytes)
    if not dec.eof:
        raise CorruptRecordError("truncated LZ4 frame")
    if dec.unused_data:
        raise CorruptRecordError(f"{len(dec.unused_data)} bytes after the LZ4 frame")
    return out


def _gzip_decompress(data: bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    produced = 0
    rest: bytes | bytearray | memoryview = data
    try:
        while True:
            dec = zlib.decompressobj(_GZIP_WBITS)
            chunk = dec.decompress(rest, max_bytes - produced + 1)
            produced += len(chunk)
            if produced > max_bytes:
                raise _too_large(max_bytes)
            parts.append(chunk)
            if not dec.eof:
                # Either the limit stopped it (then unconsumed_tail holds input) or the
                # input ended before the stream did.
                if dec.unconsumed_tail:
                    raise _too_large(max_bytes)
                raise CorruptRecordError("truncated gzip stream")
            rest = dec.unused_data
            if not rest:
                break
    except zlib.error as exc:
        raise CorruptRecordError(f"corrupt gzip data: {exc}") from None
    return b"".join(parts)


def _zstd_decompress(data: bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    # zstandard's decompressobj has no output limit, so feed it the input in small pieces and
    # stop once the output passes the limit. One zstd block inflates at most ~32768 times
    # (a 4-byte RLE block of 128 KiB), so a piece of n bytes yields at most ~32768 * n bytes:
    # the piece size keeps that overshoot within about a quarter of the limit.
    piece = max(64, min(64 * 1024, max_bytes // (4 * 32768)))
    view = memoryview(data).cast("B")
    parts: list[bytes] = []
    produced = 0
    pos = 0
    end = len(view)
    dctx = _zstd_mod.ZstdDecompressor()
    try:
        dobj = dctx.decompressobj()
        while pos < end:
            chunk = dobj.decompress(view[pos : pos + piece])
            pos = min(pos + piece, end)
            produced += len(chunk)
            if produced > max_bytes:
                raise _too_large(max_bytes)
            parts.append(chunk)
            if dobj.eof:
                # One frame ended: anything left over is the start of the next frame.
                rest = dobj.unused_data
                pos -= len(rest)
                dobj = dctx.decompressobj()
                if pos >= end:
                    break
        else:
            if not dobj.eof:
                raise CorruptRecordError("truncated zstd frame")
    except _zstd_mod.ZstdError as exc:
        raise CorruptRecordError(f"corrupt zstd data: {exc}") from None
    return b"".join(parts)


def _snappy_compress(data: bytes | bytearray | memoryview) -> bytes:
    view = memoryview(data).cast("B")
    parts: list[bytes] = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK_SIZE):
        block = bytes(_cramjam.snappy.compress_raw(view[start : start + _XERIAL_BLOCK_SIZE]))
        parts.append(_BLOCK_LENGTH.pack(len(block)))
        parts.append(block)
    return b"".join(parts)


def _snappy_block(block: bytes | memoryview, budget: int, max_bytes: int) -> bytes:
    # A raw snappy block starts with its uncompressed length: check it before inflating.
    size = int(_cramjam.snappy.decompress_raw_len(block))
    if size > budget:
        raise _too_large(max_bytes)
    out = bytes(_cramjam.snappy.decompress_raw(block))
    if len(out) != size:  # pragma: no cover - cramjam enforces the declared length
        raise CorruptRecordError("snappy block length disagrees with its header")
    return out


def _snappy_decompress(data: bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    view = memoryview(data).cast("B")
    try:
        if bytes(view[:8]) != _XERIAL_MAGIC:
            return _snappy_block(view, max_bytes, max_bytes)
        if len(view) < len(_XERIAL_HEADER):
            raise CorruptRecordError("truncated snappy stream header")
        parts: list[bytes] = []
        produced = 0
        pos = len(_XERIAL_HEADER)
        end = len(view)
        while pos < end:
            if end - pos < 4:
                raise CorruptRecordError("truncated snappy block length")
            (length,) = _BLOCK_LENGTH.unpack_from(view, pos)
            pos += 4
            if length < 0 or length > end - pos:
                raise CorruptRecordError(f"snappy block length {length} does not fit the data")
            chunk = _snappy_block(view[pos : pos + length], max_bytes - produced, max_bytes)
            produced += len(chunk)
            parts.append(chunk)
            pos += length
    except _cramjam.DecompressionError as exc:
        raise CorruptRecordError(f"corrupt snappy data: {exc}") from None
    return b"".join(parts)
