"""A small interpreter of data-driven Raft scenarios, in the style of etcd's testdata/*.txt.

A scenario file is a sequence of blocks::

    # a comment
    command arg key=value key=(1,2,3)
    ----
    the exact expected output (no blank lines)
    <blank line>

The interpreter drives RaftNodes over MemoryStorage and an in-memory network in one thread,
deterministically (each node's rng is seeded with its id). With RILKE_REWRITE=1 the test
rewrites the expected outputs instead of comparing them.

Commands (IDs are node ids):
  add-nodes N voters=(..) [learners=(..)] [pre-vote=b] [check-quorum=b] [read-lease=b]
            [broadcast-commit=b]
            [election=T] [heartbeat=T] [max-inflight=N] [max-inflight-bytes=N]
            [max-size-per-msg=N] [max-uncommitted-bytes=N]
  set-log ID terms=(1,1,4,..) [term=T] [commit=C]   replace a node's durable log, restart it
  campaign ID | tick ID [N] | tick-election ID | tick-heartbeat ID
  propose ID DATA [count=N] | propose-conf-change ID add-learner|add-voter|remove NODE
  add-learner ID NODE | promote ID NODE | remove-node ID NODE  (shortcuts of the above)
  transfer-leader ID TO | read-index ID CONTEXT | report-snapshot ID TO ok|fail
  process-ready [ID..] | deliver-msgs [ID..] [drop=true] | stabilize [ID..]
  isolate ID | cut A B | partition (IDS) (IDS).. | heal | crash ID | restart ID
  compact ID INDEX
  raft-state | raft-log ID | status ID
"""

from __future__ import annotations

import os
import random
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rilke.errors import RilkeError
from rilke.replication.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryKind,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    RaftNode,
    Ready,
)

REWRITE_ENV = "RILKE_REWRITE"

_MT = MessageType


def fmt_entry(e: Entry) -> str:
    where = f"{e.term}/{e.index}" if e.offset_count == 1 else f"{e.term}/{e.first_index}..{e.index}"
    if e.kind is EntryKind.NO_OP:
        return f"{where} no-op"
    if e.kind is EntryKind.CONFIG:
        return f"{where} conf({e.data.decode()})"
    return f"{where} {e.data.decode(errors='replace')}" if e.data else where


def fmt_entries(entries: Iterable[Entry]) -> str:
    return "[" + ", ".join(fmt_entry(e) for e in entries) + "]"


def fmt_msg(m: Message) -> str:
    s = f"{m.frm}->{m.to} {m.type.value} term={m.term}"
    t = m.type
    if t in (_MT.VOTE, _MT.PRE_VOTE):
        s += f" last={m.log_term}/{m.index}"
    elif t is _MT.APPEND:
        s += f" prev={m.log_term}/{m.index} commit={m.commit}"
        if m.entries:
            s += " entries=" + fmt_entries(m.entries)
    elif t is _MT.APPEND_RESP:
        s += f" index={m.index}"
        if m.reject:
            s += f" hint={m.hint_term}/{m.reject_hint}"
    elif t is _MT.HEARTBEAT:
        s += f" commit={m.commit}"
    elif t is _MT.SNAPSHOT:
        assert m.snapshot is not None
        snap = m.snapshot
        s += f" snapshot={snap.term}/{snap.index} voters={_ids(snap.conf.voters)}"
        if snap.conf.learners:
            s += f" learners={_ids(snap.conf.learners)}"
    elif t in (_MT.READ_INDEX_RESP, _MT.TRANSFER_LEADER):
        s += f" index={m.index}"
    if m.reject:
        s += " rejected"
    if m.context:
        s += f" ctx={m.context.decode()}"
    return s


def _ids(ids: Iterable[int]) -> str:
    return "(" + ",".join(str(i) for i in sorted(ids)) + ")"


def _parse_ids(value: str) -> list[int]:
    value = value.strip("()")
    return [int(v) for v in value.replace(",", " ").split()] if value else []


def _parse_bool(value: str) -> bool:
    assert value in ("true", "false"), value
    return value == "true"


