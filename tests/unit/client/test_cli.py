"""The client subcommands of `rilke`, run in-process against the fake broker."""

from __future__ import annotations

import io
import json
import sys

import pytest
from waiting import wait_for

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
    assert parse_start("-3") == ("last", 3)
    with pytest.raises(ValueError, match="N >= 1"):
        parse_start("-0")


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


def test_create_says_whether_it_created_and_how_to_accept_an_existing_topic(fake, capsysbinary):
    b = ["-b", fake.address]
    assert run(["topic", "create", "t", *b], capsysbinary)[1] == b"created topic t\n"
    code, _, err = run(["topic", "create", "t", *b], capsysbinary)
    assert code == 1 and b"--if-not-exists" in err and err.count(b"\n") == 1
    code, out, _ = run(["topic", "create", "t", "--if-not-exists", *b], capsysbinary)
    assert code == 0 and out == b"topic t already exists\n"


def test_every_command_has_a_description(capsys):
    from rilke.cli.main import build_parser

    def walk(parser):
        for action in parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    yield name, sub
                    yield from walk(sub)

    missing = [name for name, sub in walk(build_parser()) if not sub.description]
    assert missing == []


@pytest.mark.timeout(60)
def test_consume_follow_ends_with_an_error_when_the_broker_dies(fake, capsysbinary, monkeypatch):
    import threading

    import grpc

    import rilke.client.cluster

    monkeypatch.setattr(rilke.client.cluster, "RECONNECT_GRACE_S", 0.2)
    fake.broker.create("t", 1)
    dead = threading.Event()
    fake.broker.faults.append(lambda m, r: grpc.StatusCode.UNAVAILABLE if dead.is_set() else 0)
    result = []
    follower = threading.Thread(
        target=lambda: result.append(main(["consume", "t", "-f", "-b", fake.address]))
    )
    follower.start()
    wait_for(lambda: "Fetch" in fake.broker.calls)
    dead.set()
    follower.join(50)
    assert not follower.is_alive()
    _, err = capsysbinary.readouterr()
    assert result == [1] and b"NoBrokersAvailableError" in err and err.count(b"\n") == 1


@pytest.mark.timeout(60)
def test_consume_to_the_end_does_not_wait_forever_when_fetches_fail(fake, capsysbinary):
    import grpc
    from test_consumer import put_batch

    fake.broker.create("t", 1)
    put_batch(fake, [b"a", b"b"])
    fake.broker.faults.append(lambda m, r: grpc.StatusCode.UNAVAILABLE if m == "Fetch" else 0)
    code, out, err = run(
        ["consume", "t", "-b", fake.address, "--request-timeout", "1"], capsysbinary
    )
    assert code == 1 and out == b"" and err.count(b"\n") == 1
    assert b"t-0" in err


@pytest.mark.timeout(60)
def test_produce_gives_up_within_its_request_timeout_when_the_broker_fails(
    fake, capsysbinary, monkeypatch
):
    import grpc

    fake.broker.create("t", 1)
    fake.broker.faults.append(lambda m, r: grpc.StatusCode.UNAVAILABLE if m == "Produce" else 0)
    code, _, err = run(
        ["produce", "t", "-b", fake.address, "--request-timeout", "1"],
        capsysbinary,
        b"x\n",
        monkeypatch,
    )  # without a bound of its own it would retry for the delivery timeout: 120 s
    assert code == 1 and b"1 of 1 records failed" in err and err.count(b"\n") == 1


def test_top_level_help_states_the_exit_codes(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "Exit codes: 0 success, 1" in " ".join(out.split())
