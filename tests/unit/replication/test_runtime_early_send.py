"""A leader sends its appends before its own fsync (Raft thesis 10.2.1): its followers write
and sync the entries while it syncs them, and nothing is acknowledged before a quorum holds
them durably; a leader whose own sync fails still commits nothing twice and loses nothing."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

from rilke.replication import offsets
from rilke.replication.raft_storage import StorageFlush
from rilke.replication.runtime import RaftRuntime

from .cluster import Cluster, Node, wait_until
from .helpers import batch


def _hold_flushes(runtime: RaftRuntime) -> asyncio.Event:
    """Make ``runtime``'s group-commit windows wait for the returned event first."""
    release = asyncio.Event()
    real = runtime._run_flushes

    async def held(flushes: list[StorageFlush]) -> None:
        await release.wait()
        await real(flushes)

    runtime._run_flushes = held  # type: ignore[method-assign]
    return release


def _followers(cluster: Cluster, leader: Node) -> list[Node]:
    return [n for n in cluster.nodes.values() if n is not leader]


def test_followers_get_the_entries_while_the_leader_syncs(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, size=3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            runtime = leader.host.runtime
            await runtime.propose("t-0", [batch(1)], [1])
            end = leader.logs["t-0"].log_end_offset
            release = _hold_flushes(runtime)
            pending = runtime.propose("t-0", [batch(2)], [2])
            # The old order (sync, then send) holds the appends until the leader's sync ends.
            await wait_until(
                lambda: all(
                    f.logs["t-0"].log_end_offset > end for f in _followers(cluster, leader)
                ),
                what="both followers to hold the entry while the leader's sync is held",
            )
            assert not pending.done()  # applied and acknowledged only after the window
            release.set()
            index = await asyncio.wait_for(pending, 10)
            assert index == offsets.raft_index(end + 1)
            await wait_until(
                lambda: all(len(n.data("t-0")) == 2 for n in cluster.nodes.values()),
                what="every replica to apply both entries",
            )
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_a_leader_whose_sync_fails_after_sending_commits_each_entry_once(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, size=3)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            runtime = leader.host.runtime
            await runtime.propose("t-0", [batch(1)], [1])
            real = runtime._run_flushes
            failures = [0]

            async def failing(flushes: list[StorageFlush]) -> None:
                if failures[0] < 2:
                    failures[0] += 1
                    raise OSError(errno.EIO, "Input/output error")
                await real(flushes)

            runtime._run_flushes = failing  # type: ignore[method-assign]
            pending = runtime.propose("t-0", [batch(2), batch(3)], [2, 3])
            index = await asyncio.wait_for(pending, 15)
            assert failures[0] == 2
            last = await runtime.propose("t-0", [batch(4)], [4])
            assert last > index
            await wait_until(
                lambda: all(len(n.data("t-0")) == 4 for n in cluster.nodes.values()),
                what="every replica to apply the four entries",
            )
            logs = [bytes(n.logs["t-0"].read(0, 1 << 20).records) for n in cluster.nodes.values()]
            assert logs[0] == logs[1] == logs[2]  # the same entries, once each, everywhere
            for n in cluster.nodes.values():
                assert n.data("t-0") == leader.data("t-0")
        finally:
            await cluster.close()

    asyncio.run(scenario())