@dataclass
class Scenario:
    nodes: dict[int, RaftNode] = field(default_factory=dict)
    stores: dict[int, MemoryStorage] = field(default_factory=dict)
    configs: dict[int, Config] = field(default_factory=dict)
    outbox: list[Message] = field(default_factory=list)
    cut: set[tuple[int, int]] = field(default_factory=set)
    crashed: set[int] = field(default_factory=set)
    applied: dict[int, list[Entry]] = field(default_factory=dict)
    restarts: dict[int, int] = field(default_factory=dict)
    out: list[str] = field(default_factory=list)

    # --- plumbing -------------------------------------------------------------------------------

    def run(self, line: str) -> str:
        self.out = []
        words = shlex.split(line)
        cmd, args = words[0], words[1:]
        pos = [a for a in args if "=" not in a]
        kw = dict(a.split("=", 1) for a in args if "=" in a)
        handler: Callable[[list[str], dict[str, str]], None] | None = getattr(
            self, "cmd_" + cmd.replace("-", "_"), None
        )
        assert handler is not None, f"unknown command {cmd!r}"
        try:
            handler(pos, kw)
        except RilkeError as exc:
            self.out.append(f"error {type(exc).__name__}: {exc}")
        return "\n".join(self.out) if self.out else "ok"

    def _start(self, node_id: int) -> None:
        rng = random.Random(node_id * 1000 + self.restarts.get(node_id, 0))
        self.nodes[node_id] = RaftNode(self.configs[node_id], self.stores[node_id], rng)
        self.applied[node_id] = []

    def _ids(self, pos: list[str]) -> list[int]:
        return [int(p) for p in pos] if pos else sorted(self.nodes)

    def _process_ready(self, node_id: int) -> bool:
        node = self.nodes[node_id]
        if node_id in self.crashed or not node.has_ready():
            return False
        rd = node.ready()
        self.out.append(f"> {node_id} handling Ready")
        self._describe_ready(rd)
        self.stores[node_id].persist_ready(rd)
        self.outbox.extend(rd.messages)
        self.outbox.extend(rd.heartbeats)
        self.applied[node_id].extend(rd.committed_entries)
        node.advance(rd)
        return True

    def _describe_ready(self, rd: Ready) -> None:
        o = self.out
        if rd.soft_state is not None:
            o.append(f"  soft-state: {rd.soft_state.role.value} leader={rd.soft_state.leader_id}")
        if rd.hard_state is not None:
            hs = rd.hard_state
            o.append(f"  hard-state: term={hs.term} vote={hs.vote} commit={hs.commit}")
        if rd.snapshot is not None:
            o.append(f"  snapshot: {rd.snapshot.term}/{rd.snapshot.index}")
        if rd.truncate_from is not None:
            o.append(f"  truncate-from: {rd.truncate_from}")
        if rd.entries:
            o.append("  entries: " + fmt_entries(rd.entries))
        if rd.committed_entries:
            o.append("  committed: " + fmt_entries(rd.committed_entries))
        for rs in rd.read_states:
            o.append(f"  read-state: index={rs.index} ctx={rs.context.decode()}")
        for m in rd.messages:
            o.append("  send " + fmt_msg(m))
        for m in rd.heartbeats:
            o.append("  send " + fmt_msg(m))

    def _deliver(self, ids: list[int], drop: bool = False) -> bool:
        wanted = set(ids)
        keep: list[Message] = []
        todo: list[Message] = []
        for m in self.outbox:
            (todo if m.to in wanted else keep).append(m)
        self.outbox = keep
        by_node: dict[int, list[Message]] = {}
        for m in todo:
            by_node.setdefault(m.to, []).append(m)
        for node_id in sorted(by_node):
            self.out.append(f"> {node_id} receiving messages")
            for m in by_node[node_id]:
                if drop or (m.frm, m.to) in self.cut or node_id in self.crashed:
                    self.out.append(f"  dropped {fmt_msg(m)}")
                    continue
                self.out.append(f"  {fmt_msg(m)}")
                self.nodes[node_id].step(m)
        return bool(todo)

    # --- commands -------------------------------------------------------------------------------

    def cmd_add_nodes(self, pos: list[str], kw: dict[str, str]) -> None:
        count = int(pos[0])
        voters = _parse_ids(kw.get("voters", "()"))
        learners = _parse_ids(kw.get("learners", "()"))
        for _ in range(count):
            node_id = max(self.nodes, default=0) + 1
            self.configs[node_id] = Config(
                node_id=node_id,
                voters=voters,
                learners=learners,
                election_timeout_ticks=int(kw.get("election", "10")),
                heartbeat_timeout_ticks=int(kw.get("heartbeat", "1")),
                pre_vote=_parse_bool(kw.get("pre-vote", "false")),
                check_quorum=_parse_bool(kw.get("check-quorum", "false")),
                read_lease=_parse_bool(kw.get("read-lease", "false")),
                broadcast_commit=_parse_bool(kw.get("broadcast-commit", "true")),
                max_inflight_msgs=int(kw.get("max-inflight", "256")),
                max_inflight_bytes=int(kw.get("max-inflight-bytes", str(1 << 30))),
                max_size_per_msg=int(kw.get("max-size-per-msg", str(1 << 30))),
                max_uncommitted_bytes=int(kw.get("max-uncommitted-bytes", str(1 << 30))),
            )
            self.stores[node_id] = MemoryStorage(ConfState(frozenset(voters), frozenset(learners)))
            self._start(node_id)
        self.cmd_raft_state([], {})

    def cmd_set_log(self, pos: list[str], kw: dict[str, str]) -> None:
        node_id = int(pos[0])
        store = MemoryStorage()
        terms = _parse_ids(kw.get("terms", "()"))
        store.append([Entry(t, i + 1, b"") for i, t in enumerate(terms)])
        term = int(kw.get("term", str(terms[-1] if terms else 0)))
        store.set_hard_state(HardState(term, 0, int(kw.get("commit", "0"))))
        self.stores[node_id] = store
        self._start(node_id)
        self.cmd_raft_log([str(node_id)], {})

    def cmd_campaign(self, pos: list[str], kw: dict[str, str]) -> None:
        self.nodes[int(pos[0])].campaign()

    def cmd_tick(self, pos: list[str], kw: dict[str, str]) -> None:
        count = int(pos[1]) if len(pos) > 1 else 1
        for _ in range(count):
            self.nodes[int(pos[0])].tick()

    def cmd_tick_election(self, pos: list[str], kw: dict[str, str]) -> None:
        node_id = int(pos[0])
        self.cmd_tick([pos[0], str(2 * self.configs[node_id].election_timeout_ticks)], kw)

    def cmd_tick_heartbeat(self, pos: list[str], kw: dict[str, str]) -> None:
        node_id = int(pos[0])
        self.cmd_tick([pos[0], str(self.configs[node_id].heartbeat_timeout_ticks)], kw)

    def cmd_propose(self, pos: list[str], kw: dict[str, str]) -> None:
        index = self.nodes[int(pos[0])].propose(pos[1].encode(), int(kw.get("count", "1")))
        self.out.append(f"index {index}")

    def cmd_propose_conf_change(self, pos: list[str], kw: dict[str, str]) -> None:
        change = ConfChange(ConfChangeType(pos[1]), int(pos[2]))
        index = self.nodes[int(pos[0])].propose_conf_change(change)
        self.out.append(f"index {index}")

    def cmd_add_learner(self, pos: list[str], kw: dict[str, str]) -> None:
        self.cmd_propose_conf_change([pos[0], "add-learner", pos[1]], kw)

    def cmd_promote(self, pos: list[str], kw: dict[str, str]) -> None:
        self.cmd_propose_conf_change([pos[0], "add-voter", pos[1]], kw)

    def cmd_remove_node(self, pos: list[str], kw: dict[str, str]) -> None:
        self.cmd_propose_conf_change([pos[0], "remove-node", pos[1]], kw)

    def cmd_transfer_leader(self, pos: list[str], kw: dict[str, str]) -> None:
        self.nodes[int(pos[0])].transfer_leadership(int(pos[1]))

    def cmd_read_index(self, pos: list[str], kw: dict[str, str]) -> None:
        self.nodes[int(pos[0])].read_index(pos[1].encode())

    def cmd_report_snapshot(self, pos: list[str], kw: dict[str, str]) -> None:
        self.nodes[int(pos[0])].report_snapshot(int(pos[1]), pos[2] == "ok")

    def cmd_process_ready(self, pos: list[str], kw: dict[str, str]) -> None:
        for node_id in self._ids(pos):
            self._process_ready(node_id)

    def cmd_deliver_msgs(self, pos: list[str], kw: dict[str, str]) -> None:
        self._deliver(self._ids(pos), drop=_parse_bool(kw.get("drop", "false")))

    def cmd_stabilize(self, pos: list[str], kw: dict[str, str]) -> None:
        ids = self._ids(pos)
        for _ in range(1000):
            acted = False
            for node_id in ids:
                acted |= self._process_ready(node_id)
            acted |= self._deliver(ids)
            if not acted:
                return
        raise AssertionError("stabilize did not settle")

    def cmd_isolate(self, pos: list[str], kw: dict[str, str]) -> None:
        node_id = int(pos[0])
        for other in self.nodes:
            if other != node_id:
                self.cut |= {(node_id, other), (other, node_id)}

    def cmd_partition(self, pos: list[str], kw: dict[str, str]) -> None:
        """``partition (1,2) (3,4,5)``: cut every link between nodes of different groups."""
        groups = [set(_parse_ids(p)) for p in pos]
        for i, a in enumerate(groups):
            for b in groups[i + 1 :]:
                self.cut |= {(x, y) for x in a for y in b} | {(y, x) for x in a for y in b}

    def cmd_cut(self, pos: list[str], kw: dict[str, str]) -> None:
        a, b = int(pos[0]), int(pos[1])
        self.cut |= {(a, b), (b, a)}

    def cmd_heal(self, pos: list[str], kw: dict[str, str]) -> None:
        self.cut.clear()

    def cmd_crash(self, pos: list[str], kw: dict[str, str]) -> None:
        self.crashed.add(int(pos[0]))

    def cmd_restart(self, pos: list[str], kw: dict[str, str]) -> None:
        node_id = int(pos[0])
        self.crashed.discard(node_id)
        self.restarts[node_id] = self.restarts.get(node_id, 0) + 1
        self._start(node_id)
        self.cmd_raft_state([], {})

    def cmd_compact(self, pos: list[str], kw: dict[str, str]) -> None:
        node_id = int(pos[0])
        self.stores[node_id].compact(int(pos[1]), self.nodes[node_id].conf)
        self.cmd_raft_log([pos[0]], {})

    def cmd_raft_state(self, pos: list[str], kw: dict[str, str]) -> None:
        for node_id in self._ids(pos):
            n = self.nodes[node_id]
            state = "crashed" if node_id in self.crashed else n.role.value
            line = (
                f"{node_id}: {state} term={n.term} vote={n.vote} leader={n.leader_id} "
                f"commit={n.commit_index} applied={n.applied_index} last={n.last_index} "
                f"voters={_ids(n.conf.voters)}"
            )
            if n.conf.learners:
                line += f" learners={_ids(n.conf.learners)}"
            self.out.append(line)

    def cmd_raft_log(self, pos: list[str], kw: dict[str, str]) -> None:
        node = self.nodes[int(pos[0])]
        entries = node.log_entries(0, node.last_index)
        self.out.append(f"log start {node.first_index - 1}: " + fmt_entries(entries))

    def cmd_status(self, pos: list[str], kw: dict[str, str]) -> None:
        status = self.nodes[int(pos[0])].peer_status()
        if not status:
            self.out.append("not the leader")
        for node_id, st in status.items():
            line = f"{node_id}: {st.state.value} match={st.match} next={st.next}"
            if st.is_learner:
                line += " learner"
            if st.inflight_msgs:
                line += f" inflight={st.inflight_msgs}"
            self.out.append(line)


