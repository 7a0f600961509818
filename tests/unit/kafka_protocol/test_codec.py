"""The codec: every served message of every version round-trips, its layout is the one
Kafka's JSON definitions give, and bytes built from those definitions decode; framing and
headers refuse what does not parse."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from rilke.server.kafka import codec, schemas
from rilke.server.kafka.codec import FrameBuffer, FrameTooLargeError
from rilke.server.kafka.errors import MalformedMessageError
from rilke.server.kafka.types import Array, FieldType, Prim, Schema
from rilke.server.kafka.wire import Writer
from tests.unit.kafka_protocol import json_defs

SERVED_VERSIONS = sorted(schemas.SCHEMAS)


def _value(kind: FieldType, rng: random.Random, depth: int = 0) -> Any:
    if isinstance(kind, Prim):
        if kind is Prim.INT8:
            return rng.randint(-128, 127)
        if kind is Prim.INT16:
            return rng.randint(-(1 << 15), (1 << 15) - 1)
        if kind is Prim.INT32:
            return rng.randint(-(1 << 31), (1 << 31) - 1)
        if kind is Prim.INT64:
            return rng.randint(-(1 << 63), (1 << 63) - 1)
        if kind is Prim.BOOL:
            return rng.random() < 0.5
        if kind is Prim.STRING:
            return rng.choice(["", "topic-ä", "x" * rng.randint(1, 40)])
        if kind is Prim.NULLABLE_STRING:
            return rng.choice([None, "", "kafka-python-3.0.12"])
        if kind is Prim.BYTES:
            return rng.randbytes(rng.randint(0, 30))
        return rng.choice([None, b"", rng.randbytes(rng.randint(1, 70))])
    if isinstance(kind, Array):
        if kind.nullable and rng.random() < 0.3:
            return None
        return [
            _value(kind.of, rng, depth + 1) for _ in range(rng.randint(0, 3 if depth < 2 else 1))
        ]
    return {name: _value(k, rng, depth + 1) for name, k in kind}


def _message(schema: Schema, seed: int) -> dict[str, Any]:
    rng = random.Random(seed)
    return {name: _value(kind, rng) for name, kind in schema}


@pytest.mark.parametrize(("api_key", "version"), SERVED_VERSIONS)
def test_every_served_request_round_trips(api_key: int, version: int) -> None:
    schema = schemas.request_schema(api_key, version)
    assert schema is not None
    for seed in range(20):
        body = _message(schema, seed)
        frame = codec.encode_request(api_key, version, seed, "client-1", body)
        buf = FrameBuffer(1 << 20)
        buf.receive_data(frame)
        got = codec.decode_request(buf.next_frame() or b"")
        assert got.header == codec.RequestHeader(api_key, version, seed, "client-1")
        assert got.body == body


@pytest.mark.parametrize(("api_key", "version"), SERVED_VERSIONS)
def test_every_served_response_round_trips(api_key: int, version: int) -> None:
    schema = schemas.response_schema(api_key, version)
    for seed in range(20):
        body = _message(schema, seed)
        frame = codec.encode_response(seed, api_key, version, body)
        (length,) = struct.unpack_from(">i", frame)
        assert length == len(frame) - 4
        assert codec.decode_response(api_key, version, frame[4:]) == (seed, body)


_DEFINITION_NAMES = dict(schemas.API_NAMES)


@pytest.mark.parametrize(("api_key", "version"), SERVED_VERSIONS)
@pytest.mark.parametrize("kind", ["Request", "Response"])
def test_layout_is_kafkas_json_definition(api_key: int, version: int, kind: str) -> None:
    definition = json_defs.load(_DEFINITION_NAMES[api_key] + kind)
    assert definition["apiKey"] == api_key
    assert json_defs.in_range(definition["validVersions"], version), (
        "a served version Kafka no longer defines"
    )
    ours = (
        schemas.request_schema(api_key, version)
        if kind == "Request"
        else schemas.response_schema(api_key, version)
    )
    assert ours == json_defs.schema_of(definition, version)


def _write_by_definition(
    w: Writer, fields: list[dict[str, Any]], version: int, rng: random.Random
) -> dict[str, Any]:
    """Encode random values field by field straight from the JSON definition (independent of
    the listener's schema walk); return what was written, keyed as the codec names fields."""
    out: dict[str, Any] = {}
    for f in fields:
        if not json_defs.in_range(f.get("versions"), version):
            continue
        name = json_defs.snake(f["name"])
        nullable = json_defs.in_range(f.get("nullableVersions"), version)
        kind: str = f["type"]
        if kind.startswith("[]"):
            if nullable and rng.random() < 0.3:
                w.int32(-1)
                out[name] = None
                continue
            n = rng.randint(0, 2)
            w.int32(n)
            items: list[Any] = []
            for _ in range(n):
                if kind[2:] in ("int32", "string", "int64"):
                    items.append(_write_prim(w, kind[2:], False, rng))
                else:
                    items.append(_write_by_definition(w, f["fields"], version, rng))
            out[name] = items
        else:
            out[name] = _write_prim(w, kind, nullable, rng)
    return out


def _write_prim(w: Writer, kind: str, nullable: bool, rng: random.Random) -> Any:
    if kind == "int8":
        v: Any = rng.randint(-5, 5)
        w.buf += struct.pack(">b", v)
    elif kind == "int16":
        v = rng.randint(-300, 300)
        w.buf += struct.pack(">h", v)
    elif kind == "int32":
        v = rng.randint(-(1 << 31), (1 << 31) - 1)
        w.buf += struct.pack(">i", v)
    elif kind == "int64":
        v = rng.randint(-(1 << 63), (1 << 63) - 1)
        w.buf += struct.pack(">q", v)
    elif kind == "bool":
        v = rng.random() < 0.5
        w.buf.append(int(v))
    elif kind == "string":
        v = None if nullable and rng.random() < 0.3 else rng.choice(["", "grp", "t" * 9])
        raw = b"" if v is None else v.encode()
        w.buf += struct.pack(">h", -1 if v is None else len(raw)) + raw
    else:  # bytes, records
        v = None if (nullable or kind == "records") and rng.random() < 0.3 else rng.randbytes(5)
        w.buf += struct.pack(">i", -1 if v is None else len(v)) + (v or b"")
    return v


@pytest.mark.parametrize(("api_key", "version"), SERVED_VERSIONS)
def test_decodes_request_bytes_built_from_kafkas_definition(api_key: int, version: int) -> None:
    definition = json_defs.load(_DEFINITION_NAMES[api_key] + "Request")
    for seed in range(10):
        w = Writer()
        w.int16(api_key)
        w.int16(version)
        w.int32(seed)
        w.nullable_string("rdkafka")
        expected = _write_by_definition(w, definition["fields"], version, random.Random(seed))
        got = codec.decode_request(w.getvalue())
        assert got.body == expected


# --- framing and headers ---------------------------------------------------------------------


def test_frames_split_across_reads_and_joined_in_one() -> None:
    one = codec.encode_request(18, 0, 1, "a", {})
    two = codec.encode_request(18, 2, 2, None, {})
    buf = FrameBuffer(100)
    data = one + two
    frames = []
    for i in range(len(data)):
        buf.receive_data(data[i : i + 1])
        frame = buf.next_frame()
        if frame is not None:
            frames.append(codec.decode_request(frame).header.correlation_id)
    assert frames == [1, 2]
    assert buf.buffered_bytes == 0


def test_oversized_frame_refused_before_its_bytes_arrive() -> None:
    buf = FrameBuffer(1000)
    buf.receive_data(struct.pack(">i", 1001))
    with pytest.raises(FrameTooLargeError, match="1001 bytes is over the maximum of 1000"):
        buf.next_frame()


@pytest.mark.parametrize("length", [-1, 0, 7])
def test_frame_too_short_for_a_header_refused(length: int) -> None:
    buf = FrameBuffer(1000)
    buf.receive_data(struct.pack(">i", length))
    with pytest.raises(FrameTooLargeError):
        buf.next_frame()


def test_unserved_version_has_no_body_and_flexible_api_versions_reads_only_the_header() -> None:
    frame = struct.pack(">hhi", 0, 9, 5) + b"\x00\x01x\x00anything"
    assert codec.decode_request(frame) == codec.Request(codec.RequestHeader(0, 9, 5, "x"), None)
    frame = struct.pack(">hhi", 18, 3, 6) + b"\x00\x09librdkafka\x00"
    req = codec.decode_request(frame)
    assert req.header == codec.RequestHeader(18, 3, 6, None)
    assert req.body is None


def test_truncated_and_overlong_bodies_refused() -> None:
    frame = codec.encode_request(
        3, 4, 1, "c", {"topics": [{"name": "t"}], "allow_auto_topic_creation": True}
    )[4:]
    for cut in range(8, len(frame)):
        with pytest.raises(MalformedMessageError):
            codec.decode_request(frame[:cut])
    with pytest.raises(MalformedMessageError, match="1 bytes left over"):
        codec.decode_request(frame + b"\x00")


def test_huge_array_count_refused_without_allocating() -> None:
    frame = struct.pack(">hhih", 3, 4, 1, -1) + struct.pack(">i", 1 << 30) + b"\x01"
    with pytest.raises(MalformedMessageError, match="array count 1073741824"):
        codec.decode_request(frame)


def test_bad_utf8_and_bad_boolean_refused() -> None:
    frame = struct.pack(">hhih", 3, 4, 1, -1) + struct.pack(">ih", 1, 2) + b"\xff\xfe" + b"\x01"
    with pytest.raises(MalformedMessageError, match="not UTF-8"):
        codec.decode_request(frame)
    frame = struct.pack(">hhih", 3, 4, 1, -1) + struct.pack(">i", -1) + b"\x07"
    with pytest.raises(MalformedMessageError, match="boolean byte 7"):
        codec.decode_request(frame)


def test_large_record_batches_round_trip_when_kept_by_reference() -> None:
    # Values of SPLICE_BYTES or more are joined at the end rather than copied as written:
    # the frame must be byte for byte what copying gives, for responses and requests, with
    # large and small values interleaved.
    from rilke.server.kafka.wire import SPLICE_BYTES

    rng = random.Random(7)
    big = [rng.randbytes(SPLICE_BYTES + n) for n in (0, 1, 50_000)]
    partitions = [
        {
            "partition_index": i,
            "error_code": 0,
            "high_watermark": 10 * i,
            "last_stable_offset": 10 * i,
            "aborted_transactions": None,
            "records": records,
        }
        for i, records in enumerate([big[0], b"small", big[1], None, big[2]])
    ]
    body = {"throttle_time_ms": 0, "responses": [{"topic": "t", "partitions": partitions}]}
    frame = codec.encode_response(42, schemas.FETCH, 4, body)
    assert struct.unpack(">i", frame[:4])[0] == len(frame) - 4
    assert codec.decode_response(schemas.FETCH, 4, frame[4:]) == (42, body)
    copied = Writer()
    copied.int32(42)
    copied.buf += frame[8:]  # the same body bytes, written without splicing
    assert copied.getvalue(length_prefix=True) == frame

    produce = {
        "transactional_id": None,
        "acks": -1,
        "timeout_ms": 1000,
        "topic_data": [
            {
                "name": "t",
                "partition_data": [{"index": 0, "records": big[2]}, {"index": 1, "records": b"x"}],
            }
        ],
    }
    request = codec.encode_request(schemas.PRODUCE, 3, 9, "c", produce)
    assert struct.unpack(">i", request[:4])[0] == len(request) - 4
    assert codec.decode_request(request[4:]).body == produce
