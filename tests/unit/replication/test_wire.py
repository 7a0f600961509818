"""The wire payload: round trips and bytes it did not make."""

from __future__ import annotations

import pytest

from rilke.replication import wire
from rilke.replication.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Snapshot,
)
from rilke.replication.wire import WireError, WireItem


def _items() -> list[WireItem]:
    append = Message(
        MessageType.APPEND,
        2,
        1,
        5,
        log_term=4,
        index=9,
        entries=[Entry(5, 12, b"x" * 100, EntryKind.NORMAL, 3), Entry(5, 13, b"", EntryKind.NO_OP)],
        commit=9,
    )
    reject = Message(
        MessageType.APPEND_RESP, 1, 2, 5, index=9, reject=True, reject_hint=7, hint_term=3
    )
    snap = Message(
        MessageType.SNAPSHOT,
        3,
        1,
        5,
        snapshot=Snapshot(40, 4, ConfState(frozenset({1, 2}), frozenset({3})), b"state"),
    )
    beat = Message(MessageType.HEARTBEAT, 2, 1, 5, commit=13, context=b"read-1")
    return [
        WireItem("t-0", append),
        WireItem("t-1", reject),
        WireItem("__meta", snap),
        WireItem("t-2", beat, True),
    ]


def test_round_trip() -> None:
    items = _items()
    assert wire.decode(wire.encode(items)) == items


def test_empty_payload() -> None:
    assert wire.decode(wire.encode([])) == []


@pytest.mark.parametrize("cut", [1, 5, 30, 60])
def test_truncated_payload_is_refused(cut: int) -> None:
    data = wire.encode(_items())
    with pytest.raises(WireError):
        wire.decode(data[: len(data) - cut])


def test_unknown_type_is_refused() -> None:
    data = bytearray(wire.encode(_items()[:1]))
    data[2 + len("t-0")] = 250  # the message type byte
    with pytest.raises(WireError, match="type"):
        wire.decode(bytes(data))
