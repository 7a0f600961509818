"""BrokerConfig: the settings of one `rilke server` process, and where each one came from.

Precedence, highest first: command-line flags, environment variables (``RILKE_*``), a TOML
config file, defaults. Every bad setting raises :class:`rilke.errors.InvalidConfigError` with a
message naming the setting and its source, e.g. ``listen (from RILKE_LISTEN): 'x' is not
HOST:PORT``.

The TOML file holds the same names as the flags, with underscores, at the top level, and topic
defaults by Kafka's names under ``[log]``::

    data_dir = "/var/lib/rilke"
    listen = "0.0.0.0:9292"
    node_id = 0
    auto_create_topics = false
    default_partitions = 1
    max_request_bytes = "100MiB"

    [log]
    "retention.ms" = 604800000
    "segment.bytes" = "256MiB"

Environment variables: ``RILKE_DATA_DIR``, ``RILKE_LISTEN``, ``RILKE_NODE_ID``,
``RILKE_AUTO_CREATE_TOPICS``, ``RILKE_DEFAULT_PARTITIONS``, ``RILKE_MAX_REQUEST_BYTES``,
``RILKE_MAINTENANCE_INTERVAL_MS``, ``RILKE_MAX_OPEN_FILES``, ``RILKE_ADVERTISED_LISTEN``,
``RILKE_SCRUB_BYTES_PER_SECOND``, ``RILKE_KAFKA_LISTEN``, ``RILKE_KAFKA_ADVERTISED_LISTEN``,
``RILKE_KAFKA_MAX_FRAME_BYTES``, ``RILKE_INITIAL_VOTERS``, ``RILKE_JOIN``, ``RILKE_METRICS_LISTEN``,
and ``RILKE_LOG_<KEY>`` for a
topic default (``RILKE_LOG_RETENTION_MS`` is ``retention.ms``). Other ``RILKE_*`` variables
belong to other commands and are ignored here.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rilke.errors import InvalidConfigError
from rilke.logs import LOG_FORMATS, parse_level
from rilke.storage.config import LogConfig

DEFAULT_PORT = 9292
DEFAULT_LISTEN = f"127.0.0.1:{DEFAULT_PORT}"
# The scrubber's default rate: a pass over 1 TiB of sealed segments in about 36 hours. Its
# cost, measured here (2-core VM, data in the page cache): 0.45 ms of CPU per MB checked for
# 16 KiB batches and 3.5 ms for 1 KiB ones, so 0.4-3 % of one core at this rate; `rilke bench
# produce` against a broker over a 760 MB log showed no difference with the scrubber off or at
# 8 MiB/s (median of 3 runs each: 343k and 390k msgs/s, within the run-to-run noise). From a
# disk it reads 8 MiB/s: a few percent of a spinning disk's bandwidth, well under 1 % of an SSD.
DEFAULT_SCRUB_BYTES_PER_SECOND = 8 << 20

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "ki": 1 << 10,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mi": 1 << 20,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gi": 1 << 30,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "ti": 1 << 40,
    "tib": 1 << 40,
}
# Topic configs whose values may be written as sizes ("256MiB").
_SIZE_LOG_KEYS = frozenset(
    {"segment.bytes", "retention.bytes", "max.message.bytes", "segment.index.bytes"}
)


@dataclass(frozen=True)
class BrokerConfig:
    """The settings of a broker process. Build it with :func:`load_config`."""

    data_dir: Path = Path("rilke-data")
    listen: str = DEFAULT_LISTEN  # HOST:PORT; port 0 picks a free port
    advertised_listen: str = ""  # what Metadata tells clients; empty: the bound address
    node_id: int = 0
    auto_create_topics: bool = False  # auto.create.topics.enable
    default_partitions: int = 1  # num.partitions for auto-created topics
    max_request_bytes: int = 100 << 20  # largest produce request accepted
    maintenance_interval_ms: int = 5000  # retention, compaction, time-based flush
    # Descriptors the segment files of all partitions may hold open at once (an LRU cache);
    # None: half the process's RLIMIT_NOFILE (rilke.storage.handles.default_max_open_files).
    max_open_files: int | None = None
    shutdown_grace_ms: int = 10_000  # how long in-flight requests may take at shutdown
    # The background CRC check of sealed segments (rilke.storage.scrubber); 0 disables it.
    scrub_bytes_per_second: int = DEFAULT_SCRUB_BYTES_PER_SECOND
    log: LogConfig = field(default_factory=LogConfig)  # defaults for new topics
    port_file: Path | None = None  # write the bound port here once listening
    # Consumer groups (rilke.server.group_service).
    offsets_retention_minutes: int = 7 * 24 * 60  # offsets.retention.minutes (empty groups)
    offsets_topic_partitions: int = 16  # offsets.topic.num.partitions (used when created)
    group_heartbeat_interval_ms: int = 300  # group.consumer.heartbeat.interval.ms
    group_min_session_timeout_ms: int = 500  # group.consumer.min.session.timeout.ms
    group_max_session_timeout_ms: int = 30 * 60 * 1000  # group.consumer.max.session.timeout.ms
    # The Kafka wire protocol listener (rilke.server.kafka): off unless kafka_listen is set.
    kafka_listen: str = ""  # HOST:PORT; empty: no Kafka listener; port 0 picks a free port
    kafka_advertised_listen: str = ""  # what Kafka Metadata tells clients; empty: the bound one
    kafka_max_frame_bytes: int = 100 << 20  # socket.request.max.bytes: larger frames are refused
    # The broker's own logging (rilke.logs): a level name and "text" or "json".
    log_level: str = "INFO"
    log_format: str = "text"
    # A cluster (rilke.server.cluster): the metadata controller's voters as (node id, HOST:PORT)
    # (``--initial-voters 1@h1:9292,2@h2:9292,3@h3:9292``), or ``join`` (HOST:PORT of any node of
    # an existing cluster). Neither: a cluster of one, today's single node.
    initial_voters: tuple[tuple[int, str], ...] = ()
    join: str = ""
    # Bytes of metadata log entries applied between two metadata snapshots (the log is trimmed
    # below each): Kafka's metadata.log.max.record.bytes.between.snapshots.
    metadata_snapshot_bytes: int = 16 << 20
    # Prometheus /metrics and HTTP /health (rilke.server.metrics_http): off unless set.
    metrics_listen: str = ""  # HOST:PORT; empty: no metrics listener; port 0 picks a free port
    sources: Mapping[str, str] = field(default_factory=dict)  # setting -> where it came from

    @property
    def host(self) -> str:
        return split_host_port(self.listen, "listen", "config")[0]

    @property
    def port(self) -> int:
        return split_host_port(self.listen, "listen", "config")[1]


def split_host_port(value: str, name: str, source: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (``[v6]:PORT`` too); raises InvalidConfigError naming the setting."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise InvalidConfigError(
            f"{name} (from {source}): {value!r} is not HOST:PORT with a port 0-65535"
        )
    return host, int(port_text)


def parse_size(value: Any, name: str, source: str) -> int:
    """An int, or a string like ``64MiB``, ``1GB``, ``512k`` (k=1000, Ki=1024), as bytes."""
    if isinstance(value, bool):
        raise InvalidConfigError(f"{name} (from {source}): expected a size, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.strip() == "-1":
            return -1
        match = _SIZE.match(value)
        if match:
            return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
    raise InvalidConfigError(
        f"{name} (from {source}): {value!r} is not a size (bytes, or e.g. 64MiB, 1GB)"
    )


def _parse_int(value: Any, name: str, source: str) -> int:
    if isinstance(value, bool):
        raise InvalidConfigError(f"{name} (from {source}): expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise InvalidConfigError(f"{name} (from {source}): {value!r} is not an integer")


def _parse_bool(value: Any, name: str, source: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
    raise InvalidConfigError(f"{name} (from {source}): {value!r} is not true or false")


def _parse_str(value: Any, name: str, source: str) -> str:
    if not isinstance(value, str):
        raise InvalidConfigError(f"{name} (from {source}): expected a string, got {value!r}")
    return value


def _parse_path(value: Any, name: str, source: str) -> Path:
    text = _parse_str(value, name, source)
    if not text:
        raise InvalidConfigError(f"{name} (from {source}): must not be empty")
    return Path(text)


def _parse_listen(value: Any, name: str, source: str) -> str:
    text = _parse_str(value, name, source)
    split_host_port(text, name, source)
    return text


def _parse_advertised(value: Any, name: str, source: str) -> str:
    text = _parse_str(value, name, source)
    if text:
        split_host_port(text, name, source)
    return text


def _at_least(minimum: int, parse: Any) -> Any:
    def check(value: Any, name: str, source: str) -> int:
        number = int(parse(value, name, source))
        if number < minimum:
            raise InvalidConfigError(f"{name} (from {source}): {number} must be >= {minimum}")
        return number

    return check


def _parse_log_level(value: Any, name: str, source: str) -> str:
    try:
        return parse_level(_parse_str(value, name, source))
    except ValueError as e:
        raise InvalidConfigError(f"{name} (from {source}): {e}") from None


def _parse_log_format(value: Any, name: str, source: str) -> str:
    text = _parse_str(value, name, source).strip().lower()
    if text not in LOG_FORMATS:
        raise InvalidConfigError(
            f"{name} (from {source}): {value!r} is not one of {', '.join(LOG_FORMATS)}"
        )
    return text


def parse_voters(value: Any, name: str, source: str) -> tuple[tuple[int, str], ...]:
    """``ID@HOST:PORT,ID@HOST:PORT,...`` (or a TOML list of such strings) as (id, address)
    pairs sorted by id; empty text is no voters. Raises InvalidConfigError saying which item
    is wrong: not ID@HOST:PORT, a negative id, an id or an address given twice."""
    if isinstance(value, list):
        items = [_parse_str(v, name, source) for v in value]
    else:
        items = _parse_str(value, name, source).split(",")
    items = [item.strip() for item in items if item.strip()]
    voters: dict[int, str] = {}
    for item in items:
        node, sep, addr = item.partition("@")
        if not sep or not node.strip().isdigit():
            raise InvalidConfigError(
                f"{name} (from {source}): {item!r} is not ID@HOST:PORT "
                f"(e.g. 1@127.0.0.1:9292,2@127.0.0.1:9293,3@127.0.0.1:9294)"
            )
        _host, port = split_host_port(addr.strip(), name, source)
        if port == 0:
            raise InvalidConfigError(f"{name} (from {source}): {item!r}: a voter needs a port")
        node_id = int(node)
        if node_id in voters:
            raise InvalidConfigError(f"{name} (from {source}): node id {node_id} given twice")
        if addr.strip() in voters.values():
            raise InvalidConfigError(f"{name} (from {source}): address {addr!r} given twice")
        voters[node_id] = addr.strip()
    return tuple(sorted(voters.items()))


_PARSERS: dict[str, Any] = {
    "data_dir": _parse_path,
    "listen": _parse_listen,
    "advertised_listen": _parse_advertised,
    "node_id": _at_least(0, _parse_int),
    "auto_create_topics": _parse_bool,
    "default_partitions": _at_least(1, _parse_int),
    "max_request_bytes": _at_least(1024, parse_size),
    "maintenance_interval_ms": _at_least(10, _parse_int),
    "max_open_files": _at_least(16, _parse_int),
    "shutdown_grace_ms": _at_least(0, _parse_int),
    "scrub_bytes_per_second": _at_least(0, parse_size),
    "port_file": _parse_path,
    "offsets_retention_minutes": _at_least(1, _parse_int),
    "offsets_topic_partitions": _at_least(1, _parse_int),
    "group_heartbeat_interval_ms": _at_least(10, _parse_int),
    "group_min_session_timeout_ms": _at_least(1, _parse_int),
    "group_max_session_timeout_ms": _at_least(1, _parse_int),
    "kafka_listen": _parse_advertised,  # empty (off) or HOST:PORT
    "kafka_advertised_listen": _parse_advertised,
    "kafka_max_frame_bytes": _at_least(1024, parse_size),
    "log_level": _parse_log_level,
    "log_format": _parse_log_format,
    "initial_voters": parse_voters,
    "join": _parse_advertised,  # empty (no) or HOST:PORT
    "metadata_snapshot_bytes": _at_least(1024, parse_size),
    "metrics_listen": _parse_advertised,  # empty (off) or HOST:PORT
}
ENV_PREFIX = "RILKE_"
_LOG_ENV_PREFIX = "RILKE_LOG_"


def _log_keys() -> frozenset[str]:
    return frozenset(LogConfig().to_topic_configs())


def load_config(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> BrokerConfig:
    """Merge flags > environment > TOML file > defaults into a BrokerConfig.

    ``flags`` maps setting names (``data_dir``, ``listen``, ...) to values, None meaning "not
    given"; ``log`` may map Kafka topic-config names to values. ``env`` defaults to os.environ.
    ``config_file`` may also come from ``RILKE_CONFIG``. Raises InvalidConfigError naming the
    setting and its source for an unknown key, a wrong type or a bad value, and for a config
    file that is missing or is not valid TOML.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    log_values: dict[str, tuple[Any, str]] = {}

    path = config_file
    if path is None and env.get("RILKE_CONFIG"):
        path = Path(env["RILKE_CONFIG"])
    if path is not None:
        _read_toml(path, values, sources, log_values)

    for name, parse in _PARSERS.items():
        var = ENV_PREFIX + name.upper()
        if var in env:
            values[name] = parse(env[var], name, var)
            sources[name] = var
    own_vars = {ENV_PREFIX + name.upper() for name in _PARSERS}  # RILKE_LOG_LEVEL, ...
    for var, raw in env.items():
        if var.startswith(_LOG_ENV_PREFIX) and var not in own_vars:
            key = var[len(_LOG_ENV_PREFIX) :].lower().replace("_", ".")
            log_values[key] = (raw, var)

    for name, raw in (flags or {}).items():
        if raw is None:
            continue
        if name == "log":
            for key, value in raw.items():
                log_values[key] = (value, "command line")
            continue
        if name not in _PARSERS:
            raise InvalidConfigError(f"{name} (from command line): unknown setting")
        flag = "--" + name.replace("_", "-")
        values[name] = _PARSERS[name](raw, name, flag)
        sources[name] = flag

    log = _build_log_config(log_values)
    config = BrokerConfig(**values, log=log, sources=sources)
    _check_cluster_settings(config)
    return config


