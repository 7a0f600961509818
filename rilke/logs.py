"""The broker's logging: levels by name in any case, and one JSON object per line.

Used by ``rilke server`` (``--log-level`` / ``RILKE_LOG_LEVEL``, ``--log-format`` /
``RILKE_LOG_FORMAT``); the other commands set their level in ``rilke.cli.main``.
"""

from __future__ import annotations

import json
import logging
import time

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_LEVEL_ALIASES = {"WARN": "WARNING", "FATAL": "CRITICAL"}


def parse_level(text: str) -> str:
    """``text`` as a level name (DEBUG ... CRITICAL), any case; ValueError naming the choices."""
    level = text.strip().upper()
    level = _LEVEL_ALIASES.get(level, level)
    if level not in LOG_LEVELS:
        raise ValueError(f"{text!r} is not a log level (debug, info, warning, error, critical)")
    return level


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601 with milliseconds), level, logger,
    message, and the traceback as ``exc_info`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, log_format: str) -> None:
    """Set the root logger's level and the format of every handler it has (one is added
    when there is none)."""
    root = logging.getLogger()
    root.setLevel(getattr(logging, parse_level(level)))
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
