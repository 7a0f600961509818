"""An in-process broker (fake storage) on its own event-loop thread, for service tests."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from fake_storage import FakeLogManager

from rilke.proto import rilke_pb2_grpc as pb_grpc
from rilke.server.config import load_config
from rilke.server.server import BrokerServer


class InProcessBroker:
    def __init__(self, data_dir: Path, **flags: Any) -> None:
        flags.setdefault("listen", "127.0.0.1:0")
        flags.setdefault("scrub_bytes_per_second", 0)  # the fake storage has no segments
        flags["data_dir"] = str(data_dir)
        self.config = load_config(flags, env={})
        self.managers: list[FakeLogManager] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = BrokerServer(self.config, manager_factory=self._manager)
        self.port = self.call(self.server.start())[1]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self.broker = pb_grpc.BrokerStub(self.channel)
        self.admin = pb_grpc.AdminStub(self.channel)

    def _manager(self, config: Any) -> FakeLogManager:
        manager = FakeLogManager(Path(config.data_dir), config.log, now_ms=0)
        self.managers.append(manager)
        return manager

    def call(self, coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        try:
            self.channel.close()
            self.call(self.server.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@contextmanager
def running_broker(data_dir: Path, **flags: Any) -> Iterator[InProcessBroker]:
    broker = InProcessBroker(data_dir, **flags)
    try:
        yield broker
    finally:
        broker.stop()