def _check_cluster_settings(config: BrokerConfig) -> None:
    """--initial-voters and --join against each other and against this node's id and
    address (the one the other nodes are told: --advertised-listen, else --listen)."""
    sources = config.sources
    if config.initial_voters and config.join:
        raise InvalidConfigError(
            f"initial_voters (from {sources.get('initial_voters')}) and join (from "
            f"{sources.get('join')}): give one: --initial-voters forms a new cluster, --join "
            "adds this node to a running one"
        )
    if (config.initial_voters or config.join) and config.kafka_listen:
        _check_cluster_kafka_listener(config)
    if not config.initial_voters:
        return
    voters = dict(config.initial_voters)
    where = f"initial_voters (from {sources.get('initial_voters')})"
    own = config.advertised_listen or config.listen
    if config.node_id not in voters:
        raise InvalidConfigError(
            f"{where}: this node's id {config.node_id} (--node-id) is not among the voters "
            f"{sorted(voters)}; a node that is not a voter starts with --join HOST:PORT"
        )
    if voters[config.node_id] != own:
        flag = "--advertised-listen" if config.advertised_listen else "--listen"
        raise InvalidConfigError(
            f"{where}: voter {config.node_id} is at {voters[config.node_id]}, but this node "
            f"is at {own} ({flag}): they must be the same address"
        )


