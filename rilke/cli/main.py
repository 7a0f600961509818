"""The `rilke` command: one entry point, one subcommand module per area.

Each subcommand module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed namespace, returning an exit code). Exit codes: 0 success,
1 a failure reported by the broker or the operation, 2 bad arguments or configuration,
130 interrupted.

Global flags go before or after the subcommand, as kcat and rpk users type them
(:func:`hoist_global_flags`): ``--log-level`` (any case; default WARNING, so the library's
INFO lines stay off the terminal; ``rilke server`` logs at INFO unless told) anywhere, and
the client flags ``-b/--bootstrap-servers`` and ``--request-timeout`` also before it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rilke import __version__
from rilke.cli.common import EXIT_INTERRUPTED, EXIT_USAGE

# Modules that add subcommands, in the order `rilke --help` lists them.
_COMMAND_MODULES = (
    "rilke.cli.server_cmd",
    "rilke.cli.topic_cmd",
    "rilke.cli.produce_cmd",
    "rilke.cli.consume_cmd",
    "rilke.cli.offsets_cmd",
    "rilke.cli.group_cmd",
    "rilke.cli.cluster_cmd",
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
    parser.add_argument("--version", action="version", version=f"rilke {__version__}")
    parser.add_argument(
        "--log-level",
        default=None,
        type=_log_level,
        metavar="LEVEL",
        help="logging level: debug, info, warning, error (any case; default warning, info "
        "for 'rilke server'); before or after the subcommand",
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


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}

# Flags of the client subcommands that may also come before the subcommand (moved after it).
_CLIENT_FLAGS_WITH_VALUE = ("-b", "--bootstrap-servers", "--request-timeout")


def _log_level(text: str) -> str:
    level = text.strip().upper()
    level = _LEVEL_ALIASES.get(level, level)
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a log level (debug, info, warning, error, critical)"
        )
    return level


def _takes_own_log_level(parser: argparse.ArgumentParser, command: str) -> bool:
    """Whether subcommand ``command`` defines a --log-level of its own (``rilke server``
    does: it is the broker's, not the command line's)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            sub = action.choices[command]
            return any("--log-level" in a.option_strings for a in sub._actions)
    return False


def hoist_global_flags(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``argv`` rearranged for argparse: ``--log-level`` after the subcommand moves before
    it (unless the subcommand has its own), and client flags before the subcommand move to
    the end, where the subcommand's parser takes them. Everything else keeps its order."""
    commands: set[str] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands.update(action.choices)
    head: list[str] = []
    moved_to_end: list[str] = []
    i = 0
    while i < len(argv) and argv[i] not in commands:
        arg = argv[i]
        if arg == "--":
            return argv
        if arg in _CLIENT_FLAGS_WITH_VALUE and i + 1 < len(argv):
            moved_to_end += argv[i : i + 2]
            i += 2
            continue
        if arg.startswith(tuple(f"{f}=" for f in _CLIENT_FLAGS_WITH_VALUE if f.startswith("--"))):
            moved_to_end.append(arg)
            i += 1
            continue
        head.append(arg)
        if arg == "--log-level" and i + 1 < len(argv):
            head.append(argv[i + 1])
            i += 1
        i += 1
    if i >= len(argv):
        return head + moved_to_end
    command = argv[i]
    rest = argv[i + 1 :]
    if not _takes_own_log_level(parser, command):
        kept: list[str] = []
        j = 0
        while j < len(rest):
            arg = rest[j]
            if arg == "--":
                kept += rest[j:]
                break
            if arg == "--log-level" and j + 1 < len(rest):
                head += rest[j : j + 2]
                j += 2
                continue
            if arg.startswith("--log-level="):
                head.append(arg)
                j += 1
                continue
            kept.append(arg)
            j += 1
        rest = kept
    return [*head, command, *rest, *moved_to_end]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(hoist_global_flags(parser, raw))
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    level = args.log_level or ("INFO" if args.command == "server" else "WARNING")
    logging.basicConfig(
        level=getattr(logging, level),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
