"""`rilke bench ...`: benchmarks. Each benchmark module adds its own sub-subcommand."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

_BENCH_MODULES: tuple[str, ...] = (
    "rilke.bench.codec",
    "rilke.bench.produce",
    "rilke.bench.consume",
    "rilke.bench.produce_path",
    "rilke.bench.storage",
    "rilke.bench.raft",
    "rilke.bench.raft_cluster",
    "rilke.bench.replicated_partition",
    "rilke.bench.stall",
    "rilke.bench.topics",
    "rilke.bench.cluster_metadata",
    "rilke.bench.kafka",
    "rilke.bench.latency_timeline",
    "rilke.bench.cluster_failover",
    "rilke.bench.cluster_idle",
    "rilke.bench.cluster_batch",
    "rilke.bench.metadata_snapshot",
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("bench", help="run benchmarks and print their figures")
    bench_sub = parser.add_subparsers(dest="bench", metavar="BENCHMARK")
    for name in _BENCH_MODULES:
        importlib.import_module(name).register(bench_sub)
    parser.set_defaults(func=lambda args: _no_benchmark(parser, args))


def _no_benchmark(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    parser.print_help()
    return 2
