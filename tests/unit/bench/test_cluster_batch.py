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


def test_its_arguments_carry_everything_the_shared_produce_phase_reads() -> None:
    # The produce phase is latency-timeline's: a setting it reads that cluster-batch's parser
    # lacks failed the command at its first phase (AttributeError: produce_path).
    import argparse

    from rilke.bench import cluster_batch, latency_timeline

    def parsed(register: object, name: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        register(parser.add_subparsers())  # type: ignore[operator]
        return parser.parse_args([name])

    mine = vars(parsed(cluster_batch.register, "cluster-batch"))
    shared = vars(parsed(latency_timeline.register, "timeline"))
    # spawn_cluster is read by the timeline's own run, not by the shared produce phase.
    not_shared = {"json", "func", "topic_config", "spawn_cluster"}
    missing = {key for key in shared if key not in mine} - not_shared
    assert not missing, f"cluster-batch lacks {sorted(missing)}"
