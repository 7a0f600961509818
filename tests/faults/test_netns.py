"""The bed itself: subnet choice (pure), and, where namespaces can be made, that hosts reach
each other, a partition cuts them, heal restores them, and nothing is left behind."""

from __future__ import annotations

import ipaddress
import json
import random
import statistics
import sys

import pytest

from tests.faults.firewall import Firewall
from tests.faults.netns import (
    Testbed,
    choose_subnet,
    cleanup_stale,
    leftovers,
    run_host_command,
    unavailable_reason,
)
from tests.faults.nodes import REPO_ROOT, child_env

_SERVE = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(); s.settimeout(60)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'hi'); c.close()\n"
)


_SINK = (
    "import socket, threading\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7001)); s.listen()\n"
    "def drain(c):\n"
    "    while c.recv(65536): pass\n"
    "while True:\n"
    "    c, _ = s.accept(); threading.Thread(target=drain, args=(c,), daemon=True).start()\n"
)


def _bulk(address: str) -> str:
    return (
        "import socket, time\n"
        "end = time.monotonic() + 60\n"
        "while time.monotonic() < end:\n"
        "    try:\n"
        f"        s = socket.create_connection(({address!r}, 7001), timeout=5)\n"
        "        while time.monotonic() < end: s.sendall(bytes(65536))\n"
        "    except OSError: time.sleep(0.1)\n"
    )


def test_choose_subnet_avoids_every_taken_network() -> None:
    taken = [ipaddress.ip_network(f"10.77.{i}.0/24") for i in range(256) if i != 42]
    assert choose_subnet(taken, random.Random(1)) == ipaddress.ip_network("10.77.42.0/24")
    wide = [ipaddress.ip_network("10.0.0.0/8")]
    with pytest.raises(RuntimeError, match="collides"):
        choose_subnet(wide)


def _connects(bed: Testbed, source: str, target: str) -> bool:
    probe = (
        "import socket\n"
        f"s = socket.create_connection(({bed.address(target)!r}, 7000), timeout=1)\n"
        "assert s.recv(2) == b'hi'\n"
    )
    return bed.run(source, [sys.executable, "-c", probe], timeout_s=10).returncode == 0


def _wait_connects(bed: Testbed, source: str, target: str) -> bool:
    return any(_connects(bed, source, target) for _ in range(20))


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_bed_reaches_partitions_heals_and_leaves_nothing() -> None:
    cleanup_stale()
    with Testbed(["a", "b", "c"]) as bed:
        bed.popen("a", [sys.executable, "-c", _SERVE])
        assert _wait_connects(bed, "b", "a")
        firewall = Firewall(bed)
        if firewall.drop_unavailable_reason() is None:
            firewall.partition([["a"], ["b", "c"]])
            assert not _connects(bed, "b", "a")
            firewall.heal()
            assert _wait_connects(bed, "b", "a")
            firewall.one_way("c", "a")
            assert not _connects(bed, "c", "a")
            assert _connects(bed, "b", "a")
            firewall.heal()
        names = leftovers()
        assert any(n.startswith(bed.prefix) for n in names[0])
    ns, links = leftovers()
    assert not [n for n in ns + links if n.startswith(bed.prefix)]


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_failure_inside_the_bed_still_removes_everything() -> None:
    with pytest.raises(ZeroDivisionError), Testbed(["x"]) as bed:
        prefix = bed.prefix
        bed.popen("x", [sys.executable, "-c", "import time; time.sleep(60)"])
        _ = 1 / 0
    ns, links = leftovers()
    assert not [n for n in ns + links if n.startswith(prefix)]


