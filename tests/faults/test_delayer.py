"""The NFQUEUE delayer's netlink messages (pure: no socket)."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.faults import delayer


def _packet_message(queue: int, packet_id: int) -> bytes:
    # A NFQNL_MSG_PACKET as the kernel sends it: a mark attribute, then the packet header.
    attrs = delayer._attr(3, struct.pack("!I", 7))  # NFQA_MARK
    attrs += delayer._attr(delayer.NFQA_PACKET_HDR, struct.pack("!IHB", packet_id, 0x0800, 1))
    return delayer.message(delayer.NFQNL_MSG_PACKET, queue, attrs, family=socket.AF_INET)


def test_packet_ids_are_read_from_every_message_of_a_datagram() -> None:
    data = _packet_message(0, 41) + _packet_message(0, 42)
    kinds_and_ids = [
        (kind, delayer.packet_id(payload)) for kind, payload in delayer.split_messages(data)
    ]
    packet = (delayer.NFNL_SUBSYS_QUEUE << 8) | delayer.NFQNL_MSG_PACKET
    assert kinds_and_ids == [(packet, 41), (packet, 42)]


def test_a_truncated_message_is_not_read_past_its_end() -> None:
    whole = _packet_message(0, 5)
    assert list(delayer.split_messages(whole[:-3])) == []
    assert delayer.packet_id(b"\0" * 4 + struct.pack("=HH", 2, 1)) is None  # length < header


def test_a_verdict_accepts_the_packet_it_names() -> None:
    ((kind, payload),) = delayer.split_messages(delayer.verdict(3, 99))
    assert kind == (delayer.NFNL_SUBSYS_QUEUE << 8) | delayer.NFQNL_MSG_VERDICT
    assert struct.unpack_from("!H", payload, 2)[0] == 3  # the queue, big-endian
    length, attr = struct.unpack_from("=HH", payload, 4)
    assert (length, attr) == (12, delayer.NFQA_VERDICT_HDR)
    assert struct.unpack_from("!II", payload, 8) == (delayer.NF_ACCEPT, 99)


def test_bad_settings_are_refused_before_any_socket() -> None:
    with pytest.raises(ValueError, match="jitter"):
        delayer.Delayer(0, 0.1, 0.2, seed=1)
    with pytest.raises(ValueError, match="queue"):
        delayer.Delayer(70000, 0.1, 0.0, seed=1)
