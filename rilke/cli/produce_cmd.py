"""`rilke produce TOPIC`: one record per line of standard input."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rilke.cli.common import (
    EXIT_FAILURE,
    EXIT_OK,
    add_client_arguments,
    client_command,
    client_settings,
    fail,
    parse_key_values,
)


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "produce",
        help="send lines of standard input as records",
        description=(
            "Send each line of standard input (without its line break) as one record's value. "
            "With --key-separator, the text before the first separator is the key. Exits 0 "
            "when every record was acknowledged, 1 otherwise (a record not acknowledged within "
            "--request-timeout fails)."
        ),
    )
    p.add_argument("topic")
    p.add_argument(
        "--key-separator", "-K", metavar="SEP", help="split each line into KEY SEP VALUE"
    )
    p.add_argument("--partition", "-p", type=int, help="send every record to this partition")
    p.add_argument(
        "--acks", choices=["0", "1", "all", "-1"], default="1", help="acknowledgement (default 1)"
    )
    p.add_argument(
        "--compression", choices=["none", "gzip", "lz4"], default="none", help="batch compression"
    )
    p.add_argument(
        "--linger-ms", type=float, default=5, help="wait this long to fill batches (default 5)"
    )
    p.add_argument(
        "--header", "-H", action="append", metavar="KEY=VALUE", help="add a header to every record"
    )
    add_client_arguments(p)
    p.set_defaults(func=_produce)


@client_command
def _produce(args: argparse.Namespace) -> int:
    from rilke.client.producer import Producer

    if args.key_separator == "":
        raise ValueError("--key-separator must not be empty")
    headers = [
        (k, v.encode()) for k, v in parse_key_values(args.header, "--header").items()
    ] or None
    sep = args.key_separator.encode() if args.key_separator else None
    failures: list[BaseException] = []
    sent = 0
    with Producer(
        args.bootstrap_servers,
        acks=args.acks,
        compression=args.compression,
        linger_ms=args.linger_ms,
        client_id="rilke-cli",
        max_block_ms=args.request_timeout * 1000,
        # A record not acknowledged within the request timeout fails (the library's default
        # keeps retrying for two minutes, which is for applications, not for a command).
        delivery_timeout_ms=args.request_timeout * 1000 + args.linger_ms,
        **client_settings(args),
    ) as producer:
        # Check the topic (and partition) before reading input, so a typo fails at once.
        n = producer.partitions_for(args.topic)
        if args.partition is not None and not 0 <= args.partition < n:
            raise ValueError(
                f"--partition {args.partition}: topic {args.topic!r} has {n} partitions"
            )
        for raw in sys.stdin.buffer:
            value = raw[:-1] if raw.endswith(b"\n") else raw
            if value.endswith(b"\r"):
                value = value[:-1]
            key = None
            if sep is not None:
                k, found, v = value.partition(sep)
                if found:
                    key, value = k, v
            producer.send(
                args.topic, value, key=key, headers=headers, partition=args.partition
            ).add_errback(failures.append)
            sent += 1
        producer.flush()
    if failures:
        fail(
            f"error: {len(failures)} of {sent} records failed; first: {failures[0]} [{type(failures[0]).__name__}]"
        )
        return EXIT_FAILURE
    return EXIT_OK
