"""rilke.serde: each format round-trips, refuses what it cannot encode with a
SerializationError, and names its extra when the package is missing."""

from __future__ import annotations

import sys

import pytest

from rilke import serde
from rilke.errors import ClientError
from rilke.serde import SerializationError

AVRO_SCHEMA = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "item", "type": "string"}],
}


def test_json_round_trip_and_refusals():
    enc, dec = serde.JsonSerializer(sort_keys=True), serde.JsonDeserializer()
    assert enc({"b": 1, "a": "ä"}) == '{"a":"ä","b":1}'.encode()
    assert dec(enc({"x": [1, None, True]})) == {"x": [1, None, True]}
    with pytest.raises(SerializationError, match="as JSON"):
        enc({"t": {1, 2}})
    with pytest.raises(SerializationError, match="as JSON"):
        enc(float("nan"))  # not JSON: other readers refuse NaN
    with pytest.raises(SerializationError, match="cannot decode"):
        dec(b"{nope")
    assert issubclass(SerializationError, ClientError)


def test_msgpack_round_trip_and_refusal():
    enc, dec = serde.MsgPackSerializer(), serde.MsgPackDeserializer()
    value = {"id": 7, "blob": b"\x00\xff", "tags": ["a"]}
    assert dec(enc(value)) == value
    with pytest.raises(SerializationError, match="MessagePack"):
        enc(object())
    with pytest.raises(SerializationError, match="cannot decode"):
        dec(b"\xc1")  # a reserved byte: never valid MessagePack


def test_protobuf_round_trip_and_refusals():
    from rilke.proto import rilke_pb2 as pb

    enc = serde.ProtobufSerializer(pb.TopicPartition)
    dec = serde.ProtobufDeserializer(pb.TopicPartition)
    msg = pb.TopicPartition(topic="orders", partition=3)
    assert dec(enc(msg)) == msg
    with pytest.raises(SerializationError, match="expected a TopicPartition"):
        enc({"topic": "orders"})
    with pytest.raises(SerializationError, match="cannot decode"):
        dec(b"\xff\xff\xff")


def test_avro_round_trip_and_refusals():
    enc, dec = serde.AvroSerializer(AVRO_SCHEMA), serde.AvroDeserializer(AVRO_SCHEMA)
    assert dec(enc({"id": 1, "item": "pen"})) == {"id": 1, "item": "pen"}
    with pytest.raises(SerializationError, match="Order"):
        enc({"id": "one", "item": "pen"})
    with pytest.raises(SerializationError, match="Order"):
        enc({"id": 1})


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "msgpack", None)
    monkeypatch.setitem(sys.modules, "fastavro", None)
    with pytest.raises(ImportError, match=r"rilke\[msgpack\]"):
        serde.MsgPackSerializer()
    with pytest.raises(ImportError, match=r"rilke\[avro\]"):
        serde.AvroSerializer(AVRO_SCHEMA)
