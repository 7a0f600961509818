"""The client subcommands of `rilke`, run in-process against the fake broker."""

from __future__ import annotations

import io
import json
import sys

import pytest

from rilke.cli.consume_cmd import parse_start
from rilke.cli.main import main


class _Stdin:
    def __init__(self, data: bytes) -> None:
        self.buffer = io.BytesIO(data)


def run(argv, capsysbinary, stdin=b"", monkeypatch=None):
    if monkeypatch is not None:
        monkeypatch.setattr(sys, "stdin", _Stdin(stdin))
    code = main(argv)
    out, err = capsysbinary.readouterr()
    return code, out, err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["consume"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["produce", "t", "--acks", "7"])
    assert info.value.code == 2


def test_bad_values_exit_2_with_one_line(capsysbinary):
    code, _, err = run(["consume", "t", "--from", "yesterday", "-b", "127.0.0.1:1"], capsysbinary)
    assert code == 2
    assert err.count(b"\n") == 1 and b"--from" in err
    code, _, err = run(
        ["topic", "create", "t", "--partitions", "0", "-b", "127.0.0.1:1"], capsysbinary
    )
    assert code == 2


def test_parse_start():
    assert parse_start("earliest") == ("earliest", 0)
    assert parse_start("42") == ("offset", 42)
    assert parse_start("@1700000000000") == ("time", 1700000000000)
    assert parse_start("2023-11-14T22:13:20Z") == ("time", 1700000000000)
    with pytest.raises(ValueError):
        parse_start("-3")


def test_topic_produce_consume_offsets(fake, capsysbinary, monkeypatch):
    b = ["-b", fake.address]
    assert (
        run(["topic", "create", "t", "-p", "2", "-c", "retention.ms=1000", *b], capsysbinary)[0]
        == 0
    )
    code, _, err = run(["topic", "create", "t", *b], capsysbinary)
    assert code == 1 and b"TopicAlreadyExistsError" in err and err.count(b"\n") == 1
    assert run(["topic", "create", "t", "--if-not-exists", *b], capsysbinary)[0] == 0
    assert run(["topic", "list", *b], capsysbinary)[1] == b"t\n"
    code, out, _ = run(
        ["produce", "t", "-K", ":", "-p", "1", *b],
        capsysbinary,
        b"k1:v1\nk2:v2\nnokey\n",
        monkeypatch,
    )
    assert code == 0
    code, out, _ = run(["consume", "t", "--format", "json", *b], capsysbinary)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [(r["partition"], r["offset"], r["key"], r["value"]) for r in rows] == [
        (1, 0, "k1", "v1"),
        (1, 1, "k2", "v2"),
        (1, 2, None, "nokey"),
    ]
    code, out, _ = run(
        ["consume", "t", "-p", "1", "--from", "1", "-n", "1", "--print-key", *b], capsysbinary
    )
    assert out == b"k2\tv2\n"
    code, out, _ = run(["offsets", "t", "--json", *b], capsysbinary)
    assert json.loads(out)["partitions"] == [
        {"partition": 0, "earliest": 0, "latest": 0},
        {"partition": 1, "earliest": 0, "latest": 3},
    ]
    assert run(["topic", "alter-config", "t", "--set", "retention.ms=5", *b], capsysbinary)[0] == 0
    code, out, _ = run(["topic", "describe", "t", "--json", *b], capsysbinary)
    assert json.loads(out)[0]["configs"] == {"retention.ms": "5"}
    assert run(["topic", "delete", "t", *b], capsysbinary)[0] == 0
    code, _, err = run(["topic", "delete", "t", *b], capsysbinary)
    assert code == 1 and b"UnknownTopicOrPartitionError" in err
    assert run(["topic", "delete", "t", "--if-exists", *b], capsysbinary)[0] == 0


def test_produce_to_missing_topic_fails_with_hint(fake, capsysbinary, monkeypatch):
    code, _, err = run(["produce", "nope", "-b", fake.address], capsysbinary, b"x\n", monkeypatch)
    assert code == 1 and b"rilke topic create nope" in err


def test_unreachable_broker_fails_within_timeout(capsysbinary):
    code, _, err = run(
        ["topic", "list", "-b", "127.0.0.1:1", "--request-timeout", "0.5"], capsysbinary
    )
    assert code == 1 and b"127.0.0.1:1" in err


def test_produce_to_unreachable_broker_fails_within_timeout(capsysbinary, monkeypatch):
    code, _, err = run(
        ["produce", "t", "-b", "127.0.0.1:1", "--request-timeout", "0.5"],
        capsysbinary,
        b"x\n",
        monkeypatch,
    )
    assert code == 1 and b"127.0.0.1:1" in err
