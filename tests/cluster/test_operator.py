"""`rilke server` as an operator meets it: bad places and addresses, a busy data directory.

Each failure to start exits 1 with one ``rilke server: ...`` line on stderr that names the
problem and what to do, and no traceback.
"""

from __future__ import annotations

import socket
from pathlib import Path

from rilke_broker_process import BrokerFactory, BrokerProcess

TIMEOUT = 30


def refused(process: BrokerProcess) -> str:
    """Run a broker that must not start; return its one error line (and check exit 1)."""
    process.spawn()
    try:
        assert process.wait(TIMEOUT) == 1, process.log_text()
    finally:
        process.kill()
    text = process.log_text()
    assert "Traceback" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("rilke server: ")]
    assert len(lines) == 1, text
    return lines[0]


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    line = refused(BrokerProcess(tmp_path / "data"))
    assert str(tmp_path / "data") in line and "--data-dir" in line


def test_port_file_in_a_missing_directory(tmp_path: Path) -> None:
    process = BrokerProcess(tmp_path / "data", "--port-file", str(tmp_path / "no" / "port"))
    line = refused(process)
    assert str(tmp_path / "no") in line


def test_address_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = BrokerProcess(tmp_path / "data", "--listen", f"127.0.0.1:{port}")
        line = refused(process)
    assert f"127.0.0.1:{port}" in line and "in use" in line and "--listen" in line


def test_second_broker_names_the_directory_once_and_says_what_to_do(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    first = broker_factory(tmp_path / "data")
    line = refused(BrokerProcess(first.data_dir))
    assert line.count(str(first.data_dir)) == 1 and "--data-dir" in line
