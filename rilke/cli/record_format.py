"""How `rilke consume` prints a record: text, JSON lines, raw bytes, or a kcat-style format
string (``--format '%t %p %o %k %s\\n'``).

Format-string tokens, as kcat's ``-f``: ``%t`` topic, ``%p`` partition, ``%o`` offset,
``%k`` key, ``%s`` value, ``%K`` key length, ``%S`` value length (-1 for null, as kcat),
``%T`` timestamp (ms), ``%h`` headers (``k=v,k=v``), ``%%`` a percent sign; ``\\n``, ``\\t``,
``\\r`` and ``\\\\`` are escapes. A format without a line break gets one at the end, so each
record is one line. A null key or value prints as ``null_text`` (its own flag, so a null
key reads apart from an empty one).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

NAMED_FORMATS = ("text", "json", "raw")

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_TOKENS = "tpokKsSTh%"

Formatter = Callable[[Any], bytes]


def _text(b: bytes | None, null_text: str) -> str:
    return null_text if b is None else b.decode("utf-8", errors="replace")


def _json_bytes(obj: dict[str, Any], name: str, b: bytes | None) -> None:
    """``obj[name]`` is the UTF-8 text of ``b`` (None for null); bytes that are not UTF-8
    go to ``obj[name + "_base64"]`` instead, exactly."""
    if b is None:
        obj[name] = None
        return
    try:
        obj[name] = b.decode("utf-8")
    except UnicodeDecodeError:
        obj[f"{name}_base64"] = base64.b64encode(b).decode()


def to_json(record: Any) -> bytes:
    """One JSON object and a newline: topic, partition, offset, timestamp, key, value and
    headers (``[{"key": k, "value": v}]``, each as exact as the key and value: base64 under
    ``value_base64`` when not UTF-8)."""
    obj: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
    }
    _json_bytes(obj, "key", record.key)
    _json_bytes(obj, "value", record.value)
    headers = []
    for k, v in record.headers:
        h: dict[str, Any] = {"key": k}
        _json_bytes(h, "value", v)
        headers.append(h)
    obj["headers"] = headers
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


def _unescape(fmt: str) -> str:
    out = []
    i = 0
    while i < len(fmt):
        c = fmt[i]
        if c == "\\" and i + 1 < len(fmt) and fmt[i + 1] in _ESCAPES:
            out.append(_ESCAPES[fmt[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def compile_format(fmt: str, null_text: str = "") -> Formatter:
    """A kcat-style format string to a function from a record to its bytes.

    Raises ValueError for an unknown ``%`` token or a trailing ``%``.
    """
    text = _unescape(fmt)
    if "\n" not in text:
        text += "\n"
    parts: list[str | Callable[[Any], str]] = []
    literal: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "%":
            literal.append(c)
            i += 1
            continue
        if i + 1 >= len(text) or text[i + 1] not in _TOKENS:
            token = text[i : i + 2].strip() or "%"
            raise ValueError(
                f"--format {fmt!r}: unknown token {token!r} (known: %t %p %o %k %s %K %S %T %h %%)"
            )
        t = text[i + 1]
        i += 2
        if t == "%":
            literal.append("%")
            continue
        if literal:
            parts.append("".join(literal))
            literal = []
        parts.append(_token(t, null_text))
    if literal:
        parts.append("".join(literal))

    def render(record: Any) -> bytes:
        return "".join(p if isinstance(p, str) else p(record) for p in parts).encode()

    return render


def _token(t: str, null_text: str) -> Callable[[Any], str]:
    if t == "t":
        return lambda r: str(r.topic)
    if t == "p":
        return lambda r: str(r.partition)
    if t == "o":
        return lambda r: str(r.offset)
    if t == "T":
        return lambda r: str(r.timestamp)
    if t == "k":
        return lambda r: _text(r.key, null_text)
    if t == "s":
        return lambda r: _text(r.value, null_text)
    if t == "K":
        return lambda r: str(-1 if r.key is None else len(r.key))
    if t == "S":
        return lambda r: str(-1 if r.value is None else len(r.value))
    assert t == "h"
    return lambda r: ",".join(f"{k}={_text(v, null_text)}" for k, v in r.headers)


def make_formatter(
    fmt: str, *, print_key: bool = False, key_separator: str = "\t", null_text: str = ""
) -> Formatter:
    """The printer for ``--format`` (a name in :data:`NAMED_FORMATS` or a format string).

    Raises ValueError for a bad format string.
    """
    if fmt == "raw":
        return lambda r: (r.value or b"") + b"\n"
    if fmt == "json":
        return to_json
    if fmt == "text":

        def text(r: Any) -> bytes:
            line = _text(r.value, null_text)
            if print_key:
                line = _text(r.key, null_text) + key_separator + line
            return (line + "\n").encode()

        return text
    if "%" not in fmt:
        raise ValueError(
            f"--format {fmt!r}: expected text, json, raw or a format string with %-tokens "
            f"(e.g. '%t %p %o %k %s')"
        )
    return compile_format(fmt, null_text)
