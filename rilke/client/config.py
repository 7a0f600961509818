"""Checking and normalising client settings: bootstrap servers, acks, compression.

Bad settings raise ValueError at construction, before anything connects.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

DEFAULT_PORT = 9292
"""The port a broker listens on unless told otherwise, and the client's default."""

COMPRESSION_CODECS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
"""Compression names the producer accepts, with their RecordBatch attribute ids (snappy and
zstd only where their packages are installed: the ``snappy`` and ``zstd`` extras)."""

_EXTRA_OF_CODEC = {"snappy": "cramjam", "zstd": "zstandard"}


def parse_bootstrap_servers(servers: str | Iterable[str]) -> list[str]:
    """``"h1:p1,h2:p2"`` or ``["h1:p1", "h2"]`` to a list of ``"host:port"`` strings.

    A missing port means :data:`DEFAULT_PORT`. Raises ValueError for an empty list or a
    malformed entry.
    """
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out: list[str] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        host, sep, port_s = item.rpartition(":")
        if not sep:
            host, port_s = item, str(DEFAULT_PORT)
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        if not host:
            raise ValueError(f"bootstrap server {item!r} has no host (expected host:port)")
        try:
            port = int(port_s)
        except ValueError:
            raise ValueError(
                f"bootstrap server {item!r} has a bad port {port_s!r} (expected host:port)"
            ) from None
        if not 0 < port < 65536:
            raise ValueError(f"bootstrap server {item!r}: port {port} is out of range")
        out.append(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    if not out:
        raise ValueError("bootstrap_servers is empty: give at least one host:port")
    return out


def normalize_acks(acks: int | str) -> int:
    """acks 0, 1, -1 or 'all' to the wire value 0, 1 or -1."""
    if acks in ("all", -1, "-1"):
        return -1
    if acks in (0, "0"):
        return 0
    if acks in (1, "1"):
        return 1
    raise ValueError(f"acks must be 0, 1, -1 or 'all', not {acks!r}")


def compression_id(name: str | None) -> int:
    """A compression name ('none', 'gzip', 'lz4'; None means 'none') to its codec id."""
    key = "none" if name is None else str(name).lower()
    try:
        codec = COMPRESSION_CODECS[key]
    except KeyError:
        raise ValueError(
            f"compression must be one of {', '.join(COMPRESSION_CODECS)}, not {name!r}"
        ) from None
    from rilke.records.compression import is_supported

    if not is_supported(codec):
        raise ValueError(
            f"compression {key!r} needs the {_EXTRA_OF_CODEC[key]!r} package: "
            f"pip install 'rilke[{key}]'"
        )
    return codec


def require_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, not {value!r}")


def cluster_settings(
    bootstrap_servers: str | Iterable[str],
    *,
    client_id: str,
    request_timeout_ms: float,
    retry_backoff_ms: float,
    retry_backoff_max_ms: float,
    metadata_max_age_ms: float,
) -> dict[str, Any]:
    """Check the connection settings every client shares and return them as the keyword
    arguments of :class:`rilke.client.cluster.Cluster`. Raises ValueError for a bad one."""
    parse_bootstrap_servers(bootstrap_servers)
    require_positive("request_timeout_ms", request_timeout_ms)
    require_positive("metadata_max_age_ms", metadata_max_age_ms)
    require_positive("retry_backoff_ms", retry_backoff_ms, allow_zero=True)
    require_positive("retry_backoff_max_ms", retry_backoff_max_ms, allow_zero=True)
    return {
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        "request_timeout_ms": int(request_timeout_ms),
        "retry_backoff_ms": int(retry_backoff_ms),
        "retry_backoff_max_ms": int(retry_backoff_max_ms),
        "metadata_max_age_ms": int(metadata_max_age_ms),
    }


def apply_aliases(
    config: dict[str, Any], aliases: dict[str, str], known: Iterable[str], what: str
) -> dict[str, Any]:
    """``config`` with kafka-python's names (the keys of ``aliases``) renamed to ours.

    Raises TypeError when a name and its alias are both given with different values, and for
    a setting neither ours (``known``) nor an alias, naming the closest known one.
    """
    out = dict(config)
    for theirs, ours in aliases.items():
        if theirs not in out:
            continue
        value = out.pop(theirs)
        if ours in out and out[ours] != value:
            raise TypeError(
                f"{what} got both {ours}={out[ours]!r} and {theirs}={value!r} (the same "
                f"setting under two names): give one"
            )
        out[ours] = value
    known_set = set(known)
    unknown = sorted(k for k in out if k not in known_set) if known_set else []
    if unknown:
        import difflib

        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, [*known_set, *aliases], n=1)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise TypeError(f"unknown {what} settings: {', '.join(hints)}")
    return out


PRODUCER_ALIASES = {
    "compression_type": "compression",
    "max_in_flight_requests_per_connection": "max_in_flight",
}
"""kafka-python's producer settings that Rilke's producer names otherwise."""

CONSUMER_ALIASES: dict[str, str] = {}
"""kafka-python's consumer settings that Rilke's consumer names otherwise (none today: the
deserializers and the rest share kafka-python's names)."""


def kafka_names(aliases: dict[str, str], what: str) -> Callable[[F], F]:
    """Decorate a client's ``__init__`` so it takes kafka-python's names beside ours.

    Keyword arguments are passed through :func:`apply_aliases`; settings the function does
    not take fail there with a TypeError that names them (unless it takes ``**kwargs``,
    which then checks them itself).
    """

    def decorate(init: F) -> F:
        params = inspect.signature(init).parameters.values()
        open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        known = (
            ()
            if open_ended
            else tuple(
                p.name
                for p in params
                if p.kind
                in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
            )
        )

        @functools.wraps(init)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            return init(self, *args, **apply_aliases(kwargs, aliases, known, what))

        return wrapper  # type: ignore[return-value]

    return decorate
