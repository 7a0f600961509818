"""A full disk reaches the client as KafkaStorageError (retriable, saying so), and a refused
write changes nothing: the retry of an idempotent batch is written, not taken for a
duplicate (issue 8)."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

import pytest
from produce_batches import batch_values, make_batch

from rilke import errors
from rilke.server.partition import LocalPartition
from rilke.server.services import to_error
from rilke.storage import segment as segment_module
from rilke.storage.config import LogConfig
from rilke.storage.log import PartitionLog


def _no_space(*args: object) -> int:
    raise OSError(errno.ENOSPC, "No space left on device")


def test_an_append_on_a_full_disk_is_a_retriable_storage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        config = LogConfig()
        plog = PartitionLog.open(tmp_path / "t-0", config, now_ms=0, recover=False)
        part = LocalPartition("t", 0, plog, config, state_dir=plog.directory)
        await part.append(make_batch([b"before"]), 1)
        batch = make_batch([b"x"], producer_id=7, producer_epoch=0, base_sequence=0)
        with monkeypatch.context() as m:
            m.setattr(segment_module, "_pwrite", _no_space)
            m.setattr(segment_module, "_pwritev", _no_space)
            with pytest.raises(errors.KafkaStorageError) as refused:
                part.append(batch, -1)
        assert refused.value.retriable
        assert "disk full" in str(refused.value)
        assert str(tmp_path) in str(refused.value)  # the data dir
        assert part.offsets().log_end_offset == 1
        assert batch_values(part.read(0, 1 << 20).records) == [(0, b"before")]
        retried = await part.append(batch, -1)  # space freed: the same batch again
        assert not retried.duplicate
        assert retried.base_offset == 1
        assert batch_values(part.read(0, 1 << 20).records) == [(0, b"before"), (1, b"x")]
        part.close()
        plog.close()

    asyncio.run(main())


def test_a_full_disk_elsewhere_is_answered_as_a_storage_error() -> None:
    full = OSError(errno.ENOSPC, "No space left on device", "/data/t-0")
    answer = to_error(full)
    assert answer.code == errors.KafkaStorageError.code == 16
    assert "disk full" in answer.message and "/data/t-0" in answer.message
    assert errors.for_code(answer.code) is errors.KafkaStorageError


def test_maintenance_on_a_full_disk_logs_one_line_per_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import time

    from rilke.server.broker import Broker
    from rilke.server.config import load_config
    from rilke.storage.manager import LogManager

    config = load_config({"data_dir": str(tmp_path)}, env={})
    broker = Broker(config, LogManager(tmp_path, config.log, now_ms=int(time.time() * 1000)))
    try:
        broker.create_topic("t", 20)

        async def full(self: LocalPartition, now_ms: int) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(LocalPartition, "maintain", full)
        with caplog.at_level(logging.ERROR):
            asyncio.run(broker.maintain())
        lines = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert len(lines) == 1
        assert "disk full" in lines[0].getMessage() and "20 partition(s)" in lines[0].getMessage()
        assert lines[0].exc_info is None
    finally:
        monkeypatch.undo()
        broker.close()
