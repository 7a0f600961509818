"""`rilke bench kafka`'s own parts without a broker: the py-spy summary, the CPU reading, the
refusals of bad arguments, and the advice when confluent-kafka is missing."""

from __future__ import annotations

import os
import sys

import pytest

from rilke.bench import kafka as bench
from rilke.cli.main import main


def test_collapsed_stacks_summarized_by_innermost_busy_function() -> None:
    text = "\n".join(
        [
            "run (rilke/cli/server_cmd.py:10);append_one (/x/rilke/storage/segment.py:88) 30",
            "run (rilke/cli/server_cmd.py:10);append_one (/x/rilke/storage/segment.py:91) 10",
            "run (rilke/cli/server_cmd.py:10);write (/usr/lib/asyncio/selector_events.py:5) 20",
            "_run_once (base_events.py:1);select (/usr/lib/python3.11/selectors.py:468) 500",
            "garbage line",
        ]
    )
    top = bench.summarize_collapsed(text, 5)
    assert top == [
        ("append_one (storage/segment.py)", pytest.approx(40 / 60)),
        ("write (selector_events.py)", pytest.approx(20 / 60)),
    ]
    assert bench.summarize_collapsed("", 5) == []


def test_process_cpu_is_read_for_this_process_and_none_for_no_process() -> None:
    if not os.path.exists("/proc/self/stat"):
        pytest.skip("no /proc on this system")
    sum(i * i for i in range(200_000))  # spend a little CPU so the count moves off zero
    assert (bench.process_cpu_s(os.getpid()) or 0) > 0
    assert bench.process_cpu_s(2**22 + 12345) is None


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--phases", "produce,nope"], "--phases takes a comma-separated list"),
        (["--clients", ""], "--clients takes a comma-separated list"),
        (["--count", "0"], "--count and --partitions must be >= 1"),
    ],
)
def test_bad_arguments_refused_before_a_broker_starts(
    args: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "kafka", *args]) == 2
    assert said in capsys.readouterr().out


def test_missing_confluent_kafka_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import raises ImportError
    assert main(["bench", "kafka", "--count", "10"]) == 2
    out = capsys.readouterr().out
    assert "pip install 'rilke[bench]'" in out and "--clients rilke" in out
