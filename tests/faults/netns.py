"""A test network of its own: one bridge, one network namespace per host, veth pairs onto it.

    with Testbed(["n1", "n2", "n3", "client"]) as bed:      # needs root and `ip`
        proc = bed.popen("n1", ["python3", "-m", "rilke", "server", ...], log_path)
        bed.run("client", ["ping", "-c1", bed.address("n1")])
    # every namespace, link, mount and process it made is gone, also on failure and Ctrl-C

Addresses come from a private /24 of 10.77.0.0/16 that overlaps no route or address of the
host (checked when the bed is made). The bridge has no address in the host's namespace, so the
host's interfaces, routes and firewall are never touched and no packet leaves the bed: its
hosts reach only each other.

Every name the bed makes starts with ``rkf<tag>`` (``tag`` five random characters), and a
registry file ``/run/rilke-faults/<tag>.json`` names the owning pid and what was made, so
``cleanup_stale()`` can remove what a crashed run left behind (a SIGKILL skips every handler).
Processes started in the bed get SIGKILL when the harness dies (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import json
import logging
import os
import random
import shutil
import signal
import string
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

log = logging.getLogger(__name__)

PREFIX = "rkf"
REGISTRY_DIR = Path("/run/rilke-faults")
TEST_SUPERNET = ipaddress.ip_network("10.77.0.0/16")
COMMAND_TIMEOUT_S = 20.0
_PR_SET_PDEATHSIG = 1


class TestbedError(RuntimeError):
    """A command that builds or changes the bed failed; the message has its stderr."""


def unavailable_reason() -> str | None:
    """Why namespaces cannot be made here, or None when they can (root, Linux, `ip`)."""
    if not sys.platform.startswith("linux"):
        return "fault tests need Linux network namespaces"
    if os.geteuid() != 0:
        return "fault tests need root to make network namespaces (ip netns)"
    if shutil.which("ip") is None:
        return "fault tests need the `ip` command (iproute2)"
    return None


def _sh(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    if check and done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def run_host_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """``argv`` in the harness's own namespace (for the bridge-side ends of a bed's veths),
    to its end or COMMAND_TIMEOUT_S; the caller judges the return code."""
    return _sh(argv, check=False)


def _host_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the host routes or has an address in (all tables)."""
    nets: list[ipaddress.IPv4Network] = []
    routes = json.loads(_sh(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout or "[]")
    for route in routes:
        dst = route.get("dst", "")
        if dst == "default":
            continue  # the default route covers everything; it is not a collision
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(_sh(["ip", "-j", "-4", "addr"]).stdout or "[]"):
        for info in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                nets.append(
                    ipaddress.IPv4Network(f"{info['local']}/{info['prefixlen']}", strict=False)
                )
    return nets


def _live_registries() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    if REGISTRY_DIR.is_dir():
        for path in REGISTRY_DIR.glob("*.json"):
            with contextlib.suppress(OSError, ValueError):
                found[path.stem] = json.loads(path.read_text())
    return found


def choose_subnet(
    taken: Iterable[ipaddress.IPv4Network], rng: random.Random | None = None
) -> ipaddress.IPv4Network:
    """A /24 of 10.77.0.0/16 that overlaps none of ``taken``; raises TestbedError if none."""
    taken = list(taken)
    candidates = list(TEST_SUPERNET.subnets(new_prefix=24))
    (rng or random.Random()).shuffle(candidates)
    for net in candidates:
        if not any(net.overlaps(t) for t in taken):
            return net
    raise TestbedError("every /24 of 10.77.0.0/16 collides with a host route")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _set_pdeathsig() -> None:
    # Runs in the child between fork and exec: the child gets SIGKILL when the harness dies,
    # so no server outlives a harness killed with SIGKILL. (`ip netns exec` execs, keeping it.)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    veth: str  # the host-side end, on the bridge


@dataclass
class _Made:
    """What the bed made, in the order it was made (removed in reverse)."""

    netns: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)


