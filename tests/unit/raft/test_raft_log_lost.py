"""A follower that lost entries its leader counts as matched (a wiped data dir) says so on the
next heartbeat (APPEND_RESP with context LOG_LOST) and is sent its log again."""

from __future__ import annotations

from rilke.replication.raft import MessageType
from rilke.replication.raft.types import LOG_LOST
from tests.unit.raft.harness import Cluster


def test_a_wiped_follower_is_sent_its_log_again() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    for data in (b"a", b"b", b"c"):
        leader.propose(data)
    c.stabilize()
    assert c.nodes[3].last_index == leader.last_index == 4
    assert leader.peer_status()[3].match == 4

    # Node 3 comes back with nothing: a new, empty storage.
    c.stores[3] = c._new_storage()
    c.start(3)
    assert c.nodes[3].last_index == 0
    leader.tick()  # a heartbeat: commit = min(match 4, commit 4), beyond node 3's log
    c.process(1)
    c.deliver_all()
    answers = c.process(3)
    lost = [m for m in answers if m.type is MessageType.APPEND_RESP and m.to == 1]
    assert lost and lost[0].reject and lost[0].context == LOG_LOST
    assert lost[0].reject_hint == 0
    c.stabilize()
    assert leader.peer_status()[3].match == leader.last_index
    assert c.nodes[3].last_index == leader.last_index
    assert [e.data for e in c.applied[3] if e.data] == [b"a", b"b", b"c"]


def test_a_follower_that_holds_its_log_answers_heartbeats_as_before() -> None:
    c = Cluster(3)
    leader = c.elect(1)
    leader.propose(b"a")
    c.stabilize()
    leader.tick()
    c.process(1)
    c.deliver_all()
    answers = c.process(2)
    assert [m.type for m in answers if m.to == 1] == [MessageType.HEARTBEAT_RESP]
