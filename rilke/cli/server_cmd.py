"""`rilke server`: run a broker.

Settings come from flags, then RILKE_* environment variables, then a TOML file (--config or
RILKE_CONFIG), then defaults (data dir ./rilke-data, listen 127.0.0.1:9292). Once listening it
prints ``rilke broker listening on HOST:PORT`` on stdout (then ``rilke kafka listener on
HOST:PORT`` and ``rilke metrics listening on HOST:PORT`` for those listeners, when set). Exit codes: 0 after a clean shutdown
(SIGTERM/SIGINT), 1 when the broker cannot start (data dir in use, address in use), 2 for bad
settings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rilke.cli.common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "server",
        help="run a broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir", metavar="DIR", help="where partitions live (RILKE_DATA_DIR; ./rilke-data)"
    )
    parser.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="HOST:PORT to serve gRPC on; port 0 picks one (RILKE_LISTEN; 127.0.0.1:9292)",
    )
    parser.add_argument(
        "--advertised-listen",
        metavar="HOST:PORT",
        help="HOST:PORT clients are told to use (default: --listen)",
    )
    parser.add_argument(
        "--config", metavar="FILE", type=Path, help="TOML config file (RILKE_CONFIG)"
    )
    parser.add_argument("--node-id", metavar="N", help="this broker's node id (RILKE_NODE_ID; 0)")
    parser.add_argument(
        "--auto-create-topics",
        choices=["true", "false"],
        help="create unknown topics on produce and metadata (RILKE_AUTO_CREATE_TOPICS; false)",
    )
    parser.add_argument(
        "--default-partitions",
        metavar="N",
        help="partitions of auto-created topics (RILKE_DEFAULT_PARTITIONS; 1)",
    )
    parser.add_argument(
        "--max-request-bytes",
        metavar="SIZE",
        help="largest produce request, e.g. 100MiB (RILKE_MAX_REQUEST_BYTES)",
    )
    parser.add_argument(
        "--maintenance-interval-ms",
        metavar="MS",
        help="retention/compaction/flush period (default 5000)",
    )
    parser.add_argument(
        "--scrub-bytes-per-second",
        metavar="SIZE",
        help="rate of the background CRC check of sealed segments, e.g. 8MiB; 0 disables it "
        "(RILKE_SCRUB_BYTES_PER_SECOND; default 8MiB)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="the broker's log lines: text, or one JSON object per line "
        "(RILKE_LOG_FORMAT; default text). The level: --log-level (RILKE_LOG_LEVEL; default info)",
    )
    parser.add_argument(
        "--max-open-files",
        metavar="N",
        help="descriptors segment files may hold open at once, an LRU cache "
        "(default: half of RLIMIT_NOFILE; RILKE_MAX_OPEN_FILES)",
    )
    parser.add_argument(
        "--kafka-listen",
        metavar="HOST:PORT",
        help="also serve the Kafka wire protocol here; port 0 picks one (RILKE_KAFKA_LISTEN; "
        "default off)",
    )
    parser.add_argument(
        "--kafka-advertised-listen",
        metavar="HOST:PORT",
        help="HOST:PORT Kafka clients are told to use (default: --kafka-listen)",
    )
    parser.add_argument(
        "--kafka-max-frame-bytes",
        metavar="SIZE",
        help="largest Kafka request frame accepted, e.g. 100MiB (RILKE_KAFKA_MAX_FRAME_BYTES)",
    )
    parser.add_argument(
        "--initial-voters",
        metavar="ID@HOST:PORT,...",
        help="form a cluster: the metadata controller's voters, e.g. "
        "1@10.0.0.1:9292,2@10.0.0.2:9292,3@10.0.0.3:9292, the same on every voter "
        "(RILKE_INITIAL_VOTERS; default: a cluster of one)",
    )
    parser.add_argument(
        "--join",
        metavar="HOST:PORT",
        help="add this node to a running cluster through any of its nodes (RILKE_JOIN)",
    )
    parser.add_argument(
        "--metadata-snapshot-bytes",
        metavar="SIZE",
        help="in a cluster: metadata log bytes between snapshots (the log is trimmed below "
        "each), e.g. 16MiB (RILKE_METADATA_SNAPSHOT_BYTES; default 16MiB)",
    )
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="serve Prometheus /metrics and HTTP /health here, e.g. 127.0.0.1:9644; port 0 "
        "picks one (RILKE_METRICS_LISTEN; default off)",
    )
    parser.add_argument(
        "--port-file", metavar="FILE", help="write the bound port to this file once listening"
    )
    parser.add_argument(
        "--log-config",
        action="append",
        metavar="KEY=VALUE",
        default=[],
        help="a default topic config by Kafka's name, e.g. retention.ms=3600000 (repeatable)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rilke.errors import DataDirLockedError, InvalidConfigError, RilkeError
    from rilke.logs import configure_logging
    from rilke.server.config import load_config

    log_flags: dict[str, str] = {}
    for item in args.log_config:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"rilke server: --log-config {item!r} is not KEY=VALUE", file=sys.stderr)
            return EXIT_USAGE
        log_flags[key.strip()] = value.strip()
    flags = {
        "data_dir": args.data_dir,
        "listen": args.listen,
        "advertised_listen": args.advertised_listen,
        "node_id": args.node_id,
        "auto_create_topics": args.auto_create_topics,
        "default_partitions": args.default_partitions,
        "max_request_bytes": args.max_request_bytes,
        "maintenance_interval_ms": args.maintenance_interval_ms,
        "scrub_bytes_per_second": args.scrub_bytes_per_second,
        "max_open_files": args.max_open_files,
        "log_level": getattr(args, "log_level", None),  # the global --log-level
        "log_format": args.log_format,
        "port_file": args.port_file,
        "kafka_listen": args.kafka_listen,
        "kafka_advertised_listen": args.kafka_advertised_listen,
        "kafka_max_frame_bytes": args.kafka_max_frame_bytes,
        "initial_voters": args.initial_voters,
        "join": args.join,
        "metadata_snapshot_bytes": args.metadata_snapshot_bytes,
        "metrics_listen": args.metrics_listen,
        "log": log_flags,
    }
    try:
        config = load_config(flags, config_file=args.config)
    except InvalidConfigError as e:
        print(f"rilke server: bad setting: {e}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.log_level, config.log_format)

    import asyncio

    from rilke.server.memory import tune_malloc
    from rilke.server.server import serve

    tune_malloc()

    def on_listening(host: str, port: int) -> None:
        print(f"rilke broker listening on {host}:{port}", flush=True)

    def on_kafka_listening(host: str, port: int) -> None:
        print(f"rilke kafka listener on {host}:{port}", flush=True)

    def on_metrics_listening(host: str, port: int) -> None:
        print(f"rilke metrics listening on {host}:{port}", flush=True)

    try:
        asyncio.run(serve(config, on_listening, on_kafka_listening, on_metrics_listening))
    except DataDirLockedError as e:
        print(
            f"rilke server: {e}: stop the broker that uses it, or give another --data-dir",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except RilkeError as e:
        print(f"rilke server: {e}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as e:
        # The data directory or the port file cannot be made or written.
        where = f" {e.filename}" if e.filename else ""
        print(
            f"rilke server: cannot start:{where}: {e.strerror or e} (check --data-dir, "
            f"--port-file and their permissions)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK
