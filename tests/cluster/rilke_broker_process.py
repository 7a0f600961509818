"""Start and stop a real `rilke server` process for end-to-end tests.

    with BrokerProcess(tmp_path / "data") as broker:   # started, listening on 127.0.0.1:<free>
        channel = grpc.insecure_channel(broker.address)
        ...
    # stopped with SIGTERM (then SIGKILL after a deadline); always killed in the end

The process runs `sys.executable -m rilke server --listen 127.0.0.1:0 --data-dir DIR` with
PYTHONPATH set to the repository root. ``start()`` waits (with a deadline) for the line
``rilke broker listening on HOST:PORT`` on its stdout and raises BrokerStartError (with the
process's stderr) if the process exits or the deadline passes first. stderr goes to
``DIR/../broker-<n>.log`` so a failing test can show it (``broker.log_text()``).
"""

from __future__ import annotations

import itertools
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_LISTENING = "rilke broker listening on "
_counter = itertools.count()


class BrokerStartError(RuntimeError):
    pass


class BrokerProcess:
    """One broker process. Not started until ``start()`` (or ``with``)."""

    def __init__(self, data_dir: Path, *extra_args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.proc: subprocess.Popen[str] | None = None
        self.port: int | None = None
        self.log_path = self.data_dir.parent / f"broker-{next(_counter)}.log"
        self._lines: queue.Queue[str | None] = queue.Queue(maxsize=10_000)
        self._stderr: IO[str] | None = None
        self._pump_thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        assert self.port is not None, "broker not started"
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "rilke", "server",
            "--listen", "127.0.0.1:0",
            "--data-dir", str(self.data_dir),
            *self.extra_args,
        ]  # fmt: skip

    def spawn(self) -> subprocess.Popen[str]:
        """Start the process without waiting for it to listen."""
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = open(self.log_path, "a", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            stdin=subprocess.DEVNULL,
            env=env,
            text=True,
        )
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self.proc.stdout,), daemon=True
        )
        self._pump_thread.start()
        return self.proc

    def _pump(self, stream: IO[str] | None) -> None:
        # The pump owns the stdout pipe: it closes it at EOF (the process has exited), so no
        # unclosed pipe is left for the garbage collector to warn about.
        assert stream is not None
        try:
            for line in stream:
                try:
                    self._lines.put_nowait(line)
                except queue.Full:
                    pass
        finally:
            stream.close()
            try:  # the end marker matters only to a start() still draining the queue
                self._lines.put(None, timeout=5)
            except queue.Full:
                pass

    def start(self, timeout_s: float = START_TIMEOUT_S) -> BrokerProcess:
        """Spawn and wait until it listens; raises BrokerStartError (process killed)."""
        self.spawn()
        deadline = time.monotonic() + timeout_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise BrokerStartError(
                    f"broker did not listen within {timeout_s}s:\n{self.log_text()}"
                )
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                self.wait(5)
                raise BrokerStartError(
                    f"broker exited with {self.proc.returncode if self.proc else None}:\n"
                    f"{self.log_text()}"
                )
            if line.startswith(_LISTENING):
                self.port = int(line[len(_LISTENING) :].strip().rpartition(":")[2])
                return self

    def wait_for_line(self, prefix: str, timeout_s: float = START_TIMEOUT_S) -> str:
        """The rest of the next stdout line starting with ``prefix`` (after ``start()``, e.g.
        ``rilke kafka listener on ``); raises BrokerStartError at the deadline or exit."""
        deadline = time.monotonic() + timeout_s
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                raise BrokerStartError(f"broker exited before {prefix!r}:\n{self.log_text()}")
            if line.startswith(prefix):
                return line[len(prefix) :].strip()
        raise BrokerStartError(f"no {prefix!r} line within {timeout_s}s:\n{self.log_text()}")

    def wait(self, timeout_s: float) -> int | None:
        """Wait for the process to exit; its return code, or None at the deadline."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(timeout_s) is None:
                self.kill()
        self._close_files()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL (kill -9) and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_files()

    def _close_files(self) -> None:
        """After the process is reaped: let the pump reach EOF (it closes stdout), close stderr."""
        if self._pump_thread is not None and (self.proc is None or self.proc.poll() is not None):
            self._pump_thread.join(10)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        try:
            self.stop()
        finally:
            self.kill()


# What the ``broker_factory`` fixture gives a test. Defined here, not in conftest.py: several
# conftest.py files share that module name, so ``from conftest import ...`` can find another one.
BrokerFactory = Callable[..., BrokerProcess]
