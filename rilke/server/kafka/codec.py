"""The sans-I/O Kafka codec: frames in, typed requests out; responses in, frames out.

:class:`FrameBuffer` splits a byte stream into frames (an int32 length, then that many bytes)
and refuses a frame over its maximum before buffering it. :func:`decode_request` parses a
frame's request header (v1: api key, version, correlation id, client id; for the flexible
ApiVersions v3+ only the first fields are read, see KIP-511) and, for a version this listener
serves, its body. :func:`encode_response` builds a whole response frame (response header v0:
the correlation id only). Nothing here does I/O, reads a clock or logs.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rilke.server.kafka.errors import MalformedMessageError
from rilke.server.kafka.schemas import API_VERSIONS, request_schema, response_schema
from rilke.server.kafka.types import Array, FieldType, Message, Prim, Schema
from rilke.server.kafka.wire import Reader, Writer

_LENGTH = struct.Struct(">i")
HEADER_MIN_BYTES = 8  # api_key, api_version, correlation_id


class FrameTooLargeError(MalformedMessageError):
    """A frame's length prefix is over the listener's maximum (or negative)."""


@dataclass(frozen=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(frozen=True)
class Request:
    """A request: its header, and its body when the (api_key, version) is served (``None``
    otherwise: the caller answers or closes as Kafka would)."""

    header: RequestHeader
    body: Message | None


class FrameBuffer:
    """Accumulates received bytes and hands out whole frames (without their length).

    ``max_frame_bytes`` bounds one frame: a larger length prefix raises FrameTooLargeError at
    once, before its bytes are buffered. Not thread-safe.
    """

    def __init__(self, max_frame_bytes: int) -> None:
        assert max_frame_bytes > 0
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | None:
        """The next whole frame, or None until more data arrives. Raises FrameTooLargeError."""
        if len(self._buf) < 4:
            return None
        (length,) = _LENGTH.unpack_from(self._buf, 0)
        check_frame_length(length, self.max_frame_bytes)
        if len(self._buf) < 4 + length:
            return None
        frame = bytes(self._buf[4 : 4 + length])
        del self._buf[: 4 + length]
        return frame


def check_frame_length(length: int, max_frame_bytes: int) -> None:
    """Raise FrameTooLargeError for a frame length outside [HEADER_MIN_BYTES, max]."""
    if length > max_frame_bytes:
        raise FrameTooLargeError(
            f"frame of {length} bytes is over the maximum of {max_frame_bytes} "
            "(kafka_max_frame_bytes)"
        )
    if length < HEADER_MIN_BYTES:
        raise FrameTooLargeError(f"frame length {length} is too short for a request header")


def frame_length(prefix: bytes) -> int:
    """The length in a 4-byte frame prefix."""
    (length,) = _LENGTH.unpack(prefix)
    return int(length)


def decode_request_header(frame: bytes) -> tuple[RequestHeader, Reader]:
    """The request header of a frame, and a reader at the body. Raises MalformedMessageError."""
    r = Reader(frame)
    api_key = r.int16("request header api_key")
    api_version = r.int16("request header api_version")
    correlation_id = r.int32("request header correlation_id")
    client_id: str | None = None
    if not (api_key == API_VERSIONS and api_version >= 3):
        client_id = r.nullable_string("request header client_id")
    return RequestHeader(api_key, api_version, correlation_id, client_id), r


def decode_request(frame: bytes) -> Request:
    """Parse a request frame. A served (api_key, version) is decoded whole: trailing bytes
    or a short body raise MalformedMessageError. An unserved one comes back with body None."""
    header, r = decode_request_header(frame)
    schema = request_schema(header.api_key, header.api_version)
    if schema is None:
        return Request(header, None)
    body = read_struct(r, schema, "")
    if r.remaining:
        raise MalformedMessageError(f"{r.remaining} bytes left over after the request body")
    return Request(header, body)


def encode_request(
    api_key: int, api_version: int, correlation_id: int, client_id: str | None, body: Message
) -> bytes:
    """A whole request frame (as clients send; used by tests and tools)."""
    w = Writer()
    w.int16(api_key)
    w.int16(api_version)
    w.int32(correlation_id)
    w.nullable_string(client_id)
    schema = request_schema(api_key, api_version)
    assert schema is not None, (api_key, api_version)
    write_struct(w, schema, body)
    return w.getvalue(length_prefix=True)


def encode_response(correlation_id: int, api_key: int, api_version: int, body: Message) -> bytes:
    """A whole response frame: length, correlation id (response header v0), body."""
    w = Writer()
    w.int32(correlation_id)
    write_struct(w, response_schema(api_key, api_version), body)
    return w.getvalue(length_prefix=True)


def decode_response(api_key: int, api_version: int, frame: bytes) -> tuple[int, Message]:
    """(correlation id, body) of a response frame without its length (for tests and tools)."""
    r = Reader(frame)
    correlation_id = r.int32("response correlation_id")
    body = read_struct(r, response_schema(api_key, api_version), "")
    if r.remaining:
        raise MalformedMessageError(f"{r.remaining} bytes left over after the response body")
    return correlation_id, body


# --- the generic schema walk -----------------------------------------------------------------


def read_struct(r: Reader, schema: Schema, path: str) -> Message:
    out: Message = {}
    for name, kind in schema:
        out[name] = _read(r, kind, f"{path}{name}")
    return out


def _read(r: Reader, kind: FieldType, what: str) -> Any:
    if isinstance(kind, Prim):
        return _read_prim(r, kind, what)
    if isinstance(kind, Array):
        n = r.array_count(what, kind.nullable)
        if n == -1:
            return None
        return [_read(r, kind.of, f"{what}[{i}]") for i in range(n)]
    return read_struct(r, kind, what + ".")


def _read_prim(r: Reader, kind: Prim, what: str) -> Any:
    if kind is Prim.INT8:
        return r.int8(what)
    if kind is Prim.INT16:
        return r.int16(what)
    if kind is Prim.INT32:
        return r.int32(what)
    if kind is Prim.INT64:
        return r.int64(what)
    if kind is Prim.BOOL:
        return r.boolean(what)
    if kind is Prim.STRING:
        return r.string(what)
    if kind is Prim.NULLABLE_STRING:
        return r.nullable_string(what)
    if kind is Prim.BYTES:
        return r.bytes_(what)
    return r.nullable_bytes(what)  # NULLABLE_BYTES, RECORDS


def write_struct(w: Writer, schema: Schema, msg: Message) -> None:
    for name, kind in schema:
        if name not in msg:
            raise KeyError(f"message lacks field {name!r}")
        _write(w, kind, msg[name])


def _write(w: Writer, kind: FieldType, value: Any) -> None:
    if isinstance(kind, Prim):
        _write_prim(w, kind, value)
    elif isinstance(kind, Array):
        if value is None:
            assert kind.nullable, "null for a non-nullable array"
            w.int32(-1)
            return
        items: Sequence[Any] = value
        w.int32(len(items))
        for item in items:
            _write(w, kind.of, item)
    else:
        write_struct(w, kind, value)


def _write_prim(w: Writer, kind: Prim, value: Any) -> None:
    if kind is Prim.INT8:
        w.int8(value)
    elif kind is Prim.INT16:
        w.int16(value)
    elif kind is Prim.INT32:
        w.int32(value)
    elif kind is Prim.INT64:
        w.int64(value)
    elif kind is Prim.BOOL:
        w.boolean(value)
    elif kind is Prim.STRING:
        w.string(value)
    elif kind is Prim.NULLABLE_STRING:
        w.nullable_string(value)
    elif kind is Prim.BYTES:
        w.bytes_(value)
    else:
        w.nullable_bytes(value)
