"""A group whose storage refuses writes (ENOSPC) stalls and recovers: nothing of what was not
durable is acknowledged, applied or sent, and once the disk takes writes again the group
carries on with every entry, no gap and no duplicate."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rilke.errors import KafkaStorageError
from rilke.records.header import iter_headers
from rilke.replication import offsets
from rilke.replication.partition_storage import ReplicatedStorage
from rilke.replication.raft.types import Entry, EntryKind, Ready, Role
from rilke.storage.config import LogConfig
from rilke.storage.log import FlushJob, PartitionLog

from .cluster import Cluster, Node, wait_until
from .helpers import batch


class FailingAppends:
    """Makes ``log.append`` raise ENOSPC on the calls numbered in ``failing`` (1-based)."""

    def __init__(self, log: PartitionLog, failing: set[int]) -> None:
        self.calls = 0
        self.failures = 0
        self._failing = failing
        self._append: Callable[..., Any] = log.append
        log.append = self  # type: ignore[method-assign]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls in self._failing:
            self.failures += 1
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._append(*args, **kwargs)


def _batch_values(node: Node) -> list[int]:
    """The record count of every data batch of ``t-0``'s log, in offset order; checks the
    offsets are contiguous from 0 (no gap)."""
    log = node.logs["t-0"]
    buf = log.read(0, 1 << 24).records
    counts, expected = [], 0
    for _pos, header in iter_headers(buf, check=True):
        assert header.base_offset == expected, (header.base_offset, expected)
        expected = header.next_offset
        if not header.is_control:
            counts.append(header.last_offset_delta + 1)
    assert expected == log.log_end_offset
    return counts


def test_a_failed_persist_stalls_the_group_and_it_recovers_with_nothing_lost(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, size=1)
        await cluster.start()
        try:
            node = await cluster.wait_leader()
            runtime = node.host.runtime
            await runtime.propose("t-0", [batch(1)], [1])
            # One Ready of two batches: its first append lands, its second fails (a partial
            # write of the Ready), then three more attempts fail before the disk has room.
            failing = FailingAppends(node.logs["t-0"], {2, 3, 4, 5})
            pending = runtime.propose("t-0", [batch(2), batch(3)], [2, 3])
            await wait_until(lambda: failing.failures >= 1, what="the first failed persist")
            status = runtime.status("t-0")
            assert status.present and "No space left" in status.storage_error
            with pytest.raises(KafkaStorageError, match="t-0"):
                runtime.propose("t-0", [batch(1)], [1])
            # Nothing acknowledged or applied while the disk is full.
            while failing.failures < 4:
                assert not pending.done()
                assert runtime.status("t-0").commit_index < offsets.raft_index(5)
                await asyncio.sleep(0.01)
            index = await asyncio.wait_for(pending, 10)
            assert runtime.status("t-0").storage_error == ""
            assert runtime.status("t-0").role is Role.LEADER
            # After: the group commits new writes too; the log holds each batch once.
            last = await runtime.propose("t-0", [batch(4)], [4])
            assert last > index
            assert _batch_values(node) == [1, 2, 3, 4]
            assert len(node.data("t-0")) == 4  # applied once each
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_failed_fsync_stalls_the_group_and_it_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, size=1)
        await cluster.start()
        try:
            node = await cluster.wait_leader()
            runtime = node.host.runtime
            await runtime.propose("t-0", [batch(1)], [1])
            real_run = FlushJob.run
            failures = [0]

            def failing_run(job: FlushJob) -> None:
                if failures[0] < 3:
                    failures[0] += 1
                    raise OSError(errno.ENOSPC, "No space left on device")
                real_run(job)

            monkeypatch.setattr(FlushJob, "run", failing_run)
            pending = runtime.propose("t-0", [batch(2)], [2])
            while failures[0] < 3:
                assert not pending.done()  # not acknowledged before it is durable
                await asyncio.sleep(0.01)
            await asyncio.wait_for(pending, 10)
            assert runtime.status("t-0").storage_error == ""
            await runtime.propose("t-0", [batch(3)], [3])
            assert _batch_values(node) == [1, 2, 3]
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_stalled_follower_neither_acknowledges_nor_loses_and_catches_up(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            runtime = leader.host.runtime
            await runtime.propose("t-0", [batch(1)], [1])
            follower = next(n for n in cluster.nodes.values() if n is not leader)
            failing = FailingAppends(follower.logs["t-0"], set(range(1, 8)))
            index = await runtime.propose("t-0", [batch(2)], [2])  # the other follower acks
            await wait_until(lambda: failing.failures >= 1, what="the follower to fail")
            # The stalled follower does not acknowledge what it could not write.
            progress = runtime.status("t-0").progress
            assert progress[follower.node_id].match < index
            assert follower.host.runtime.status("t-0").storage_error
            await wait_until(
                lambda: follower.host.runtime.status("t-0").applied_index >= index,
                what="the follower to catch up once its disk takes writes",
            )
            assert follower.host.runtime.status("t-0").storage_error == ""
            assert _batch_values(follower) == [1, 2]
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_replicated_storage_cuts_back_a_partial_persist_and_tells_its_partition(
    tmp_path: Path,
) -> None:
    log = PartitionLog.open(tmp_path / "p", LogConfig(), now_ms=0, recover=True)
    try:
        storage = ReplicatedStorage.open(log)
        seen: list[Ready] = []
        storage.observer = seen.append  # type: ignore[assignment]
        first = Entry(1, 2, batch(2), EntryKind.NORMAL, 2)
        second = Entry(1, 5, batch(3), EntryKind.NORMAL, 3)
        ready = Ready(entries=[first, second])
        failing = FailingAppends(log, {2})
        with pytest.raises(OSError, match="No space"):
            storage.persist(ready, now_ms=0)
        # The first batch, written before the failure, is cut back; the partition rebuilds
        # from the log (nothing of the failed attempt acknowledged or counted).
        assert log.log_end_offset == 0 and storage.last_index() == 0
        assert len(seen) == 1 and seen[0].truncate_from == 1 and not seen[0].entries
        storage.rewind(ready)
        storage.persist(ready, now_ms=0)  # the retry writes both, contiguous
        assert failing.calls == 4
        assert log.log_end_offset == 5 and seen[-1] is ready
        assert storage.term(5) == 1 and storage.term(2) == 1
    finally:
        log.close()