@dataclass
class Block:
    command: str
    expected: str
    line_no: int


def parse_file(path: Path) -> list[tuple[str, Block | None]]:
    """Split a scenario file into (leading text, block) pairs, keeping comments for rewriting."""
    lines = path.read_text().splitlines()
    items: list[tuple[str, Block | None]] = []
    lead: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            lead.append(line)
            i += 1
            continue
        command, line_no = line, i + 1
        i += 1
        assert i < len(lines) and lines[i] == "----", f"{path}:{line_no}: missing ----"
        i += 1
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        items.append(("\n".join(lead).strip("\n"), Block(command, "\n".join(expected), line_no)))
        lead = []
    items.append(("\n".join(lead).strip("\n"), None))
    return items


def run_file(path: Path) -> list[str]:
    """Run a scenario; returns mismatch descriptions (rewrites the file under RILKE_REWRITE)."""
    scenario = Scenario()
    rewrite = bool(os.environ.get(REWRITE_ENV))
    failures: list[str] = []
    out_parts: list[str] = []
    for lead, block in parse_file(path):
        if lead:
            out_parts.append(lead)
        if block is None:
            continue
        actual = scenario.run(block.command)
        out_parts.append(f"{block.command}\n----\n{actual}\n")
        if actual != block.expected and not rewrite:
            failures.append(
                f"{path.name}:{block.line_no}: {block.command}\n--- expected\n{block.expected}"
                f"\n--- actual\n{actual}"
            )
    if rewrite:
        text = "\n".join(out_parts)
        path.write_text(text.rstrip("\n") + "\n")
    return failures
