"""`rilke bench raft-commit`'s own cluster of node processes commits, with 1 and with 16
proposals in flight.

Regression: each node process reported to the bench and then blocked its event loop on the
pipe, so the followers stopped answering Raft the moment they reported and the leader lost
them (proposals timed out). The nodes now wait for the bench on a thread."""

from __future__ import annotations

import pytest

from rilke.bench.raft_cluster import run_cluster


@pytest.mark.slow
def test_raft_commit_cluster_commits_with_1_and_16_in_flight() -> None:
    results = run_cluster("commit", 1, 3, measure_s=1.0, settle_s=0.0)
    assert sorted(r["node"] for r in results) == [1, 2, 3]
    leader = next(r for r in results if r["node"] == 1)
    for inflight in (1, 16):
        assert leader[f"inflight_{inflight}"]["commits"] > 0
