"""What the client subcommands share: --bootstrap-servers, one-line errors, exit codes."""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rilke.client.admin import Admin

DEFAULT_BOOTSTRAP = "127.0.0.1:9292"
BOOTSTRAP_ENV = "RILKE_BOOTSTRAP_SERVERS"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        "-b",
        metavar="HOST:PORT[,...]",
        default=os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP),
        help=f"brokers to connect to (default ${BOOTSTRAP_ENV} or {DEFAULT_BOOTSTRAP})",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="deadline of each request to the broker (default 30)",
    )


def fail(message: str) -> None:
    """Print one line to stderr (for errors: the caller returns the exit code)."""
    print(f"rilke: {' '.join(message.split())}", file=sys.stderr)


def client_command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Run a subcommand: broker/operation errors -> one line on stderr and exit 1; bad
    settings -> one line and exit 2."""

    @functools.wraps(fn)
    def wrapper(args: argparse.Namespace) -> int:
        from rilke.errors import RilkeError

        try:
            return fn(args)
        except RilkeError as exc:
            fail(f"error: {exc} [{type(exc).__name__}]")
            return EXIT_FAILURE
        except (ValueError, TypeError) as exc:
            fail(f"bad argument: {exc}")
            return EXIT_USAGE
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): not an error of ours.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            return EXIT_OK

    return wrapper


def parse_key_values(items: list[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` to a dict; raises ValueError naming ``what`` for an item without '='."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must be KEY=VALUE, not {item!r}")
        out[key] = value
    return out


def client_settings(args: argparse.Namespace) -> dict[str, Any]:
    if args.request_timeout <= 0:
        raise ValueError(f"--request-timeout must be > 0, not {args.request_timeout}")
    return {"request_timeout_ms": int(args.request_timeout * 1000)}


def admin_for(args: argparse.Namespace) -> Admin:
    """An Admin client on ``--bootstrap-servers`` with ``--request-timeout`` (use it in a
    ``with``); raises ValueError for a bad timeout. Imported here, not at module level, so
    that `rilke --help` stays quick."""
    from rilke.client.admin import Admin

    return Admin(args.bootstrap_servers, **client_settings(args))
