"""Reading a replicated topic back and checking it against what producers were told.

Records are (partition, offset, value) triples; values are unique per test, so a value seen
twice is a duplicate and an acknowledged value missing is a lost write.
"""

from __future__ import annotations

import time

from cluster_nodes import ClusterNodes

from rilke import Consumer, TopicPartition

Record = tuple[int, int, str]


def read_all(
    address: str, topic: str, partitions: int, expected: int, timeout_s: float = 60.0
) -> list[Record]:
    """Every record of ``topic`` from the start, once ``expected`` have come (or the deadline
    passed: the caller's checks then say what is missing)."""
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    with Consumer(bootstrap_servers=address, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        while len(out) < expected and time.monotonic() < deadline:
            for recs in c.poll(200).values():
                out += [(r.partition, r.offset, r.value.decode()) for r in recs]
    return out


def check_exactly_once(acked: list[Record], log: list[Record], *, ordered: bool = False) -> None:
    """Every acknowledged record is in ``log`` once, at its acknowledged offset. ``ordered``:
    also, the acknowledged offsets of each partition grow in the order acknowledged (true
    when one producer thread waited for its futures in send order)."""
    values = [v for _, _, v in log]
    assert len(values) == len(set(values)), "a record is in the log twice"
    at = {v: (p, o) for p, o, v in log}
    for p, o, v in acked:
        assert at.get(v) == (p, o), f"{v} acknowledged at {p}/{o}, in the log at {at.get(v)}"
    if ordered:
        for partition in {p for p, _, _ in acked}:
            offsets = [o for p, o, _ in acked if p == partition]
            assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)


def log_bytes(cluster: ClusterNodes, node: int, topic: str, partition: int) -> bytes:
    """The replica's segment files, in order, back to back (b"" when it has none)."""
    directory = cluster.data_dir(node) / f"{topic}-{partition}"
    try:
        return b"".join(s.read_bytes() for s in sorted(directory.glob("*.log")))
    except FileNotFoundError:
        return b""
