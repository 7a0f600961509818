"""A real, small file system for disk-full tests: a tmpfs of a few MiB, mounted for one test.

Mounting needs root (or CAP_SYS_ADMIN) on Linux; elsewhere the test is skipped and says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def small_file_system(where: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` at ``where`` (created) for the block; unmounted after,
    even when the block fails. Skips the test when mounting is not permitted here."""
    if not sys.platform.startswith("linux"):
        pytest.skip("disk-full test needs Linux (tmpfs)")
    if os.geteuid() != 0:
        pytest.skip("disk-full test needs root to mount a small tmpfs")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"disk-full test: cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30, check=False)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write a file in ``directory`` until the file system is full; returns its path."""
    path = directory / name
    chunk = b"\0" * 65536
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                break
        while True:  # the last partial chunk
            try:
                if os.write(fd, b"\0" * 512) == 0:
                    break
            except OSError:
                break
    finally:
        os.close(fd)
    return path
