"""`rilke` as kcat and rpk users type it, in-process against the fake broker (and, for
Ctrl-C and the terminal's stderr, in a child process)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from test_cli import run
from test_consumer import put_batch
from waiting import wait_for

from rilke.cli.main import build_parser, hoist_global_flags, main
from rilke.cli.record_format import compile_format, make_formatter
from rilke.client.producer import Producer
from rilke.client.structs import ConsumerRecord


def rec(key, value, headers=(), offset=7):
    return ConsumerRecord("t", 2, offset, 1000, 0, key, value, tuple(headers))


def test_global_flags_before_or_after_the_subcommand():
    parser = build_parser()
    assert hoist_global_flags(parser, ["topic", "list", "-b", "h:1", "--log-level", "debug"]) == [
        "--log-level",
        "debug",
        "topic",
        "list",
        "-b",
        "h:1",
    ]
    assert hoist_global_flags(parser, ["-b", "h:1", "--log-level=info", "topic", "list"]) == [
        "--log-level=info",
        "topic",
        "list",
        "-b",
        "h:1",
    ]
    args = parser.parse_args(hoist_global_flags(parser, ["-b", "h:9", "topic", "list"]))
    assert args.bootstrap_servers == "h:9" and args.log_level is None
    args = parser.parse_args(hoist_global_flags(parser, ["topic", "list", "--log-level", "Warn"]))
    assert args.log_level == "WARNING"


def test_a_subcommand_with_its_own_log_level_keeps_it():
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level")
    sub = parser.add_subparsers(dest="command")
    server = sub.add_parser("server")
    server.add_argument("--log-level", dest="server_log_level")
    sub.add_parser("topic")
    assert hoist_global_flags(parser, ["server", "--log-level", "debug"]) == [
        "server",
        "--log-level",
        "debug",
    ]
    assert hoist_global_flags(parser, ["topic", "--log-level", "debug"]) == [
        "--log-level",
        "debug",
        "topic",
    ]


def test_version_and_bad_log_level(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("rilke 0.")
    with pytest.raises(SystemExit) as info:
        main(["topic", "list", "--log-level", "loud"])
    assert info.value.code == 2 and "'loud' is not a log level" in capsys.readouterr().err


def test_format_strings_and_null_text():
    f = compile_format("%t %p %o %k %s %K %S %T %h 100%%", null_text="NULL")
    assert f(rec(b"k", b"v", [("a", b"1")])) == b"t 2 7 k v 1 1 1000 a=1 100%\n"
    assert f(rec(None, b"")) == b"t 2 7 NULL  -1 0 1000  100%\n"
    assert compile_format("%k\\t%s\\n")(rec(b"", b"x")) == b"\tx\n"
    with pytest.raises(ValueError, match="unknown token '%x'"):
        compile_format("%x")
    with pytest.raises(ValueError, match="format string"):
        make_formatter("yaml")
    text = make_formatter("text", print_key=True, null_text="NULL")
    assert text(rec(None, b"v")) == b"NULL\tv\n"
    assert text(rec(b"", b"v")) == b"\tv\n"


def test_json_headers_are_exact():
    line = make_formatter("json")(
        rec(b"\xff", b"v", [("ok", b"yes"), ("bin", b"\x00\xfe"), ("n", None)])
    )
    obj = json.loads(line)
    assert "key" not in obj and obj["value"] == "v"
    assert base64.b64decode(obj["key_base64"]) == b"\xff"
    assert obj["headers"] == [
        {"key": "ok", "value": "yes"},
        {"key": "bin", "value_base64": base64.b64encode(b"\x00\xfe").decode()},
        {"key": "n", "value": None},
    ]


def test_produce_prints_where_each_record_went_and_reads_a_file(
    fake, capsysbinary, monkeypatch, tmp_path
):
    fake.broker.create("t", 2)
    b = ["-b", fake.address]
    code, out, _ = run(["produce", "t", "-p", "1", *b], capsysbinary, b"a\nb\n", monkeypatch)
    assert code == 0
    assert out == b"Produced to partition 1 at offset 0\nProduced to partition 1 at offset 1\n"
    path = tmp_path / "records.txt"
    path.write_bytes(b"k:c\r\nk:d\n")
    code, out, _ = run(
        ["produce", "t", "-p", "1", "--file", str(path), "-K", ":", "-q", *b], capsysbinary
    )
    assert code == 0 and out == b""
    code, out, _ = run(["consume", "t", "-p", "1", "--format", "%o %k %s", *b], capsysbinary)
    assert out == b"0 NULL a\n1 NULL b\n2 k c\n3 k d\n"
    code, _, err = run(["produce", "t", "--file", str(tmp_path / "nope"), *b], capsysbinary)
    assert code == 2 and b"--file" in err


def test_produce_defaults_to_acks_all(fake, capsysbinary, monkeypatch):
    fake.broker.create("t", 1)
    run(["produce", "t", "-q", "-b", fake.address], capsysbinary, b"x\n", monkeypatch)
    assert fake.broker.produce_requests[-1].acks == -1


def test_a_record_too_large_points_at_max_request_size(fake, capsysbinary, monkeypatch):
    fake.broker.create("t", 1)
    b = ["-b", fake.address]
    big = b"x" * 2000 + b"\n"
    code, _, err = run(
        ["produce", "t", "--max-request-size", "1000", *b], capsysbinary, big, monkeypatch
    )
    assert code == 1 and b"raise --max-request-size" in err and b"line 1" in err
    code, out, _ = run(
        ["produce", "t", "--max-request-size", "4000", *b], capsysbinary, big, monkeypatch
    )
    assert code == 0 and out == b"Produced to partition 0 at offset 0\n"


def test_consume_the_last_n_of_each_partition(fake, capsysbinary):
    fake.broker.create("t", 2)
    put_batch(fake, [b"a0", b"a1", b"a2", b"a3"], partition=0)
    put_batch(fake, [b"b0"], partition=1)
    code, out, _ = run(
        ["consume", "t", "--from", "-2", "--format", "%p:%s", "-b", fake.address], capsysbinary
    )
    assert code == 0 and sorted(out.splitlines()) == [b"0:a2", b"0:a3", b"1:b0"]


@pytest.mark.timeout(60)
def test_from_an_offset_past_the_end_waits_there(fake, capsysbinary):
    fake.broker.create("t", 1)
    put_batch(fake, [b"r0", b"r1", b"r2"])
    result = []
    follower = threading.Thread(
        target=lambda: result.append(
            main(
                [
                    "consume",
                    "t",
                    "--from",
                    "5",
                    "-f",
                    "-n",
                    "2",
                    "--format",
                    "%o",
                    "-b",
                    fake.address,
                ]
            )
        )
    )
    follower.start()
    wait_for(lambda: fake.broker.calls.count("Fetch") >= 3, what="the consumer fetching at the end")
    with Producer(fake.address) as p:
        for i in range(3, 8):
            p.send("t", b"r%d" % i).get(5)
    follower.join(30)
    assert not follower.is_alive()
    out, _ = capsysbinary.readouterr()
    assert result == [0] and out == b"5\n6\n"  # not 0, 1: it did not jump back to the start


def test_ctrl_c_exits_130_and_library_info_stays_off_the_terminal(fake):
    fake.broker.create("t", 1)
    put_batch(fake, [b"hello"])
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "rilke", "consume", "t", "-f", "-b", fake.address],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout.readline() == b"hello\n"
        child.send_signal(signal.SIGINT)
        assert child.wait(30) == 130
        assert child.stderr.read() == b""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