def _rtt_ms(bed: Testbed, source: str, target: str, seconds: float) -> list[float | None]:
    """Handshake times from ``source`` to ``target``'s port 7000 (the probe's own sampler)."""
    code = (
        "import json\nfrom tests.faults.probe import rtt\n"
        f"print(json.dumps(rtt({bed.address(target) + ':7000'!r}, 3.0, {seconds}, 0.1)))"
    )
    done = bed.run(source, [sys.executable, "-c", code], timeout_s=seconds + 20)
    assert done.returncode == 0, done.stderr
    samples: list[float | None] = json.loads(done.stdout)["rtt_ms"]
    return samples


def _median(samples: list[float | None]) -> float:
    # A handshake over 3 s (SYN retransmitted past the probe's timeout) counts as 3 s.
    return statistics.median(3000.0 if s is None else s for s in samples)


def _qdiscs(bed: Testbed, host: str) -> str:
    inside = bed.run(host, ["tc", "qdisc", "show", "dev", "eth0"]).stdout
    outside = run_host_command(["tc", "qdisc", "show", "dev", bed.hosts[host].veth]).stdout
    return inside + outside


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_a_slow_link_queues_under_load_and_heal_removes_it() -> None:
    cleanup_stale()
    with Testbed(["a", "b", "c"]) as bed:
        env = child_env()
        bed.popen("a", [sys.executable, "-c", _SERVE], env=env)
        bed.popen("a", [sys.executable, "-c", _SINK], env=env)
        assert _wait_connects(bed, "c", "a")
        idle = _median(_rtt_ms(bed, "c", "a", 1.0))
        bed.popen("b", [sys.executable, "-c", _bulk(bed.address("a"))], env=env, cwd=REPO_ROOT)
        firewall = Firewall(bed)
        firewall.slow_link("a", 1000, 4096, 500)
        assert _qdiscs(bed, "a").count("tbf") == 2  # both ends of a's veth pair
        # b's bulk stream fills the 1 Mbit/s bucket's queue (500 ms of it) toward a, so c's
        # handshakes with a wait behind it: queueing delay, not a fixed one.
        slowed = _median(_rtt_ms(bed, "c", "a", 3.0))
        firewall.heal()
        assert "tbf" not in _qdiscs(bed, "a")
        healed = _median(_rtt_ms(bed, "c", "a", 1.0))
        assert slowed > 150.0, (idle, slowed, healed)
        assert slowed > 5 * max(idle, healed), (idle, slowed, healed)
        firewall._shaped.add("b")  # as if a slow link of b had failed before any tc ran
        firewall.heal()  # nothing to remove there is no error
    ns, links = leftovers()
    assert not [n for n in ns + links if n.startswith(bed.prefix)]


@pytest.mark.skipif(unavailable_reason() is not None, reason=str(unavailable_reason()))
def test_delay_holds_each_packet_and_heal_removes_it() -> None:
    cleanup_stale()
    with Testbed(["a", "b"]) as bed:
        bed.popen("a", [sys.executable, "-c", _SERVE], env=child_env())
        assert _wait_connects(bed, "b", "a")
        firewall = Firewall(bed)
        reason = firewall.delay_unavailable_reason()
        if reason is not None:
            pytest.skip(reason)
        idle = _median(_rtt_ms(bed, "b", "a", 1.0))
        firewall.delay("a", 150, 0)
        delayed = _median(_rtt_ms(bed, "b", "a", 1.5))
        if firewall.drop_unavailable_reason() is None:
            # A partition made while the delay holds still cuts: the queue comes after the
            # drop rules, so a held packet is never let past one.
            firewall.one_way("b", "a")
            assert not _connects(bed, "b", "a")
        firewall.heal()
        assert not firewall._delayers
        healed = _median(_rtt_ms(bed, "b", "a", 1.0))
        assert 140.0 < delayed < 1000.0, (idle, delayed, healed)
        assert healed < 50.0, (idle, delayed, healed)
        assert "NFQUEUE" not in bed.run("a", ["iptables", "-t", "security", "-S"]).stdout
    ns, links = leftovers()
    assert not [n for n in ns + links if n.startswith(bed.prefix)]
