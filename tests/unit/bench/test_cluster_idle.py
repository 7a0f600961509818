"""`rilke bench cluster-idle`: the parts that need no cluster."""

from __future__ import annotations

import argparse
import os

import pytest

from rilke.bench.cluster_idle import register, rss_bytes, run, topic_sizes


def test_partitions_are_split_into_topics_of_the_given_size() -> None:
    assert topic_sizes(1000, 100) == [100] * 10
    assert topic_sizes(250, 100) == [100, 100, 50]
    assert topic_sizes(0, 100) == []


def test_resident_memory_of_this_process_is_read() -> None:
    blob = b"\x01" * (64 * 2**20)  # written, so resident (a zeroed buffer may not be)
    assert rss_bytes(os.getpid()) >= len(blob)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["cluster-idle", *argv])


@pytest.mark.parametrize(
    "argv",
    [("--replication-factor", "4"), ("--nodes", "0"), ("--idle-s", "0"), ("--per-topic", "0")],
)
def test_bad_arguments_are_refused_before_a_node_starts(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(_args(*argv)) == 2
    assert "bad argument" in capsys.readouterr().out


def test_elections_are_counted_by_how_far_each_term_grew() -> None:
    from rilke.bench.cluster_idle import new_terms

    before = {("t", 0): 1, ("t", 1): 1, ("t", 2): 4}
    after = {("t", 0): 1, ("t", 1): 3, ("t", 2): 5, ("u", 0): 9}  # u/0 is new: not counted
    assert new_terms(before, after) == 3
    assert new_terms(after, after) == 0
