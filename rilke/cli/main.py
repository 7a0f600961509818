"""The `rilke` command: one entry point, one subcommand module per area.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Exit codes: 0 success,
1 a failure reported by the broker or the operation, 2 bad arguments or configuration,
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rilke.cli.common import EXIT_INTERRUPTED, EXIT_USAGE

# Modules that add subcommands, in the order `rilke --help` lists them.
_COMMAND_MODULES = (
    "rilke.cli.server_cmd",
    "rilke.cli.topic_cmd",
    "rilke.cli.produce_cmd",
    "rilke.cli.consume_cmd",
    "rilke.cli.offsets_cmd",
    "rilke.cli.group_cmd",
    "rilke.cli.bench_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rilke",
        description="Rilke: an event-streaming log (Kafka-style topics, partitions and groups).",
        epilog=(
            "Client commands connect to --bootstrap-servers (default $RILKE_BOOTSTRAP_SERVERS "
            "or 127.0.0.1:9292). Exit codes: 0 success, 1 a failure reported by the broker or "
            "the operation, 2 bad arguments or settings, 130 interrupted; errors are one line "
            "on stderr. 'rilke COMMAND --help' says more."
        ),
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(subparsers)
    _fill_descriptions(parser)
    return parser


def _fill_descriptions(parser: argparse.ArgumentParser) -> None:
    """Give every (sub-)subcommand without a description its one-line help as one, so that
    ``rilke X --help`` always says what X does."""
    for action in parser._actions:
        if not isinstance(action, argparse._SubParsersAction):
            continue
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        for name, sub in action.choices.items():
            text = helps.get(name)
            if not sub.description and text:
                sub.description = text[0].upper() + text[1:] + "."
            _fill_descriptions(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(
        level=getattr(logging, args.log_level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
