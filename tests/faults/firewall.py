"""Network faults inside a Testbed's namespaces: partitions, one-way links, loss, delay; heal.

Partitions and loss are drop rules in each namespace's own firewall: nft when installed (a
table ``rilke_faults`` with an input chain), else iptables (the INPUT chain), else they are
unavailable and say why. Loss falls back to a random-drop rule when `tc netem` is missing
from the kernel. Rules live in the namespaces only, so they vanish with them; the host's own
firewall is never touched.

Delay is `tc netem` on the host's eth0 where the kernel has it. Where it does not (this
machine kind's kernel has no sch_netem, nor fq), every packet the host receives on eth0 is
sent to a netfilter queue by an iptables rule in the ``security`` table's INPUT chain
(priority 150: after the drop rules, which an accepted queued packet would skip if it met
them later) and held there for the delay by tests/faults/delayer.py, a netlink reader started
in the host's namespace. It delays what the host receives, not what it sends: queued outgoing
packets stay charged to their TCP sockets, and TCP small queues then cut a 50 ms-delayed
stream to 2.2 MB/s, while held incoming packets cost the senders nothing (38 MB/s measured).
Either way a round trip with the host takes the delay once more.

A slow link is a `tc tbf` rate limit on both ends of a host's veth pair (its ``eth0`` for what
it sends, the bridge-side end for what it receives): under load the token bucket's queue fills
and every packet through the link waits behind it, so it is real queueing delay.
"""

from __future__ import annotations

import select
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from tests.faults.netns import Testbed, TestbedError, run_host_command

_TABLE = "rilke_faults"
_QUEUE_RULE = ["INPUT", "-i", "eth0", "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"]
_REPO_ROOT = Path(__file__).resolve().parents[2]
DELAYER_READY_S = 10.0
"""How long a delayer may take to bind its queue."""
DELAYER_LIFETIME_S = 900.0
"""A delayer stops by itself after this long (a run heals long before)."""


def _del_root(dev: str) -> list[str]:
    return ["tc", "qdisc", "del", "dev", dev, "root"]


class FaultUnavailable(RuntimeError):
    """This fault cannot be made on this machine; the message says what is missing."""


