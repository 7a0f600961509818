"""The shapes of Kafka's non-flexible message schemas, as plain data.

A :data:`Schema` is a tuple of ``(field name, field type)``; a field type is a primitive
(:class:`Prim`), an :class:`Array` of a primitive or of a nested schema. Messages are decoded to
and encoded from ``dict[str, Any]`` keyed by the field names of Kafka's JSON definitions in
snake case (``throttle_time_ms``, ``partition_index``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Union


class Prim(enum.Enum):
    INT8 = "int8"
    INT16 = "int16"
    INT32 = "int32"
    INT64 = "int64"
    BOOL = "bool"  # an int8, 0 or 1
    STRING = "string"  # int16 length + UTF-8
    NULLABLE_STRING = "nullable_string"  # length -1 is None
    BYTES = "bytes"  # int32 length + data
    NULLABLE_BYTES = "nullable_bytes"  # length -1 is None
    RECORDS = "records"  # nullable bytes holding concatenated record batches


@dataclass(frozen=True)
class Array:
    """An int32 count then the elements; ``nullable``: count -1 is None."""

    of: FieldType
    nullable: bool = False


FieldType = Union[Prim, Array, "tuple[tuple[str, Any], ...]"]
Schema = tuple[tuple[str, FieldType], ...]
Message = dict[str, Any]
