"""The fault harness's CI budget: a few fixed-seed runs of 20 s on a 3-node cluster in
network namespaces (kill -9 of leaders, isolating the leader, a mix of every kind), each
judged by the checker: every must-be-zero finding is zero, the cluster settles after the heal
and every producer is acknowledged again. Skipped, saying why, without root or `ip`.
The long version: ``python -m tests.faults.run --runs 100``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.faults.nemesis import theme_of
from tests.faults.netns import cleanup_stale, leftovers, unavailable_reason
from tests.faults.run import run_once

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        unavailable_reason() is not None,
        reason=f"fault runs skipped: {unavailable_reason()}",
    ),
]

CI_SEEDS = (0, 5, 77)
"""kill_leader, isolate_leader and mixed (theme_of: seed % 13); 77's mix is a pause of a
random node, kill -9 of the controller leader, a pause of the partition leader. No full disk
here yet: it stops a node's metadata group for good (the report of issue 11), so it would
fail every CI run until that is fixed; `python -m tests.faults.run --theme full_disk` runs it."""
CI_SECONDS = 20.0


def test_the_ci_seeds_cover_kills_partitions_and_a_mix() -> None:
    assert [theme_of(s) for s in CI_SEEDS] == ["kill_leader", "isolate_leader", "mixed"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", CI_SEEDS)
def test_a_fault_run_keeps_every_guarantee(seed: int) -> None:
    cleanup_stale()
    # Not tmp_path: pytest keeps only its last few base dirs, and a failing run's directory
    # (node logs, histories) must outlive the session to be read.
    root = Path(tempfile.mkdtemp(prefix=f"rilke-faults-ci-{seed}-"))
    result = run_once(seed, 3, CI_SECONDS, root)
    assert not result.failed(), result.describe()
    assert result.injected() > 0, result.describe()
    assert result.report.acked_all > 0 and result.report.read > 0, result.describe()
    ns, links = leftovers()  # other runs (other engineers', a long sweep) may be live
    assert not [n for n in ns + links if n.startswith(result.prefix)], (ns, links)
    shutil.rmtree(root, ignore_errors=True)