class Firewall:
    """Drop rules per host of a bed. Not thread-safe: the nemesis drives it from one thread."""

    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        self.backend = (
            "nft" if shutil.which("nft") else "iptables" if shutil.which("iptables") else None
        )
        self._ready: set[str] = set()
        self._netem: bool | None = None
        self._delayed: set[str] = set()
        self._shaped: set[str] = set()
        self._delayers: dict[str, subprocess.Popen[bytes]] = {}
        self.packets_delayed = 0
        """Packets the delayers held, summed as each stops (their last line says)."""
        self._queued: set[str] = set()

    # -- capability --------------------------------------------------------------------------

    def drop_unavailable_reason(self) -> str | None:
        if self.backend is None:
            return "partitions and loss need nft or iptables (apt-get install nftables)"
        return None

    def netem_available(self) -> bool:
        """Whether the kernel has `tc netem` (tried once, on a host's loopback)."""
        if self._netem is None:
            host = self.bed.host_names[0]
            added = self.bed.run(host, ["tc", "qdisc", "add", "dev", "lo", "root", "netem"])
            self._netem = added.returncode == 0
            if self._netem:
                self.bed.run(host, ["tc", "qdisc", "del", "dev", "lo", "root"])
        return self._netem

    def delay_unavailable_reason(self) -> str | None:
        if not self.netem_available() and not shutil.which("iptables"):
            return (
                "delay needs `tc netem`, which this kernel lacks (CONFIG_NET_SCH_NETEM), or "
                "iptables for a netfilter queue (apt-get install iptables)"
            )
        return None

    # -- rules -------------------------------------------------------------------------------

    def _do(self, host: str, argv: Sequence[str]) -> None:
        done = self.bed.run(host, argv)
        if done.returncode != 0:
            raise TestbedError(f"{host}: {' '.join(argv)}: {done.stderr.strip()}")

    def _prepare(self, host: str) -> None:
        reason = self.drop_unavailable_reason()
        if reason is not None:
            raise FaultUnavailable(reason)
        if host in self._ready or self.backend != "nft":
            return
        self._do(host, ["nft", "add", "table", "inet", _TABLE])
        self._do(
            host,
            ["nft", "add", "chain", "inet", _TABLE, "input",
             "{ type filter hook input priority 0 ; policy accept ; }"],
        )  # fmt: skip
        self._ready.add(host)

    def drop_from(self, host: str, sources: Iterable[str]) -> None:
        """``host`` drops every packet arriving from the hosts ``sources``."""
        self._prepare(host)
        for source in sources:
            address = self.bed.address(source)
            if self.backend == "nft":
                self._do(host, ["nft", "add", "rule", "inet", _TABLE, "input",
                                "ip", "saddr", address, "drop"])  # fmt: skip
            else:
                self._do(host, ["iptables", "-A", "INPUT", "-s", address, "-j", "DROP"])

    def partition(self, groups: Sequence[Iterable[str]]) -> None:
        """Hosts in different groups cannot reach each other; hosts in no group reach all."""
        sets = [set(g) for g in groups]
        for i, group in enumerate(sets):
            others = set().union(*(s for j, s in enumerate(sets) if j != i))
            for host in group:
                self.drop_from(host, sorted(others))

    def one_way(self, source: str, destination: str) -> None:
        """Packets from ``source`` to ``destination`` are dropped; the other way flows."""
        self.drop_from(destination, [source])

    def loss(self, host: str, percent: int) -> None:
        """``host`` loses ``percent`` % of the packets it receives (netem when the kernel has
        it, else a random-drop firewall rule)."""
        if not 0 < percent < 100:
            raise ValueError(f"loss percent must be in 1..99, not {percent}")
        if self.netem_available():
            self._netem_set(host, ["loss", f"{percent}%"])
            return
        self._prepare(host)
        if self.backend == "nft":
            self._do(host, ["nft", "add", "rule", "inet", _TABLE, "input",
                            "numgen", "random", "mod", "100", "<", str(percent), "drop"])  # fmt: skip
        else:
            self._do(host, ["iptables", "-A", "INPUT", "-m", "statistic", "--mode", "random",
                            "--probability", f"{percent / 100:.2f}", "-j", "DROP"])  # fmt: skip

    def delay(self, host: str, delay_ms: int, jitter_ms: int = 0) -> None:
        """``host``'s packets wait ``delay_ms`` (+- ``jitter_ms``): those it sends, with
        netem; those it receives, with a netfilter queue where the kernel has no netem."""
        if delay_ms <= 0 or not 0 <= jitter_ms <= delay_ms:
            raise ValueError(
                f"delay needs 0 < delay_ms and 0 <= jitter_ms <= delay_ms; got {delay_ms}, {jitter_ms}"
            )
        reason = self.delay_unavailable_reason()
        if reason is not None:
            raise FaultUnavailable(reason)
        if self.netem_available():
            self._netem_set(host, ["delay", f"{delay_ms}ms", f"{jitter_ms}ms"])
            return
        self._stop_delayer(host)  # a new delay replaces the one in effect
        proc = self.bed.popen(
            host,
            [sys.executable, "-m", "tests.faults.delayer", "--delay-ms", str(delay_ms),
             "--jitter-ms", str(jitter_ms), "--seed", str(delay_ms * 1000 + jitter_ms),
             "--max-seconds", str(DELAYER_LIFETIME_S)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=_REPO_ROOT,
        )  # fmt: skip
        self._delayers[host] = proc
        self._wait_ready(host, proc)
        if host not in self._queued:
            self._queued.add(host)  # before adding: heal removes whatever half of it was made
            self._do(host, ["iptables", "-t", "security", "-A", *_QUEUE_RULE])

    @staticmethod
    def _wait_ready(host: str, proc: subprocess.Popen[bytes]) -> None:
        """Wait (at most DELAYER_READY_S) for the delayer's ``ready`` line."""
        assert proc.stdout is not None
        readable, _, _ = select.select([proc.stdout], [], [], DELAYER_READY_S)
        line = proc.stdout.readline() if readable else b""
        if line.strip() == b"ready":
            return
        proc.kill()
        _, err = proc.communicate(timeout=5)
        message = err.decode(errors="replace").strip() or f"no ready line in {DELAYER_READY_S} s"
        raise FaultUnavailable(f"{host}: packet delayer: {message}")

    def _stop_delayer(self, host: str) -> None:
        """Stop ``host``'s delayer: it accepts every packet it still holds and exits."""
        proc = self._delayers.pop(host, None)
        if proc is None:
            return
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=5)
        for line in out.decode(errors="replace").splitlines():
            if line.startswith("delayer: passed "):
                self.packets_delayed += int(line.split()[2])

    def slow_link(self, host: str, rate_kbit: int, burst_bytes: int, latency_ms: int) -> None:
        """``host``'s link carries at most ``rate_kbit`` each way: a tbf with a bucket of
        ``burst_bytes`` and a queue of ``latency_ms`` worth of bytes at that rate (what does
        not fit is dropped), on its eth0 and on the bridge-side end of its veth."""
        if rate_kbit <= 0 or burst_bytes < 2048 or latency_ms <= 0:
            raise ValueError(
                f"slow link needs rate_kbit > 0, burst_bytes >= 2048 (a full frame), "
                f"latency_ms > 0; got {rate_kbit}, {burst_bytes}, {latency_ms}"
            )
        tbf = ["tbf", "rate", f"{rate_kbit}kbit", "burst", str(burst_bytes),
               "latency", f"{latency_ms}ms"]  # fmt: skip
        self._shaped.add(host)  # before adding: heal removes whatever half of it was made
        self._do(host, ["tc", "qdisc", "replace", "dev", "eth0", "root", *tbf])
        outside = ["tc", "qdisc", "replace", "dev", self.bed.hosts[host].veth, "root", *tbf]
        done = run_host_command(outside)
        if done.returncode != 0:
            raise TestbedError(f"{' '.join(outside)}: {done.stderr.strip()}")

    def _netem_set(self, host: str, args: list[str]) -> None:
        verb = "change" if host in self._delayed else "add"
        self._do(host, ["tc", "qdisc", verb, "dev", "eth0", "root", "netem", *args])
        self._delayed.add(host)

    @staticmethod
    def _del_root_qdisc(where: str, done: subprocess.CompletedProcess[str]) -> None:
        # There is none (a fault that failed half-way: tc says "Cannot delete qdisc with
        # handle of zero"); anything else is an error.
        if done.returncode != 0 and "handle of zero" not in done.stderr:
            raise TestbedError(f"{where}: tc qdisc del ... root: {done.stderr.strip()}")

    def heal(self) -> None:
        """Remove every rule and qdisc this firewall added, on every host."""
        for host in self.bed.host_names:
            if host in self._ready:
                self._do(host, ["nft", "flush", "chain", "inet", _TABLE, "input"])
            elif self.backend == "iptables":
                self.bed.run(host, ["iptables", "-F", "INPUT"])
            if host in self._delayed or host in self._shaped:
                self._del_root_qdisc(f"{host} eth0", self.bed.run(host, _del_root("eth0")))
            if host in self._shaped:  # the bridge-side end lives in the harness's namespace
                veth = self.bed.hosts[host].veth
                self._del_root_qdisc(veth, run_host_command(_del_root(veth)))
            if host in self._queued:  # the rule first, then its reader: nothing is queued after
                self._do(host, ["iptables", "-t", "security", "-F", "INPUT"])
            self._stop_delayer(host)
        self._delayed.clear()
        self._shaped.clear()
        self._queued.clear()
