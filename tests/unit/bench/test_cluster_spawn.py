"""The pieces of `--spawn-cluster N` that need no processes: arguments, voters, ports, probe."""

from __future__ import annotations

import argparse
import os

import pytest

from rilke.bench.cluster_spawn import (
    ClusterError,
    MetadataProbe,
    SpawnedCluster,
    free_ports,
    process_cpu_s,
    voters_arg,
)
from rilke.bench.common import add_common_arguments, replication_factor_of, spawn_arguments_error


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_common_arguments(parser)
    return parser.parse_args(list(argv))


def test_replication_factor_is_min_of_three_and_the_nodes_unless_given() -> None:
    assert replication_factor_of(_args()) == 1
    assert replication_factor_of(_args("--spawn-cluster", "1")) == 1
    assert replication_factor_of(_args("--spawn-cluster", "2")) == 2
    assert replication_factor_of(_args("--spawn-cluster", "5")) == 3
    assert replication_factor_of(_args("--spawn-cluster", "5", "--replication-factor", "5")) == 5


def test_bad_spawn_arguments_are_named() -> None:
    assert spawn_arguments_error(_args("--spawn-cluster", "3")) is None
    assert "exclude" in str(spawn_arguments_error(_args("--spawn-cluster", "3", "--spawn-broker")))
    assert ">= 1" in str(spawn_arguments_error(_args("--spawn-cluster", "-1")))
    error = spawn_arguments_error(_args("--spawn-cluster", "2", "--replication-factor", "3"))
    assert error is not None and "more than the 2 node(s)" in error


def test_voters_are_numbered_from_one_on_loopback() -> None:
    assert voters_arg([9001, 9002, 9003]) == ("1@127.0.0.1:9001,2@127.0.0.1:9002,3@127.0.0.1:9003")


def test_free_ports_differ() -> None:
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(p > 0 for p in ports)


def test_a_cluster_needs_a_node() -> None:
    with pytest.raises(ValueError, match="at least 1 node"):
        SpawnedCluster(0)


def test_cpu_of_this_process_grows_with_work() -> None:
    before = process_cpu_s(os.getpid())
    deadline = before + 0.05
    while process_cpu_s(os.getpid()) < deadline:
        sum(range(10_000))
    assert process_cpu_s(os.getpid()) >= deadline


class _Probe(MetadataProbe):
    """Metadata answers from a table instead of nodes."""

    def __init__(self, answers: dict[str, dict[int, tuple[int, int]] | None]) -> None:
        super().__init__()
        self.answers = answers

    def partitions(self, address: str, topic: str) -> dict[int, tuple[int, int]] | None:
        return self.answers[address]


def test_led_only_when_every_node_agrees_and_every_partition_has_a_live_leader() -> None:
    led = {0: (1, 3), 1: (2, 1)}
    probe = _Probe({"a": led, "b": dict(led)})
    assert probe.all_led(["a", "b"], "t", 2)
    assert not probe.all_led(["a", "b"], "t", 3)  # a partition missing
    assert not probe.all_led(["a", "b"], "t", 2, alive={1})  # node 2 leads but is dead
    probe.answers["b"] = {0: (1, 3), 1: (-1, 1)}
    assert not probe.all_led(["a", "b"], "t", 2)  # no leader on b
    probe.answers["b"] = {0: (1, 4), 1: (2, 1)}
    assert not probe.all_led(["a", "b"], "t", 2)  # b knows a newer epoch than a
    probe.answers["b"] = None
    assert not probe.all_led(["a", "b"], "t", 2)  # b does not answer


def test_waiting_for_leaders_has_a_deadline() -> None:
    probe = _Probe({"a": None})
    with pytest.raises(ClusterError, match="no leader on every one of a"):
        probe.wait_led(["a"], "t", 1, timeout_s=0.1)


def test_the_nats_r3_figure_is_read_from_bench_nats_cluster_output() -> None:
    from rilke.bench.peers import NATS_R3_ASYNC_PUBLISH, parse_figures

    line = "run 0 R3 async publish 100B: 41,234 msg/s errors=0 srv 1.20 cli 0.90 leader=n2\n"
    assert parse_figures(line) == {NATS_R3_ASYNC_PUBLISH: 41234.0}


def test_a_leader_the_controller_only_assigned_is_not_led_yet() -> None:
    probe = _Probe({"a": {0: (1, 0)}})  # epoch 0: no Raft term reported
    assert not probe.all_led(["a"], "t", 1)
    assert probe.all_led(["a"], "t", 1, min_epoch=0)
