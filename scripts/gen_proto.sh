#!/usr/bin/env bash
# Regenerates rilke/proto/*_pb2*.py(i) from rilke/proto/rilke.proto. Run from anywhere; needs
# grpcio-tools (in the `test` extra). tests/unit/test_proto_fresh.py fails when they are stale.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. rilke/proto/rilke.proto
