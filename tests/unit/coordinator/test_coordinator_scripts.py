"""Data-driven scenarios (in the manner of etcd-io/raft's testdata): each file in testdata/
is a script of commands (lines starting with "> ") each followed by the exact output it must
produce. Run with RILKE_REWRITE=1 to regenerate the expected output after a deliberate
change, then read the diff.

Commands: ``topics t=4 u=2``; ``join NAME [topics=t,u] [instance=ID] [session=MS]``;
``hb NAME...`` (heartbeats, owning what the last answer gave); ``leave NAME [static]``;
``crash NAME``; ``advance MS``; ``commit NAME t-0=5 ...``; ``describe``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from coord_harness import Cluster, FakeConsumer

from rilke.server.coordinator import TopicPartition

DATA = Path(__file__).with_name("testdata")


def _tps(tps: frozenset[TopicPartition] | set[TopicPartition]) -> str:
    return " ".join(f"{tp.topic}-{tp.partition}" for tp in sorted(tps)) or "-"


class Script:
    def __init__(self) -> None:
        self.cl = Cluster({})
        self.by_name: dict[str, FakeConsumer] = {}
        self.names: dict[str, str] = {}  # member id -> name

    def summary(self) -> list[str]:
        g = self.cl.coord.groups.get("g")
        if g is None:
            return ["group g: none"]
        out = [f"group g: {g.state.value} epoch {g.group_epoch}"]
        for mid in sorted(g.members, key=lambda m: self.names.get(m, m)):
            m = g.members[mid]
            extra = " (left, static)" if m.left_static else ""
            out.append(
                f"  {self.names.get(mid, mid)}: epoch {m.member_epoch} {m.state.value}{extra} "
                f"assigned [{_tps(m.assigned)}] revoking [{_tps(m.pending_revocation)}] "
                f"target [{_tps(g.target.get(mid, frozenset()))}]"
            )
        return out

    def answer(self, name: str, reply: object) -> str:
        c = self.by_name[name]
        err = getattr(reply, "error", None)
        if err is not None:
            return f"{name} <- {type(err).__name__}"
        self.names[c.member_id] = name
        return f"{name} <- epoch {c.epoch} owns [{_tps(c.owned)}]"

    def run(self, line: str) -> list[str]:
        cmd, *args = line.split()
        kw = dict(a.split("=", 1) for a in args if "=" in a)
        flags = [a for a in args if "=" not in a]
        if cmd == "topics":
            self.cl.topics.update({k: int(v) for k, v in kw.items()})
            return []
        if cmd == "join":
            name = flags[0]
            c = self.cl.consumer(
                topics=tuple(kw.get("topics", "t").split(",")),
                instance_id=kw.get("instance"),
                session_timeout_ms=int(kw.get("session", "10000")),
            )
            self.by_name[name] = c
            return [self.answer(name, c.join()), *self.summary()]
        if cmd == "hb":
            out = [self.answer(n, self.by_name[n].heartbeat()) for n in flags]
            return [*out, *self.summary()]
        if cmd == "leave":
            name = flags[0]
            reply = self.by_name[name].leave(static="static" in flags)
            err = reply.error
            return [
                f"{name} left" if err is None else f"{name} <- {type(err).__name__}",
                *self.summary(),
            ]
        if cmd == "crash":
            self.by_name[flags[0]].crash()
            return []
        if cmd == "advance":
            self.cl.advance(int(flags[0]))
            events = [e.message for e in self.cl.events[-10:] if "removed" in e.message]
            self.cl.events.clear()
            return [*(f"event: {e}" for e in events), *self.summary()]
        if cmd == "commit":
            c = self.by_name[flags[0]]
            offsets = {}
            for k, v in kw.items():
                topic, _, p = k.rpartition("-")
                offsets[TopicPartition(topic, int(p))] = int(v)
            reply = self.cl.commit("g", offsets, c.member_id, c.epoch)
            if reply.error is not None:
                return [f"commit <- {type(reply.error).__name__}"]
            if reply.response.errors:
                return [
                    f"commit <- {', '.join(type(e.error).__name__ for e in reply.response.errors)}"
                ]
            return ["commit ok"]
        if cmd == "describe":
            return self.summary()
        raise ValueError(f"unknown command {cmd!r}")


def _run_file(path: Path) -> tuple[str, str]:
    text = path.read_text()
    script = Script()
    out: list[str] = []
    for line in text.splitlines():
        if line.startswith("> "):
            out.append(line)
            out.extend(script.run(line[2:]))
        elif line.startswith("#") or (not line.strip() and (not out or out[-1].strip())):
            out.append(line)
    return text, "\n".join(out).rstrip("\n") + "\n"


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.stem)
def test_script(path: Path) -> None:
    expected, got = _run_file(path)
    if os.environ.get("RILKE_REWRITE"):
        path.write_text(got)
        return
    assert got == expected
