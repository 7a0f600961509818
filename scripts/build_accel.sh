#!/usr/bin/env bash
# Build the optional accelerator: compile rilke/records/_hot.py (the codec's hot loops) with
# mypyc into an extension module beside it. Needs a C compiler and mypy (the test extra).
# Without it, the same file runs as plain Python (rilke.records.accel picks one).
# Usage: scripts/build_accel.sh [python]   (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! command -v "${CC:-cc}" >/dev/null 2>&1; then
    echo "build_accel: no C compiler (${CC:-cc}): the pure-Python codec runs" >&2
    exit 1
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# mypyc writes its C sources and objects under build/; keep them out of the tree.
"$PY" - "$tmp" <<'PYEOF'
import os, sys
from setuptools import setup
from mypyc.build import mypycify

tmp = sys.argv[1]
sys.argv = ["setup.py", "build_ext", "--inplace", "--build-temp", os.path.join(tmp, "t"),
            "--build-lib", os.path.join(tmp, "l")]
setup(name="rilke-accel", ext_modules=mypycify(["--no-warn-unused-configs", "rilke/records/_hot.py"], target_dir=os.path.join(tmp, "c")),
      script_args=sys.argv[1:])
PYEOF
"$PY" -c "from rilke.records import accel; assert accel.COMPILED, 'the built module was not taken'; print('accelerator:', accel.hot.__file__)"