class Testbed:
    """A bridge and one namespace per host name. Thread-safe for popen/run after entry."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, host_names: Sequence[str], *, tag: str | None = None) -> None:
        if len(set(host_names)) != len(host_names) or not host_names:
            raise ValueError(f"host names must be distinct and non-empty: {host_names!r}")
        if len(host_names) > 250:
            raise ValueError("at most 250 hosts fit one /24")
        self.tag = tag or "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        self.prefix = f"{PREFIX}{self.tag}"
        self.host_names = list(host_names)
        self.hosts: dict[str, Host] = {}
        self.bridge = f"{self.prefix}br"
        self.subnet: ipaddress.IPv4Network | None = None
        self._made = _Made()
        self._procs: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._closed = False
        self._old_handlers: dict[int, Any] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> Testbed:
        reason = unavailable_reason()
        if reason is not None:
            raise TestbedError(reason)
        atexit.register(self.close)
        self._install_signal_handlers()
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _install_signal_handlers(self) -> None:
        # SIGTERM and SIGHUP become SystemExit so `with` blocks unwind and close the bed;
        # Ctrl-C is already KeyboardInterrupt. Only the main thread may set handlers.
        if threading.current_thread() is not threading.main_thread():
            return

        def to_exit(signum: int, _frame: FrameType | None) -> None:
            raise SystemExit(128 + signum)

        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, to_exit)

    def _registry_path(self) -> Path:
        return REGISTRY_DIR / f"{self.tag}.json"

    def _save_registry(self) -> None:
        REGISTRY_DIR.mkdir(parents=True, exist_ok=True)
        state = {
            "pid": os.getpid(),
            "subnet": str(self.subnet),
            "netns": self._made.netns,
            "links": self._made.links,
            "mounts": self._made.mounts,
        }
        tmp = self._registry_path().with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(self._registry_path())

    def _build(self) -> None:
        taken = _host_networks()
        for other in _live_registries().values():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                taken.append(ipaddress.IPv4Network(other["subnet"]))
        self.subnet = choose_subnet(taken)
        self._save_registry()
        self._made.links.append(self.bridge)
        self._save_registry()
        _sh(["ip", "link", "add", self.bridge, "type", "bridge"])
        _sh(["ip", "link", "set", self.bridge, "up"])
        addresses = list(self.subnet.hosts())
        for i, name in enumerate(self.host_names, start=1):
            netns = f"{self.prefix}-{name}"
            veth = f"{self.prefix}v{i}"
            self._made.netns.append(netns)
            self._made.links.append(veth)
            self._save_registry()  # before making them: a crash mid-way leaves a full record
            _sh(["ip", "netns", "add", netns])
            _sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", f"{veth}p"])
            _sh(["ip", "link", "set", f"{veth}p", "netns", netns])
            _sh(["ip", "link", "set", veth, "master", self.bridge])
            _sh(["ip", "link", "set", veth, "up"])
            address = str(addresses[i - 1])
            inside = ["ip", "-n", netns]
            _sh([*inside, "link", "set", f"{veth}p", "name", "eth0"])
            _sh([*inside, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", "eth0"])
            _sh([*inside, "link", "set", "eth0", "up"])
            _sh([*inside, "link", "set", "lo", "up"])
            self.hosts[name] = Host(name, netns, address, veth)
        log.info("testbed %s: %s on %s", self.tag, ", ".join(self.host_names), self.subnet)

    def close(self) -> None:
        """Kill every process started here, unmount, remove namespaces and links. Idempotent;
        never raises (it runs from atexit and finally blocks); failures are logged."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        for proc in self._procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)  # a stopped process must not linger
                    proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
        _remove(self._made.mounts, self._made.netns, self._made.links)
        with contextlib.suppress(FileNotFoundError):
            self._registry_path().unlink()
        with contextlib.suppress(Exception):
            atexit.unregister(self.close)
        if threading.current_thread() is threading.main_thread():
            for sig, old in self._old_handlers.items():
                signal.signal(sig, old)
        self._old_handlers.clear()

    # -- using it --------------------------------------------------------------------------

    def address(self, host: str) -> str:
        return self.hosts[host].address

    def netns(self, host: str) -> str:
        return self.hosts[host].netns

    def popen(
        self,
        host: str,
        argv: Sequence[str],
        *,
        stdin: IO[Any] | int | None = subprocess.DEVNULL,
        stdout: IO[Any] | int | None = subprocess.DEVNULL,
        stderr: IO[Any] | int | None = subprocess.STDOUT,
        env: dict[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` inside ``host``'s namespace. The pid is the program's own (`ip netns
        exec` execs), so signals reach it directly. It is killed when the bed closes."""
        with self._lock:
            if self._closed:
                raise TestbedError("the testbed is closed")
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns(host), *argv],
                stdin=stdin,
                stdout=stdout,
                stderr=stderr,
                env=env,
                cwd=cwd,
                preexec_fn=_set_pdeathsig,  # noqa: PLW1509  (only prctl, async-signal-safe)
            )
            self._procs.append(proc)
            return proc

    def run(
        self, host: str, argv: Sequence[str], *, timeout_s: float = COMMAND_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside ``host``'s namespace to its end (killed at ``timeout_s``)."""
        return subprocess.run(
            ["ip", "netns", "exec", self.netns(host), *argv],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            preexec_fn=_set_pdeathsig,
        )

    def mount_small_fs(self, where: Path, size_bytes: int) -> Path:
        """A tmpfs of ``size_bytes`` at ``where`` (created), unmounted when the bed closes."""
        where.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._made.mounts.append(str(where))
            self._save_registry()
        _sh(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)])
        return where


def _remove(mounts: Iterable[str], netns: Iterable[str], links: Iterable[str]) -> None:
    for where in reversed(list(mounts)):
        done = _sh(["umount", "-l", where], check=False)
        if done.returncode != 0 and "not mounted" not in done.stderr:
            log.warning("umount %s: %s", where, done.stderr.strip())
    for name in reversed(list(netns)):
        done = _sh(["ip", "netns", "del", name], check=False)
        if done.returncode != 0 and "No such file" not in done.stderr:
            log.warning("ip netns del %s: %s", name, done.stderr.strip())
    for name in reversed(list(links)):
        # A veth goes with its peer's namespace; only what is still there is deleted.
        if _sh(["ip", "link", "show", name], check=False).returncode == 0:
            done = _sh(["ip", "link", "del", name], check=False)
            # "Cannot find device": its namespace's removal took it between show and del.
            if done.returncode != 0 and "Cannot find device" not in done.stderr:
                log.warning("ip link del %s: %s", name, done.stderr.strip())


def leftovers() -> tuple[list[str], list[str]]:
    """Namespaces and links on this host whose names carry the harness's prefix."""
    netns = [
        line.split()[0]
        for line in _sh(["ip", "netns", "list"]).stdout.splitlines()
        if line.startswith(PREFIX)
    ]
    links = [
        entry["ifname"]
        for entry in json.loads(_sh(["ip", "-j", "link"]).stdout or "[]")
        if entry.get("ifname", "").startswith(PREFIX)
    ]
    return netns, links


def cleanup_stale() -> list[str]:
    """Remove what dead runs left behind: every registered object of a registry whose pid is
    gone, and every prefixed namespace or link that no live run owns. Returns their names."""
    live = {
        tag for tag, state in _live_registries().items() if _pid_alive(int(state.get("pid", 0)))
    }
    removed: list[str] = []
    for tag, state in _live_registries().items():
        if tag in live:
            continue
        _remove(state.get("mounts", []), state.get("netns", []), state.get("links", []))
        removed += [*state.get("mounts", []), *state.get("netns", []), *state.get("links", [])]
        with contextlib.suppress(FileNotFoundError):
            (REGISTRY_DIR / f"{tag}.json").unlink()
    netns, links = leftovers()

    def owned(name: str) -> bool:
        return any(name.startswith(f"{PREFIX}{tag}") for tag in live)

    stray_ns = [n for n in netns if not owned(n)]
    stray_links = [n for n in links if not owned(n)]
    _remove([], stray_ns, stray_links)
    return removed + stray_ns + stray_links
