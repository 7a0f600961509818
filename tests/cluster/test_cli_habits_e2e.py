"""`rilke` as kcat and rpk users type it, against a real broker process: global flags after
the subcommand, produce printing offsets, consume --from -N / --from N -f / --group, exit
130 on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rilke_broker_process")

REPO_ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}


def rilke(*args, stdin=None, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "rilke", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=ENV,
        check=False,
    )


def spawn(*args):
    return subprocess.Popen(
        [sys.executable, "-m", "rilke", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=ENV,
    )


def reap(child):
    if child.poll() is None:
        child.kill()
    child.wait(30)
    child.stdout.close()
    child.stderr.close()


def test_flags_after_the_subcommand_and_produce_offsets(broker):
    b = broker.address
    r = rilke("topic", "create", "h", "-p", "1", "-b", b, "--log-level", "DEBUG")
    assert r.returncode == 0, r.stderr
    assert b"DEBUG" in r.stderr  # the level reached logging
    r = rilke("-b", b, "topic", "list")
    assert r.returncode == 0 and r.stdout.split() == [b"h"] and r.stderr == b""
    r = rilke("produce", "h", "-b", b, stdin=b"".join(b"r%d\n" % i for i in range(10)))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [b"Produced to partition 0 at offset %d" % i for i in range(10)]
    assert r.stderr == b""  # INFO lines of the library stay off the terminal
    r = rilke("consume", "h", "--from", "-3", "--format", "%o=%s", "-b", b)
    assert r.returncode == 0 and r.stdout.splitlines() == [b"7=r7", b"8=r8", b"9=r9"]


def test_from_an_offset_past_the_end_follows_from_there(broker):
    b = broker.address
    assert rilke("topic", "create", "w", "-b", b).returncode == 0
    assert rilke("produce", "w", "-q", "-b", b, stdin=b"a\nb\n").returncode == 0
    child = spawn("consume", "w", "--from", "4", "-f", "-n", "2", "--format", "%o %s", "-b", b)
    try:
        # Records 2..5 arrive while it waits at 4: it prints 4 and 5, never 0 and 1.
        r = rilke("produce", "w", "-q", "-b", b, stdin=b"c\nd\ne\nf\n")
        assert r.returncode == 0, r.stderr
        out, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert out.splitlines() == [b"4 e", b"5 f"]
    finally:
        reap(child)


def test_consume_follow_exits_130_on_ctrl_c(broker):
    b = broker.address
    assert rilke("topic", "create", "c", "-b", b).returncode == 0
    assert rilke("produce", "c", "-q", "-b", b, stdin=b"x\n").returncode == 0
    child = spawn("consume", "c", "-f", "-b", b)
    try:
        assert child.stdout.readline() == b"x\n"
        child.send_signal(signal.SIGINT)
        assert child.wait(30) == 130
        assert child.stderr.read() == b""
    finally:
        reap(child)


def test_consume_as_a_group_commits_what_it_printed(broker):
    b = broker.address
    assert rilke("topic", "create", "g", "-p", "2", "-b", b).returncode == 0
    lines = b"".join(b"k%d:v%d\n" % (i, i) for i in range(6))
    assert rilke("produce", "g", "-q", "-K", ":", "-b", b, stdin=lines).returncode == 0
    r = rilke("consume", "g", "-G", "readers", "-n", "4", "--format", "%s", "-b", b)
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()
    assert len(first) == 4
    r = rilke("consume", "g", "--group", "readers", "--format", "%s", "-b", b)
    assert r.returncode == 0, r.stderr
    rest = r.stdout.splitlines()
    assert sorted(first + rest) == [b"v%d" % i for i in range(6)]
    r = rilke("consume", "g", "-G", "readers", "--from", "3", "-b", b)
    assert r.returncode == 2 and b"--group" in r.stderr
