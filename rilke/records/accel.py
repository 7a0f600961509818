"""Which implementation of the codec's hot loops (:mod:`rilke.records._hot`) runs.

``_hot.py`` is plain Python; ``scripts/build_accel.sh`` compiles the same file with mypyc into
an extension module beside it, which Python's import prefers. This module takes the compiled
one only when it is there, not older than ``_hot.py`` (a stale build would run old code: it is
refused with a warning), and ``RILKE_PURE_PYTHON`` is not set to 1; otherwise the source.
:data:`COMPILED` says which was taken. Nothing else changes: both run the same source and
raise the same errors.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import logging
import os
import sys
from pathlib import Path
from types import ModuleType

PURE_ENV = "RILKE_PURE_PYTHON"
"""Set to 1 to run the pure-Python hot loops even where the accelerator is built."""

_NAME = "rilke.records._hot"
_SOURCE = Path(__file__).with_name("_hot.py")

log = logging.getLogger(__name__)


def compiled_path() -> Path | None:
    """The built extension module of ``_hot.py`` beside it, if there is one."""
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = _SOURCE.with_name("_hot" + suffix)
        if candidate.is_file():
            return candidate
    return None


def load_source() -> ModuleType:
    """``_hot.py`` itself, as a module (a fresh one: not registered in sys.modules)."""
    spec = importlib.util.spec_from_file_location(_NAME, _SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def decide(source: Path, built: Path | None, force_pure: bool) -> str:
    """Which hot loops to run: "compiled", "pure" (none built, or ``force_pure``), or "stale"
    (the built module is older than its source: it would run old code)."""
    if force_pure or built is None:
        return "pure"
    if built.stat().st_mtime < source.stat().st_mtime:
        return "stale"
    return "compiled"


def _choose() -> tuple[ModuleType, bool]:
    built = compiled_path()
    decision = decide(_SOURCE, built, os.environ.get(PURE_ENV) == "1")
    if decision == "compiled":
        module = importlib.import_module(_NAME)
        return module, str(getattr(module, "__file__", "")).endswith(
            tuple(importlib.machinery.EXTENSION_SUFFIXES)
        )
    if decision == "stale":
        log.warning(
            "%s is older than %s: running the pure-Python codec (run scripts/build_accel.sh)",
            built,
            _SOURCE,
        )
    module = load_source()
    sys.modules[_NAME] = module
    return module, False


hot, COMPILED = _choose()
"""The hot-loop module in use, and whether it is the compiled accelerator."""
