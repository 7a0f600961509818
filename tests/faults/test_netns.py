"""The bed itself: subnet choice (pure), and, where namespaces can be made, that hosts reach
each other, a partition cuts them, heal restores them, and nothing is left behind."""

from __future__ import annotations

import ipaddress
import random
import sys

import pytest

from tests.faults.firewall import Firewall
from tests.faults.netns import Testbed, choose_subnet, cleanup_stale, leftovers, unavailable_reason

_SERVE = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 7000)); s.listen(); s.settimeout(60)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'hi'); c.close()\n"
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
