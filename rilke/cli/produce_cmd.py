"""`rilke produce TOPIC`: one record per line of standard input (or of --file)."""

from __future__ import annotations

import argparse
import collections
import sys
from typing import Any, BinaryIO

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
        help="send lines of standard input (or a file) as records",
        description=(
            "Send each line of standard input, or of --file, (without its line break) as one "
            "record's value. With --key-separator, the text before the first separator is the "
            "key. Prints the partition and offset of each record as it is acknowledged "
            "(--quiet: nothing). Exits 0 when every record was acknowledged, 1 otherwise (a "
            "record not acknowledged within --request-timeout fails)."
        ),
    )
    p.add_argument("topic")
    p.add_argument(
        "--key-separator", "-K", metavar="SEP", help="split each line into KEY SEP VALUE"
    )
    p.add_argument("--partition", "-p", type=int, help="send every record to this partition")
    p.add_argument(
        "--file",
        "-F",
        metavar="PATH",
        help="read the records from this file instead of standard input ('-': stdin)",
    )
    p.add_argument(
        "--acks",
        choices=["0", "1", "all", "-1"],
        default="all",
        help="acknowledgement: all (default: committed by the replicas), 1 (the leader wrote "
        "it) or 0 (none)",
    )
    p.add_argument(
        "--compression",
        choices=["none", "gzip", "lz4", "zstd", "snappy"],
        default="none",
        help="batch compression (zstd and snappy need the rilke[zstd] / rilke[snappy] extras)",
    )
    p.add_argument(
        "--linger-ms", type=float, default=5, help="wait this long to fill batches (default 5)"
    )
    p.add_argument(
        "--max-request-size",
        type=int,
        default=1024 * 1024,
        metavar="BYTES",
        help="the largest record and batch to send (default 1048576, the broker's default "
        "max.message.bytes; raise both together)",
    )
    p.add_argument(
        "--header", "-H", action="append", metavar="KEY=VALUE", help="add a header to every record"
    )
    p.add_argument("--quiet", "-q", action="store_true", help="do not print where each record went")
    add_client_arguments(p)
    p.set_defaults(func=_produce)


def _lines(source: BinaryIO, sep: bytes | None) -> Any:
    """(key, value) for each line of ``source``, without its line break (LF or CRLF)."""
    for raw in source:
        value = raw[:-1] if raw.endswith(b"\n") else raw
        if value.endswith(b"\r"):
            value = value[:-1]
        key = None
        if sep is not None:
            k, found, v = value.partition(sep)
            if found:
                key, value = k, v
        yield key, value


def _print_done(pending: collections.deque[Any], out: Any, *, wait: bool) -> None:
    """Print where each acknowledged record went, in input order, as far as acknowledged
    (``wait``: all of them; the producer has been flushed)."""
    while pending and (wait or pending[0].done()):
        fut = pending.popleft()
        if fut.succeeded():
            md = fut.get(0)
            if md.offset >= 0:
                out.write(f"Produced to partition {md.partition} at offset {md.offset}\n")
            else:  # acks=0, or a retry the broker had already written: no offset known
                out.write(f"Produced to partition {md.partition}\n")


@client_command
def _produce(args: argparse.Namespace) -> int:
    from rilke.client.producer import Producer
    from rilke.errors import MessageSizeTooLargeError

    if args.key_separator == "":
        raise ValueError("--key-separator must not be empty")
    if args.max_request_size <= 0:
        raise ValueError(f"--max-request-size must be > 0, not {args.max_request_size}")
    headers = [
        (k, v.encode()) for k, v in parse_key_values(args.header, "--header").items()
    ] or None
    sep = args.key_separator.encode() if args.key_separator else None
    source: BinaryIO
    if args.file is None or args.file == "-":
        source = sys.stdin.buffer
    else:
        try:
            source = open(args.file, "rb")  # noqa: SIM115  (closed below)
        except OSError as exc:
            raise ValueError(f"--file {args.file!r}: {exc.strerror}") from None
    failures: list[BaseException] = []
    pending: collections.deque[Any] = collections.deque()
    out = sys.stdout
    sent = 0
    try:
        with Producer(
            args.bootstrap_servers,
            acks=args.acks,
            compression=args.compression,
            linger_ms=args.linger_ms,
            client_id="rilke-cli",
            max_request_size=args.max_request_size,
            max_block_ms=args.request_timeout * 1000,
            # A record not acknowledged within the request timeout fails (the library's
            # default keeps retrying for two minutes, which is for applications, not for a
            # command).
            delivery_timeout_ms=args.request_timeout * 1000 + args.linger_ms,
            **client_settings(args),
        ) as producer:
            # Check the topic (and partition) before reading input, so a typo fails at once.
            n = producer.partitions_for(args.topic)
            if args.partition is not None and not 0 <= args.partition < n:
                raise ValueError(
                    f"--partition {args.partition}: topic {args.topic!r} has {n} partitions"
                )
            for key, value in _lines(source, sep):
                try:
                    fut = producer.send(
                        args.topic, value, key=key, headers=headers, partition=args.partition
                    )
                except MessageSizeTooLargeError as exc:
                    raise MessageSizeTooLargeError(
                        f"line {sent + 1}: a record of {len(value) + len(key or b'')} bytes is "
                        f"larger than --max-request-size ({args.max_request_size}): raise "
                        f"--max-request-size (and the topic's max.message.bytes)"
                    ) from exc
                fut.add_errback(failures.append)
                sent += 1
                if not args.quiet:
                    pending.append(fut)
                    _print_done(pending, out, wait=False)
            producer.flush()
            _print_done(pending, out, wait=True)
    finally:
        if source is not sys.stdin.buffer:
            source.close()
        out.flush()
    if failures:
        fail(
            f"error: {len(failures)} of {sent} records failed; first: {failures[0]} [{type(failures[0]).__name__}]"
        )
        return EXIT_FAILURE
    return EXIT_OK
