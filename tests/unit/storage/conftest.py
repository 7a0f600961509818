"""Fixtures and helpers for the storage tests."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import os

import pytest

from rilke.storage.log import PartitionLog


@pytest.fixture(autouse=True)
def _no_fsync(monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync is what a crash test cannot observe in-process and what makes a small disk slow:
    the tests here skip it (the SIGKILL test's child process still syncs)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)


def crash(log: PartitionLog) -> None:
    """Drop a log as kill -9 would: no flush, no checkpoint, buffered index entries lost.

    What was written to the files stays (the kernel keeps it), as after a process crash.
    """
    for segment in log.segments:
        for index_file in (segment.offset_index._file, segment.time_index._file):
            if index_file._fd is not None:
                os.close(index_file._fd)
                index_file._fd = None
        os.close(segment._fd)
        segment._fd = -1
    log._closed = True
