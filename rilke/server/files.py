"""Small files the broker keeps in its data directory, replaced atomically."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, unique_tmp: bool = False) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    Writes a temporary file beside it, fsyncs it, renames it over ``path`` and fsyncs the
    directory. ``unique_tmp``: a temporary name no other writer uses (for writers that may
    overlap, e.g. one on a worker thread). Raises OSError.
    """
    tmp = path.with_name(path.name + (f".{os.urandom(4).hex()}" if unique_tmp else "") + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
