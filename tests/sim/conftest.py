"""Options for the simulation tests.

``--sim-sweep N`` runs the long sweep (N seeds of the ``random`` scenario, marked ``sweep``);
without it the sweep is skipped and CI runs the fixed seed budget. The option is registered
here, so pass it with this directory on the command line::

    python -m pytest tests/sim --sim-sweep 1000 -k sweep
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--sim-sweep",
        type=int,
        default=0,
        metavar="SEEDS",
        help="run the long Raft simulation sweep over this many seeds",
    )
    parser.addoption(
        "--sim-first-seed", type=int, default=10_000, help="the first seed of the sweep"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--sim-sweep", default=0):
        return
    skip = pytest.mark.skip(reason="the long sweep runs only with --sim-sweep N")
    for item in items:
        if "sweep" in item.keywords:
            item.add_marker(skip)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    for line in getattr(config, "sim_sweep_lines", []):
        terminalreporter.write_line(line)
