"""`rilke bench cluster-batch`: CPU per batch and the order of its rows."""

from __future__ import annotations

import pytest

from rilke.bench.cluster_batch import _hop_order, cpu_per_batch_us
from rilke.bench.latency_timeline import PRODUCE_HOPS


def test_cpu_per_batch_is_what_was_spent_beyond_idle() -> None:
    # 0.5 s busy over 2 s with a 5% idle share: 0.4 s of work for 1,000 batches = 400 us.
    assert cpu_per_batch_us([0.5], [0.05], 2.0, 1000) == [pytest.approx(400.0)]
    # A follower that was as busy as when idle did nothing per batch (never below 0).
    assert cpu_per_batch_us([0.09, 0.5], [0.05, 0.0], 2.0, 1000) == [0.0, pytest.approx(500.0)]
    assert cpu_per_batch_us([0.5], [0.0], 2.0, 0) == [0.0]


def test_hops_are_listed_in_path_order_with_the_total_last() -> None:
    hops = [
        "total",
        "broker_acked -> response",
        "send -> drained",
        "broker_appended -> flush_begin",
    ]
    assert sorted(hops, key=_hop_order) == [
        "send -> drained",
        "broker_appended -> flush_begin",
        "broker_acked -> response",
        "total",
    ]
    assert PRODUCE_HOPS[0] == "send" and PRODUCE_HOPS[-1] == "caller_woken"
