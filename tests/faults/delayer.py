"""Packet delay without `tc netem`: a userspace NFQUEUE reader that holds each packet.

This kernel has no sch_netem, so the fault harness delays a host's packets the other way
the kernel offers: an iptables rule in the host's namespace sends them to a netfilter queue
(``-j NFQUEUE --queue-num N --queue-bypass``) and this program, started in the same
namespace, reads each queued packet's id over netlink (nfnetlink_queue, metadata only),
and gives the kernel its ACCEPT verdict once ``--delay-ms`` (+- ``--jitter-ms``, uniform)
have passed since it arrived. So every packet through the rule waits that long and, with
jitter, packets may be reordered, as netem does.

The protocol is the kernel's (include/uapi/linux/netfilter/nfnetlink_queue.h): a
NETLINK_NETFILTER socket, a config message binding the queue, a config message asking for
metadata copies and a longer queue, then packet messages in and verdict messages out, each
an nlmsghdr + nfgenmsg + attributes. Queues are per network namespace.

It stops by itself: at ``--max-seconds``, when its parent dies (PR_SET_PDEATHSIG) or at
SIGTERM/SIGINT, when it first accepts every packet it still holds. While a queue has no
reader, ``--queue-bypass`` lets packets through.

Run it as ``python -m tests.faults.delayer --queue 0 --delay-ms 200 --jitter-ms 50``; it
prints ``ready`` on stdout once the queue is bound, and a count line when it ends.
"""

from __future__ import annotations

import argparse
import ctypes
import heapq
import os
import random
import select
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2
NF_ACCEPT = 1

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")  # family, version, res_id (big-endian: packed by hand)
_NLATTR = struct.Struct("=HH")
_VERDICT = struct.Struct("!II")  # verdict, packet id
_PR_SET_PDEATHSIG = 1
QUEUE_MAXLEN = 16384
"""Packets held at most; the kernel drops what does not fit, as netem's limit does."""


class DelayerError(RuntimeError):
    """The queue could not be bound (no nfnetlink_queue, taken, no permission)."""


def _attr(kind: int, payload: bytes) -> bytes:
    raw = _NLATTR.pack(_NLATTR.size + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def message(msg_type: int, queue: int, attrs: bytes, *, family: int = 0, seq: int = 0,
            flags: int = NLM_F_REQUEST) -> bytes:  # fmt: skip
    """One nfnetlink_queue message: header, nfgenmsg naming ``queue``, then ``attrs``."""
    body = _NFGENMSG.pack(family, 0, socket.htons(queue)) + attrs
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg_type
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, flags, seq, 0) + body


def verdict(queue: int, packet_id: int) -> bytes:
    return message(
        NFQNL_MSG_VERDICT, queue, _attr(NFQA_VERDICT_HDR, _VERDICT.pack(NF_ACCEPT, packet_id))
    )


def split_messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload after the nlmsghdr) of each netlink message in one datagram."""
    at = 0
    while at + _NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSGHDR.unpack_from(data, at)
        if length < _NLMSGHDR.size or at + length > len(data):
            return
        yield kind, data[at + _NLMSGHDR.size : at + length]
        at += (length + 3) & ~3


def packet_id(payload: bytes) -> int | None:
    """The packet id in a NFQNL_MSG_PACKET payload (nfgenmsg + attributes), if it has one."""
    at = _NFGENMSG.size
    while at + _NLATTR.size <= len(payload):
        length, kind = _NLATTR.unpack_from(payload, at)
        if length < _NLATTR.size:
            return None
        if kind & 0x3FFF == NFQA_PACKET_HDR and length >= _NLATTR.size + 4:
            return int(struct.unpack_from("!I", payload, at + _NLATTR.size)[0])
        at += (length + 3) & ~3
    return None


class Delayer:
    """Holds the packets of one queue for ``delay_s`` (+- ``jitter_s``) each."""

    def __init__(self, queue: int, delay_s: float, jitter_s: float, seed: int) -> None:
        if not 0 <= queue <= 65535:
            raise ValueError(f"queue must be in 0..65535, not {queue}")
        if delay_s < 0 or not 0 <= jitter_s <= delay_s:
            raise ValueError(f"need delay >= 0 and 0 <= jitter <= delay; got {delay_s}, {jitter_s}")
        self.queue = queue
        self.delay_s = delay_s
        self.jitter_s = jitter_s
        self._rng = random.Random(seed)
        self._held: list[tuple[float, int]] = []
        self.passed = 0
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self._config(
            _attr(NFQA_CFG_CMD, struct.pack("!BBH", NFQNL_CFG_CMD_BIND, 0, socket.AF_INET)), 1
        )
        params = _attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META))
        self._config(params + _attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", QUEUE_MAXLEN)), 2)

    def _config(self, attrs: bytes, seq: int) -> None:
        flags = NLM_F_REQUEST | NLM_F_ACK
        self.sock.send(
            message(
                NFQNL_MSG_CONFIG, self.queue, attrs, family=socket.AF_INET, seq=seq, flags=flags
            )
        )
        self.sock.settimeout(5.0)
        try:
            for kind, payload in split_messages(self.sock.recv(65536)):
                if kind == NLMSG_ERROR:
                    errno = -struct.unpack_from("=i", payload)[0]
                    if errno:
                        raise DelayerError(f"binding queue {self.queue}: {os.strerror(errno)}")
        finally:
            self.sock.settimeout(None)

    def _receive(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            for kind, payload in split_messages(data):
                if kind != (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                    continue
                pid = packet_id(payload)
                if pid is not None:
                    wait = self.delay_s + self._rng.uniform(-self.jitter_s, self.jitter_s)
                    heapq.heappush(self._held, (now + wait, pid))

    def _release(self, until: float) -> None:
        out = []
        while self._held and self._held[0][0] <= until:
            out.append(verdict(self.queue, heapq.heappop(self._held)[1]))
        for at in range(0, len(out), 256):  # several verdicts a datagram
            self.sock.send(b"".join(out[at : at + 256]))
        self.passed += len(out)

    def run(self, deadline: float, stopping: list[bool]) -> None:
        while not stopping and time.monotonic() < deadline:
            now = time.monotonic()
            timeout = min(deadline - now, 0.5)
            if self._held:
                timeout = max(0.0, min(timeout, self._held[0][0] - now))
            readable, _, _ = select.select([self.sock], [], [], timeout)
            now = time.monotonic()
            if readable:
                self._receive(now)
            self._release(now)
        self._release(float("inf"))  # nothing held is left behind


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.faults.delayer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--delay-ms", type=int, required=True)
    parser.add_argument("--jitter-ms", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-seconds", type=float, default=600.0, help="stop by itself after this long"
    )
    args = parser.parse_args(argv)
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    stopping: list[bool] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, lambda *_: stopping.append(True))
    try:
        delayer = Delayer(args.queue, args.delay_ms / 1000, args.jitter_ms / 1000, args.seed)
    except (DelayerError, ValueError, OSError) as exc:
        print(f"delayer: {exc}", file=sys.stderr)
        return 2
    print("ready", flush=True)
    delayer.run(time.monotonic() + args.max_seconds, stopping)
    print(f"delayer: passed {delayer.passed} packets", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
