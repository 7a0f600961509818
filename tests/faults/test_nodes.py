"""Node process control in the bed: a 3-node cluster forms, the controller leader's kill -9
elects another, a paused node is seen as paused and comes back, a restart rejoins, a full
disk is full and freed; nothing is left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.faults.netns import Testbed, leftovers, unavailable_reason
from tests.faults.nodes import FaultCluster

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason())),
]


def test_cluster_forms_fails_over_and_is_removed(tmp_path: Path) -> None:
    with Testbed(["n1", "n2", "n3", "client"]) as bed:
        prefix = bed.prefix
        cluster = FaultCluster(bed, tmp_path, [1, 2, 3], disk_bytes=32 * 1024 * 1024)
        try:
            cluster.start_all()
            cluster.wait_healthy(90)
            assert cluster.describe(1)["voters"] == [1, 2, 3]
            old = cluster.controller_leader()
            assert old in (1, 2, 3)

            cluster.kill(old)
            assert cluster.running() == [n for n in (1, 2, 3) if n != old]
            cluster.wait_healthy(60)
            new = cluster.controller_leader()
            assert new is not None and new != old

            cluster.pause(new)
            assert "error" in cluster.describe(new, timeout_s=0.5)  # stopped: cannot answer
            cluster.resume(new)
            cluster.start(old)
            cluster.wait_healthy(60, members=[1, 2, 3])

            cluster.restart(2)
            cluster.wait_healthy(60, members=[1, 2, 3])

            cluster.fill_disk(3)
            assert shutil.disk_usage(cluster.nodes[3].data_dir.parent).free == 0
            cluster.free_disk(3)
            assert shutil.disk_usage(cluster.nodes[3].data_dir.parent).free > 0
            assert not cluster.exited()
        finally:
            cluster.close()
    ns, links = leftovers()
    assert not [n for n in ns + links if n.startswith(prefix)]
