"""Fixtures for end-to-end tests with real broker processes (see rilke_broker_process.py).

- ``broker_factory(data_dir=None, *extra_args, env=None)`` starts a broker and returns its
  BrokerProcess; every broker it started is killed at the end of the test.
- ``broker``: one running broker on a fresh temporary data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rilke_broker_process import BrokerFactory, BrokerProcess

try:
    import rilke.storage.manager  # noqa: F401
except ImportError:  # a broker needs the storage layer: before it is merged, nothing to run
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[BrokerFactory]:
    started: list[BrokerProcess] = []

    def start(
        data_dir: Path | None = None, *extra_args: str, env: dict[str, str] | None = None
    ) -> BrokerProcess:
        process = BrokerProcess(data_dir or tmp_path / "data", *extra_args, env=env)
        started.append(process)
        return process.start()

    try:
        yield start
    finally:
        for process in started:
            try:
                process.stop(10)
            finally:
                process.kill()


@pytest.fixture
def broker(broker_factory: BrokerFactory) -> BrokerProcess:
    return broker_factory()
