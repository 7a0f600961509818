"""Checking and normalising client settings: bootstrap servers, acks, compression.

Bad settings raise ValueError at construction, before anything connects.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DEFAULT_PORT = 9292
"""The port a broker listens on unless told otherwise, and the client's default."""

COMPRESSION_CODECS = {"none": 0, "gzip": 1, "lz4": 3}
"""Compression names the producer accepts, with their RecordBatch attribute ids."""


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
        return COMPRESSION_CODECS[key]
    except KeyError:
        raise ValueError(
            f"compression must be one of {', '.join(COMPRESSION_CODECS)}, not {name!r}"
        ) from None


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
