"""Three in-process nodes over the real transport on 127.0.0.1: elect, replicate, fail over,
restart from disk, quiesce."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rilke.replication import offsets
from rilke.replication.raft.types import Role

from .cluster import Cluster, wait_until
from .helpers import batch


def test_elect_replicate_fail_over_and_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start()
        try:
            leader = await cluster.wait_leader()
            index = await leader.host.runtime.propose("t-0", [batch(3, b"a")], [3])
            # Storage offsets 0 (the no-op) and 1..3 (the batch): index 4 is the log end.
            assert index == 4
            await wait_until(
                lambda: all(len(n.data("t-0")) == 1 for n in cluster.nodes.values()),
                what="every node to apply the batch",
            )
            for node in cluster.nodes.values():
                assert node.logs["t-0"].log_end_offset >= offsets.log_end_offset(index)
            # The same bytes on every node (offsets and term stamped the same everywhere).
            stored = {
                n.node_id: n.logs["t-0"].read(1, 1 << 20).records for n in cluster.nodes.values()
            }
            assert len(set(stored.values())) == 1

            # Kill the leader: the others elect a new one and keep committing.
            await cluster.stop_node(leader.node_id)
            new_leader = await cluster.wait_leader()
            assert new_leader.node_id != leader.node_id
            await new_leader.host.runtime.propose("t-0", [batch(2, b"b")], [2])

            # The old leader comes back from its disk and catches up.
            back = await cluster.restart_node(leader.node_id)
            assert back.logs["t-0"].log_end_offset >= 4  # its log survived the restart
            final = await cluster.wait_leader()
            last = await final.host.runtime.propose("t-0", [batch(1, b"c")], [1])
            await wait_until(
                lambda: all(
                    n.host.runtime.status("t-0").applied_index >= last
                    for n in cluster.nodes.values()
                ),
                what="every node, the restarted one too, to apply the last entry",
            )
            ends = {n.logs["t-0"].log_end_offset for n in cluster.nodes.values()}
            assert len(ends) == 1
        finally:
            await cluster.close()

    asyncio.run(scenario())


def test_idle_groups_quiesce_and_wake(tmp_path: Path) -> None:
    async def scenario() -> None:
        cluster = Cluster(tmp_path)
        await cluster.start(groups=[f"t-{i}" for i in range(20)])
        try:
            for i in range(20):
                await cluster.wait_leader(f"t-{i}")
            await wait_until(
                lambda: all(n.host.runtime.quiesced_count == 20 for n in cluster.nodes.values()),
                what="every group on every node to go quiet",
            )
            leader = cluster.leader("t-7")
            assert leader is not None
            term = leader.host.runtime.status("t-7").term
            # Quiet for many election timeouts: no election happens, the leader stays.
            rounds = leader.host.runtime.rounds
            await asyncio.sleep(0.05 * 40)  # not synchronisation: idle time under test
            assert leader.host.runtime.status("t-7").role is Role.LEADER
            assert leader.host.runtime.status("t-7").term == term
            assert leader.host.runtime.rounds - rounds < 5
            # A proposal wakes the group and commits.
            await leader.host.runtime.propose("t-7", [batch(1)], [1])
            assert not leader.host.runtime.status("t-7").quiesced
            # Its leader dies: the quiet followers notice the silent node and elect.
            await cluster.stop_node(leader.node_id)
            new_leader = await cluster.wait_leader("t-7")
            assert new_leader.host.runtime.status("t-7").term > term
        finally:
            await cluster.close()

    asyncio.run(scenario())
