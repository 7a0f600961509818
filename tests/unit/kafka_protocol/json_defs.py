"""Apache Kafka's JSON message definitions (as kafka-python ships them), read into this
listener's schema shape, and bytes built from them field by field.

Only what the served versions use is handled: non-flexible versions, the primitive types,
arrays of primitives and of structs, ``versions`` and ``nullableVersions`` ranges.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

from rilke.server.kafka.types import Array, FieldType, Prim, Schema

_PRIMS = {
    "int8": Prim.INT8,
    "int16": Prim.INT16,
    "int32": Prim.INT32,
    "int64": Prim.INT64,
    "bool": Prim.BOOL,
    "string": Prim.STRING,
    "bytes": Prim.BYTES,
    "records": Prim.RECORDS,
}


def load(name: str) -> dict[str, Any]:
    """A definition by file name (``ProduceRequest``), comments stripped."""
    path = resources.files("kafka.protocol.schemas") / "resources" / f"{name}.json"
    text = path.read_text(encoding="utf-8")
    text = "\n".join(re.sub(r"^\s*//.*$", "", line) for line in text.splitlines())
    return dict(json.loads(text))


def in_range(spec: str | None, version: int) -> bool:
    if not spec or spec == "none":
        return False
    if spec.endswith("+"):
        return version >= int(spec[:-1])
    low, _, high = spec.partition("-")
    return int(low) <= version <= int(high or low)


def snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def schema_of(definition: dict[str, Any], version: int) -> Schema:
    """The wire layout of ``version`` by the definition; raises if it is flexible."""
    assert not in_range(definition.get("flexibleVersions"), version), "flexible version"
    return _fields(definition["fields"], version)


def _fields(fields: list[dict[str, Any]], version: int) -> Schema:
    out: list[tuple[str, FieldType]] = []
    for f in fields:
        if not in_range(f.get("versions"), version):
            continue
        if f.get("taggedVersions"):
            continue
        nullable = in_range(f.get("nullableVersions"), version)
        out.append((snake(f["name"]), _type(f, version, nullable)))
    return tuple(out)


def _type(f: dict[str, Any], version: int, nullable: bool) -> FieldType:
    kind: str = f["type"]
    if kind.startswith("[]"):
        inner = kind[2:]
        of: FieldType = _PRIMS[inner] if inner in _PRIMS else _fields(f["fields"], version)
        return Array(of, nullable=nullable)
    if kind in ("string", "bytes") and nullable:
        return Prim.NULLABLE_STRING if kind == "string" else Prim.NULLABLE_BYTES
    return _PRIMS[kind]
