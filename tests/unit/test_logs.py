"""The broker's log settings: RILKE_LOG_LEVEL / RILKE_LOG_FORMAT and JSON lines (issue 13)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rilke.errors import InvalidConfigError
from rilke.logs import JsonFormatter, configure_logging, parse_level
from rilke.server.config import load_config
from rilke.storage.config import LogConfig


def test_rilke_log_level_is_the_brokers_level_not_a_topic_default() -> None:
    """RILKE_LOG_LEVEL used to be read as the topic config `level` and stopped the start."""
    config = load_config({}, env={"RILKE_LOG_LEVEL": "debug", "RILKE_LOG_FORMAT": "JSON"})
    assert config.log_level == "DEBUG"
    assert config.log_format == "json"
    assert config.log == LogConfig()
    assert config.sources["log_level"] == "RILKE_LOG_LEVEL"


def test_log_settings_from_file_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "rilke.toml"
    path.write_text('log_level = "warning"\nlog_format = "json"\n')
    config = load_config({}, env={}, config_file=path)
    assert (config.log_level, config.log_format) == ("WARNING", "json")
    config = load_config({"log_level": "Error", "log_format": "text"}, env={}, config_file=path)
    assert (config.log_level, config.log_format) == ("ERROR", "text")
    assert load_config({}, env={}).log_level == "INFO"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RILKE_LOG_LEVEL": "loud"}, "log_level .*RILKE_LOG_LEVEL.*'loud' is not a log level"),
        ({"RILKE_LOG_FORMAT": "xml"}, "log_format .*RILKE_LOG_FORMAT.*not one of text, json"),
    ],
)
def test_bad_log_settings_name_themselves(env: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidConfigError, match=message):
        load_config({}, env=env)


def test_levels_in_any_case() -> None:
    assert parse_level(" warn ") == "WARNING"
    assert parse_level("Debug") == "DEBUG"
    with pytest.raises(ValueError, match="not a log level"):
        parse_level("verbose")


def test_json_lines_carry_level_logger_message_and_traceback() -> None:
    formatter = JsonFormatter()
    record = logging.LogRecord("rilke.x", logging.ERROR, __file__, 1, "cut %d bytes", (7,), None)
    entry = json.loads(formatter.format(record))
    assert entry["level"] == "ERROR"
    assert entry["logger"] == "rilke.x"
    assert entry["message"] == "cut 7 bytes"
    assert entry["time"].endswith("Z")
    try:
        raise OSError("disk")
    except OSError:
        record.exc_info = sys.exc_info()
    line = formatter.format(record)
    assert "\n" not in line
    assert "OSError: disk" in json.loads(line)["exc_info"]


def test_configure_logging_sets_level_and_format() -> None:
    root = logging.getLogger()
    saved = (root.level, [h.formatter for h in root.handlers])
    try:
        configure_logging("warning", "json")
        assert root.level == logging.WARNING
        assert all(isinstance(h.formatter, JsonFormatter) for h in root.handlers)
    finally:
        root.setLevel(saved[0])
        for handler, formatter in zip(root.handlers, saved[1], strict=False):
            handler.setFormatter(formatter)


def test_rilke_server_refuses_a_bad_log_level_before_starting(tmp_path: Path) -> None:
    env = {**os.environ, "RILKE_LOG_LEVEL": "loud"}
    done = subprocess.run(
        [sys.executable, "-m", "rilke.cli.main", "server", "--data-dir", str(tmp_path / "d")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "RILKE_LOG_LEVEL" in done.stderr
    assert not (tmp_path / "d").exists()
