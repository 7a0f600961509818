"""The bytes of Raft messages between two nodes: many groups' messages in one payload.

Sans-I/O: :func:`encode` turns a list of :class:`WireItem` (a group name and a core
:class:`Message`, or a quiesce notice) into one payload; :func:`decode` does the reverse and
raises :class:`WireError` for bytes it did not produce, so a bad peer cannot crash the
receiver. The transport (:mod:`rilke.replication.transport`) splits a payload into chunks of at
most ``max_chunk_bytes`` and joins them again.

Layout (big-endian), repeated until the end of the payload::

    group      u16 length, UTF-8
    message    u8 type, i32 to, i32 from, i64 term, log_term, index, commit, u8 flags,
               i64 reject_hint, hint_term
    context    u32 length, bytes
    entries    u32 count, then each: i64 term, i64 index, u8 kind, i64 offset_count,
               u32 length, bytes
    snapshot   (flag 2) i64 index, i64 term, u16 voters + i64 each, u16 learners + i64
               each, u32 length, bytes

Flags: 1 reject, 2 snapshot present, 4 quiesce (a HEARTBEAT that also says "this group went
quiet: stop ticking it until its next message"; see :mod:`rilke.replication.runtime`).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from rilke.errors import ProtocolError
from rilke.replication.raft.types import (
    ConfState,
    Entry,
    EntryKind,
    Message,
    MessageType,
    Snapshot,
)

_TYPES = list(MessageType)
_TYPE_CODE = {t: i for i, t in enumerate(_TYPES)}
_KINDS = list(EntryKind)
_KIND_CODE = {k: i for i, k in enumerate(_KINDS)}

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_MSG = struct.Struct(">BiiqqqqBqq")
_ENTRY = struct.Struct(">qqBqI")
_SNAP = struct.Struct(">qq")

_REJECT = 1
_SNAPSHOT = 2
_QUIESCE = 4


class WireError(ProtocolError):
    """Bytes from a peer that are not Raft messages this node can read."""


class WireItem(NamedTuple):
    """One message of one group. ``quiesce`` only on a HEARTBEAT (see the module docstring)."""

    group: str
    message: Message
    quiesce: bool = False


def encode(items: list[WireItem]) -> bytes:
    """One payload holding ``items`` in order."""
    out: list[bytes] = []
    add = out.append
    for group, msg, quiesce in items:
        name = group.encode()
        add(_U16.pack(len(name)))
        add(name)
        flags = (_REJECT if msg.reject else 0) | (_SNAPSHOT if msg.snapshot else 0)
        if quiesce:
            flags |= _QUIESCE
        add(
            _MSG.pack(
                _TYPE_CODE[msg.type],
                msg.to,
                msg.frm,
                msg.term,
                msg.log_term,
                msg.index,
                msg.commit,
                flags,
                msg.reject_hint,
                msg.hint_term,
            )
        )
        add(_U32.pack(len(msg.context)))
        add(msg.context)
        add(_U32.pack(len(msg.entries)))
        for entry in msg.entries:
            add(
                _ENTRY.pack(
                    entry.term,
                    entry.index,
                    _KIND_CODE[entry.kind],
                    entry.offset_count,
                    len(entry.data),
                )
            )
            add(entry.data)
        snap = msg.snapshot
        if snap is not None:
            add(_SNAP.pack(snap.index, snap.term))
            for members in (snap.conf.voters, snap.conf.learners):
                add(_U16.pack(len(members)))
                for node in sorted(members):
                    add(_I64.pack(node))
            add(_U32.pack(len(snap.data)))
            add(snap.data)
    return b"".join(out)


def decode(payload: bytes | memoryview) -> list[WireItem]:
    """The items of a payload made by :func:`encode`. Raises WireError otherwise."""
    view = memoryview(payload)
    pos = 0
    end = len(view)
    items: list[WireItem] = []
    try:
        while pos < end:
            (size,) = _U16.unpack_from(view, pos)
            pos += 2
            group = _take(view, pos, size).decode()
            pos += size
            fields = _MSG.unpack_from(view, pos)
            pos += _MSG.size
            code, to, frm, term, log_term, index, commit, flags, hint, hint_term = fields
            if code >= len(_TYPES):
                raise WireError(f"unknown Raft message type {code}")
            (size,) = _U32.unpack_from(view, pos)
            pos += 4
            context = _take(view, pos, size)
            pos += size
            (count,) = _U32.unpack_from(view, pos)
            pos += 4
            entries: list[Entry] = []
            for _ in range(count):
                e_term, e_index, kind, e_count, size = _ENTRY.unpack_from(view, pos)
                pos += _ENTRY.size
                if kind >= len(_KINDS) or e_term < 1 or e_count < 1 or e_index < e_count:
                    raise WireError(f"entry {e_index} of group {group!r} does not hold")
                entries.append(
                    Entry(e_term, e_index, _take(view, pos, size), _KINDS[kind], e_count)
                )
                pos += size
            snapshot = None
            if flags & _SNAPSHOT:
                s_index, s_term = _SNAP.unpack_from(view, pos)
                pos += _SNAP.size
                members: list[frozenset[int]] = []
                for _ in range(2):
                    (n,) = _U16.unpack_from(view, pos)
                    pos += 2
                    ids = [_I64.unpack_from(view, pos + 8 * i)[0] for i in range(n)]
                    pos += 8 * n
                    members.append(frozenset(ids))
                (size,) = _U32.unpack_from(view, pos)
                pos += 4
                data = _take(view, pos, size)
                pos += size
                if members[0] & members[1]:
                    raise WireError("a snapshot's voters and learners overlap")
                snapshot = Snapshot(s_index, s_term, ConfState(members[0], members[1]), data)
            msg = Message(
                _TYPES[code],
                to,
                frm,
                term,
                log_term=log_term,
                index=index,
                entries=entries or (),
                commit=commit,
                reject=bool(flags & _REJECT),
                reject_hint=hint,
                hint_term=hint_term,
                snapshot=snapshot,
                context=context,
            )
            items.append(WireItem(group, msg, bool(flags & _QUIESCE)))
    except (struct.error, UnicodeDecodeError) as exc:
        raise WireError(f"cannot read Raft messages at byte {pos}: {exc}") from exc
    return items


def _take(view: memoryview, pos: int, size: int) -> bytes:
    if pos + size > len(view):
        raise WireError(f"a field of {size} bytes at byte {pos} runs past the payload")
    return bytes(view[pos : pos + size])
