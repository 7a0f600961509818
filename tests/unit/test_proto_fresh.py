"""The generated protobuf modules must match rilke/proto/rilke.proto."""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_are_fresh(tmp_path: Path) -> None:
    (tmp_path / "rilke" / "proto").mkdir(parents=True)
    shutil.copy(ROOT / "rilke" / "proto" / "rilke.proto", tmp_path / "rilke" / "proto")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I",
            ".",
            "--python_out=.",
            "--grpc_python_out=.",
            "--pyi_out=.",
            "rilke/proto/rilke.proto",
        ],
        cwd=tmp_path,
        check=True,
    )
    for name in ("rilke_pb2.py", "rilke_pb2.pyi", "rilke_pb2_grpc.py"):
        fresh = (tmp_path / "rilke" / "proto" / name).read_text()
        committed = (ROOT / "rilke" / "proto" / name).read_text()
        assert fresh == committed, f"rilke/proto/{name} is stale: run scripts/gen_proto.sh"
