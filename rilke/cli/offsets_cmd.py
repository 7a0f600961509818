"""`rilke offsets TOPIC`: earliest and latest offsets per partition (and by time)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rilke.cli.common import EXIT_OK, add_client_arguments, admin_for, client_command


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "offsets",
        help="show each partition's earliest and latest offsets",
        description="Show each partition's earliest and latest (high watermark) offsets, and "
        "with --time the first offset at or after a time.",
    )
    p.add_argument("topic")
    p.add_argument("--time", metavar="WHEN", help="also the offset at a time: ISO-8601 or @MILLIS")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_client_arguments(p)
    p.set_defaults(func=_offsets)


@client_command
def _offsets(args: argparse.Namespace) -> int:
    from rilke.cli.consume_cmd import parse_start

    at_ms = None
    if args.time is not None:
        kind, at_ms = parse_start(args.time)
        if kind != "time":
            raise ValueError(f"--time {args.time!r}: expected an ISO time or @millis")
    with admin_for(args) as admin:
        tps = admin.topic_partitions(args.topic)
        earliest = admin.list_offsets(dict.fromkeys(tps, "earliest"))
        latest = admin.list_offsets(dict.fromkeys(tps, "latest"))
        at = admin.list_offsets(dict.fromkeys(tps, at_ms)) if at_ms is not None else {}
    rows = []
    for tp in tps:
        row = {
            "partition": tp.partition,
            "earliest": earliest[tp].offset,
            "latest": latest[tp].offset,
        }
        if at_ms is not None:
            row["at_time"] = at[tp].offset
        rows.append(row)
    if args.json:
        print(json.dumps({"topic": args.topic, "partitions": rows}))
        return EXIT_OK
    header = f"{'PARTITION':>9} {'EARLIEST':>12} {'LATEST':>12}" + (
        f" {'AT-TIME':>12}" if at_ms is not None else ""
    )
    print(header)
    for row in rows:
        line = f"{row['partition']:>9} {row['earliest']:>12} {row['latest']:>12}"
        if at_ms is not None:
            line += f" {row['at_time']:>12}"
        print(line)
    return EXIT_OK
