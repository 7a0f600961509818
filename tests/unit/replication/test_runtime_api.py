"""What the node wiring and the replicated partition use from RaftRuntime and ReplicationHost,
over the real transport on 127.0.0.1: learners and membership changes, leader transfer, read
index, status with the leader's view of every member (in-sync replicas), remove_group, and a
group whose log the host opens in a named directory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from rilke.errors import InvalidRequestError, NotLeaderError
from rilke.replication.raft.types import Config, Entry, Role
from rilke.replication.raft_storage import STATE_FILE
from rilke.replication.runtime import GroupRemovedError

from .cluster import Cluster, wait_until
from .helpers import batch, open_storage


def test_learner_replays_then_is_promoted_and_a_voter_is_removed(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, size=4, voters=(1, 2, 3))
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            runtime = leader.host.runtime
            first = await runtime.propose("t-0", [batch(2, b"a")], [2])
            four = cluster.nodes[4]
            assert four.data("t-0") == []  # not a member yet: nothing sent to it

            await runtime.add_learner("t-0", 4)
            assert runtime.status("t-0").learners == frozenset({4})
            await wait_until(
                lambda: four.host.runtime.status("t-0").applied_index >= first,
                what="the learner to replay the log",
            )
            assert len(four.data("t-0")) == 1
            assert four.host.runtime.status("t-0").role is Role.FOLLOWER
            # One change at a time, and nonsense is refused at once.
            with pytest.raises(InvalidRequestError):
                runtime.add_learner("t-0", 4)
            with pytest.raises(NotLeaderError):
                four.host.runtime.add_learner("t-0", 5)

            await wait_until(
                lambda: (
                    runtime.status("t-0").progress[4].match >= runtime.status("t-0").commit_index
                ),
                what="the learner to catch up",
            )
            await runtime.promote_learner("t-0", 4)
            status = runtime.status("t-0")
            assert status.voters == frozenset({1, 2, 3, 4}) and status.learners == frozenset()

            gone = next(n for n in (1, 2, 3) if n != leader.node_id)
            await runtime.remove_member("t-0", gone)
            assert runtime.status("t-0").voters == frozenset({1, 2, 3, 4}) - {gone}
            last = await runtime.propose("t-0", [batch(1, b"b")], [1])
            await wait_until(
                lambda: four.host.runtime.status("t-0").applied_index >= last,
                what="the promoted node to apply",
            )
            await wait_until(
                lambda: four.host.runtime.status("t-0").voters == runtime.status("t-0").voters,
                what="the promoted node to apply the configuration",
            )
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_transfer_leadership_moves_the_leader(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await leader.host.runtime.propose("t-0", [batch(1)], [1])
            target = next(n for n in cluster.nodes if n != leader.node_id)
            # Asked on a follower: forwarded to the leader.
            cluster.nodes[target].host.runtime.transfer_leadership("t-0", target)
            await wait_until(
                lambda: cluster.nodes[target].host.runtime.status("t-0").role is Role.LEADER,
                what=f"node {target} to lead",
            )
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_read_index_on_leader_and_follower_sees_every_committed_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            follower = next(n for n in cluster.nodes.values() if n is not leader)
            for i in range(5):
                index = await leader.host.runtime.propose("t-0", [batch(1, b"%d" % i)], [1])
                # Committed on the leader; the follower may not know it yet. A read point
                # taken on the follower covers it, and the follower has applied that far.
                read = await follower.host.runtime.read_index("t-0")
                assert read >= index
                assert follower.host.runtime.status("t-0").applied_index >= index
                assert len(follower.data("t-0")) == i + 1
            assert await leader.host.runtime.read_index("t-0") >= index
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_read_index_without_a_quorum_times_out(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            await leader.host.runtime.propose("t-0", [batch(1)], [1])
            for node_id in [n for n in cluster.nodes if n != leader.node_id]:
                await cluster.stop_node(node_id)
            # No heartbeat round can confirm the leadership: no read point is handed out.
            with pytest.raises((TimeoutError, NotLeaderError)):
                await leader.host.runtime.read_index("t-0", timeout_s=0.5)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_status_reports_in_sync_replicas_as_the_leader_sees_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            runtime = leader.host.runtime
            index = await runtime.propose("t-0", [batch(1)], [1])
            await wait_until(
                lambda: runtime.status("t-0").in_sync(0) == frozenset({1, 2, 3}),
                what="every voter in sync",
            )
            status = runtime.status("t-0")
            assert all(pr.match >= index for pr in status.progress.values())
            follower = next(n for n in cluster.nodes.values() if n is not leader)
            assert follower.host.runtime.status("t-0").progress == {}
            assert follower.host.runtime.status("t-0").in_sync(0) == frozenset()

            stopped = follower.node_id
            await cluster.stop_node(stopped)
            await runtime.propose("t-0", [batch(1)], [1])
            await wait_until(
                lambda: stopped not in runtime.status("t-0").in_sync(1000),
                what=f"node {stopped} out of sync once not heard from",
            )
            assert leader.node_id in runtime.status("t-0").in_sync(0)
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_remove_group_fails_what_waits_and_releases_the_name(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            runtime = leader.host.runtime
            await runtime.propose("t-0", [batch(1)], [1])
            for node_id in [n for n in cluster.nodes if n != leader.node_id]:
                await cluster.stop_node(node_id)
            pending = runtime.propose("t-0", [batch(1)], [1])  # cannot commit now
            read = asyncio.ensure_future(runtime.read_index("t-0", timeout_s=30))
            await asyncio.sleep(0)  # the read registers
            runtime.remove_group("t-0")
            with pytest.raises(GroupRemovedError):
                await pending
            with pytest.raises(GroupRemovedError):
                await read
            assert not runtime.has_group("t-0") and "t-0" not in runtime.groups
            assert not runtime.status("t-0").present  # a clear answer, not a KeyError
            runtime.remove_group("t-0")  # idempotent
            # The name is free again: the group comes back from its log.
            leader.logs["t-0"].close()
            applied: list[Entry] = []
            storage = open_storage(leader.data_dir / "t-0")
            leader.logs["t-0"] = storage.log
            runtime.add_group(
                "t-0", storage, Config(leader.node_id, voters=(1, 2, 3)), applied.extend
            )
            assert runtime.status("t-0").last_index >= 2
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_open_group_keeps_the_log_in_the_named_directory(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path, size=1)
        await cluster.start(groups=())
        try:
            node = cluster.nodes[1]
            directory = tmp_path / "elsewhere" / "__cluster_metadata"
            applied: list[Entry] = []
            storage = node.host.open_group(
                "__cluster_metadata", directory, Config(1, voters=(1,)), applied.extend
            )
            await wait_until(
                lambda: node.host.runtime.status("__cluster_metadata").role is Role.LEADER,
                what="the single voter to lead",
            )
            await node.host.runtime.propose("__cluster_metadata", [batch(2)], [2])
            assert (directory / STATE_FILE).exists()
            assert any(p.suffix == ".log" for p in directory.iterdir())
            with pytest.raises(ValueError, match="already running"):
                node.host.open_group("__cluster_metadata", directory, Config(1, voters=(1,)), print)
            last = storage.last_index()
            node.host.remove_group("__cluster_metadata")
            assert storage.log.closed
            # Reopened from the same directory: the entries are there.
            again = node.host.open_group(
                "__cluster_metadata", directory, Config(1, voters=(1,)), applied.extend
            )
            assert again.last_index() == last >= 3
        finally:
            await cluster.close()

    asyncio.run(scenario())
