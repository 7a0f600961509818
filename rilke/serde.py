"""Serializers and deserializers for the formats a stream carries: JSON, MessagePack,
Protocol Buffers and Avro.

Each is a callable to pass as a producer's ``key_serializer``/``value_serializer`` or a
consumer's ``key_deserializer``/``value_deserializer``::

    from rilke import Producer
    from rilke.serde import JsonSerializer

    producer = Producer("127.0.0.1:9292", value_serializer=JsonSerializer())
    producer.send("orders", {"id": 1})

JSON needs nothing beyond Python; MessagePack needs the ``msgpack`` extra, Avro the ``avro``
extra (fastavro; schemaless binary encoding with the writer's schema, as Confluent's wire
format without its schema-registry prefix), Protocol Buffers only ``protobuf`` (a
dependency of Rilke already). A missing package fails when the serializer is made, with the
extra to install. A value that cannot be encoded (or bytes that cannot be decoded) raises
:class:`SerializationError`, at ``send()`` for a producer: nothing is queued.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from rilke.errors import ClientError


class SerializationError(ClientError):
    """A key or value could not be serialized (or deserialized): it says which and why."""

    description = "a key or value could not be (de)serialized"


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"this serializer needs the {module!r} package: pip install 'rilke[{extra}]'"
        ) from None


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class JsonSerializer:
    """Python values to UTF-8 JSON (``ensure_ascii=False``, compact separators).

    ``default`` (as in :func:`json.dumps`) turns other objects into JSON values.
    """

    def __init__(self, default: Callable[[Any], Any] | None = None, sort_keys: bool = False):
        self._default = default
        self._sort_keys = sort_keys

    def __call__(self, value: Any) -> bytes:
        try:
            return json.dumps(
                value,
                default=self._default,
                ensure_ascii=False,
                separators=(",", ":"),
                sort_keys=self._sort_keys,
                allow_nan=False,
            ).encode()
        except (TypeError, ValueError) as exc:
            raise SerializationError(f"cannot encode {_describe(value)} as JSON: {exc}") from exc


class JsonDeserializer:
    """UTF-8 JSON bytes to Python values."""

    def __call__(self, data: bytes) -> Any:
        try:
            return json.loads(data)
        except (UnicodeDecodeError, ValueError) as exc:
            raise SerializationError(f"cannot decode {_describe(data)} as JSON: {exc}") from exc


class MsgPackSerializer:
    """Python values to MessagePack (needs the ``msgpack`` extra)."""

    def __init__(self, default: Callable[[Any], Any] | None = None) -> None:
        self._msgpack = _need("msgpack", "msgpack")
        self._default = default

    def __call__(self, value: Any) -> bytes:
        try:
            out: bytes = self._msgpack.packb(value, default=self._default, use_bin_type=True)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SerializationError(
                f"cannot encode {_describe(value)} as MessagePack: {exc}"
            ) from exc
        return out


class MsgPackDeserializer:
    """MessagePack bytes to Python values (needs the ``msgpack`` extra)."""

    def __init__(self) -> None:
        self._msgpack = _need("msgpack", "msgpack")

    def __call__(self, data: bytes) -> Any:
        try:
            return self._msgpack.unpackb(data, raw=False)
        except Exception as exc:
            raise SerializationError(
                f"cannot decode {_describe(data)} as MessagePack: {exc}"
            ) from exc


class ProtobufSerializer:
    """Protocol Buffers messages of one class to their binary encoding.

    Only instances of ``message_class`` are accepted (anything else is a SerializationError:
    a stream carries one schema), and every required field of a proto2 message must be set.
    """

    def __init__(self, message_class: type[Any]) -> None:
        self._cls = message_class

    def __call__(self, value: Any) -> bytes:
        if not isinstance(value, self._cls):
            raise SerializationError(
                f"expected a {self._cls.__name__} message, not {type(value).__name__}"
            )
        try:
            out: bytes = value.SerializeToString()
        except Exception as exc:  # EncodeError: a required field is missing
            raise SerializationError(
                f"cannot encode the {self._cls.__name__} message: {exc}"
            ) from exc
        return out


class ProtobufDeserializer:
    """Binary Protocol Buffers to messages of ``message_class``."""

    def __init__(self, message_class: type[Any]) -> None:
        self._cls = message_class

    def __call__(self, data: bytes) -> Any:
        message = self._cls()
        try:
            message.ParseFromString(data)
        except Exception as exc:  # DecodeError
            raise SerializationError(
                f"cannot decode {_describe(data)} as {self._cls.__name__}: {exc}"
            ) from exc
        return message


class AvroSerializer:
    """Python values to Avro binary with ``schema`` (a dict or its JSON text; needs the
    ``avro`` extra). A value that does not match the schema is a SerializationError."""

    def __init__(self, schema: Mapping[str, Any] | str) -> None:
        self._fastavro = _need("fastavro", "avro")
        raw = json.loads(schema) if isinstance(schema, str) else dict(schema)
        self._schema = self._fastavro.parse_schema(raw)

    def __call__(self, value: Any) -> bytes:
        import io

        from fastavro.validation import validate

        try:
            validate(value, self._schema, raise_errors=True)
            buf = io.BytesIO()
            self._fastavro.schemaless_writer(buf, self._schema, value)
        except Exception as exc:  # ValidationError, TypeError, ValueError
            raise SerializationError(
                f"cannot encode {_describe(value)} with Avro schema "
                f"{self._schema.get('name', self._schema.get('type'))!r}: "
                f"{' '.join(str(exc).split())}"
            ) from exc
        return buf.getvalue()


class AvroDeserializer:
    """Avro binary written with ``schema`` to Python values (needs the ``avro`` extra)."""

    def __init__(self, schema: Mapping[str, Any] | str) -> None:
        self._fastavro = _need("fastavro", "avro")
        raw = json.loads(schema) if isinstance(schema, str) else dict(schema)
        self._schema = self._fastavro.parse_schema(raw)

    def __call__(self, data: bytes) -> Any:
        import io

        try:
            return self._fastavro.schemaless_reader(io.BytesIO(data), self._schema, None)
        except Exception as exc:
            raise SerializationError(f"cannot decode {_describe(data)} as Avro: {exc}") from exc


__all__ = [
    "AvroDeserializer",
    "AvroSerializer",
    "JsonDeserializer",
    "JsonSerializer",
    "MsgPackDeserializer",
    "MsgPackSerializer",
    "ProtobufDeserializer",
    "ProtobufSerializer",
    "SerializationError",
]