def _check_cluster_kafka_listener(config: BrokerConfig) -> None:
    """A node of a cluster registers its Kafka address and every node lists it to Kafka
    clients: it must be one they can reach (not a wildcard, not port 0)."""
    if config.kafka_advertised_listen:
        where = f"kafka_advertised_listen (from {config.sources.get('kafka_advertised_listen')})"
        host, port = split_host_port(config.kafka_advertised_listen, "kafka_advertised_listen", "")
        if port == 0 or host in _WILDCARD_HOSTS:
            raise InvalidConfigError(
                f"{where}: {config.kafka_advertised_listen} is not an address Kafka clients can "
                "reach: give the host and port they connect to"
            )
        return
    host, _port = split_host_port(config.kafka_listen, "kafka_listen", "")
    if host in _WILDCARD_HOSTS:
        raise InvalidConfigError(
            f"kafka_listen (from {config.sources.get('kafka_listen')}): {config.kafka_listen} "
            "listens on every address, which Kafka clients cannot be sent to; in a cluster give "
            "--kafka-advertised-listen HOST:PORT (the address clients reach this node at)"
        )


_WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "*"})


def _read_toml(
    path: Path,
    values: dict[str, Any],
    sources: dict[str, str],
    log_values: dict[str, tuple[Any, str]],
) -> None:
    source = str(path)
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except FileNotFoundError:
        raise InvalidConfigError(f"config file {source} does not exist") from None
    except OSError as e:
        raise InvalidConfigError(f"config file {source} cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise InvalidConfigError(f"config file {source} is not valid TOML: {e}") from None
    for name, raw in document.items():
        if name == "log":
            if not isinstance(raw, dict):
                raise InvalidConfigError(f"log (from {source}): expected a table [log]")
            for key, value in raw.items():
                log_values[key] = (value, f"{source} [log]")
            continue
        if name not in _PARSERS:
            known = ", ".join([*sorted(_PARSERS), "[log]"])
            raise InvalidConfigError(f"{name} (from {source}): unknown setting; known: {known}")
        values[name] = _PARSERS[name](raw, name, source)
        sources[name] = source


def _build_log_config(log_values: Mapping[str, tuple[Any, str]]) -> LogConfig:
    known = _log_keys()
    configs: dict[str, str] = {}
    for key, (raw, source) in log_values.items():
        if key not in known:
            raise InvalidConfigError(
                f"{key} (from {source}): unknown topic config; known: {', '.join(sorted(known))}"
            )
        if key in _SIZE_LOG_KEYS:
            configs[key] = str(parse_size(raw, key, source))
        elif isinstance(raw, bool):
            raise InvalidConfigError(f"{key} (from {source}): {raw!r} is not valid here")
        else:
            configs[key] = str(raw)
        try:
            LogConfig.from_topic_configs({key: configs[key]})
        except InvalidConfigError as e:
            raise InvalidConfigError(f"{e} (from {source})") from None
    return LogConfig.from_topic_configs(configs)


def describe(config: BrokerConfig) -> dict[str, str]:
    """Each top-level setting's value and its source, for the start-up log."""
    out: dict[str, str] = {}
    for f in fields(config):
        if f.name in ("sources", "log"):
            continue
        out[f.name] = f"{getattr(config, f.name)} ({config.sources.get(f.name, 'default')})"
    return out
