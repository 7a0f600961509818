"""The safety checks of the replication path, on what the production code holds.

- No acknowledged (acks=all) batch lost: every acknowledged batch is, at the end, in every
  replica's committed log at the offset it was acknowledged with.
- Committed prefixes agree and never change: every committed batch any replica ever showed
  (below its high watermark) is byte for byte what any replica shows at that offset, then or
  later (across crashes, truncations and restarts).
- The high watermark never goes backwards within a replica's incarnation, and never passes
  its log end.
- Every replica's log holds every committed batch from its log start on, with no hole.
- An idempotent producer's batch is committed at most once (no duplicate pid/sequence).
- Every replica's producer state is the same, and the same as one rebuilt from the log, once
  the replicas hold the same committed log.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from rilke.partition.producer_state import ProducerState
from rilke.records.header import iter_headers

from .node import Incarnation


class SafetyViolation(AssertionError):
    def __init__(self, prop: str, detail: str) -> None:
        super().__init__(f"{prop}: {detail}")
        self.prop = prop
        self.detail = detail


@dataclass
class CheckStats:
    checks: int = 0
    committed_batches: int = 0
    acked_batches: int = 0


@dataclass
class _Scan:
    incarnation: int
    next_offset: int
    hw_seen: int


@dataclass
class Checker:
    stats: CheckStats = field(default_factory=CheckStats)
    committed: dict[tuple[int, int], bytes] = field(default_factory=dict)
    """(partition, base offset) -> the batch committed there (as first seen)."""
    first_seen: dict[tuple[int, int], str] = field(default_factory=dict)
    acked: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    """(partition, base offset) -> (producer id, base sequence) of an acknowledged batch."""
    _scans: dict[tuple[int, int], _Scan] = field(default_factory=dict)
    metadata: dict[int, bytes] = field(default_factory=dict)
    """Metadata applied index -> the controller state's bytes there (as first seen)."""
    topics_acked: set[str] = field(default_factory=set)
    """Topics whose creation the controller acknowledged (committed and applied)."""

    def check_metadata(self, node: int, live: Incarnation, where: str) -> None:
        """The node's controller state at its applied index is what every node had there."""
        controller = live.controller
        if controller is None:
            return
        index, data = controller.applier.snapshot()
        seen = self.metadata.setdefault(index, data)
        if seen != data:
            raise SafetyViolation(
                "metadata state",
                f"n{node} ({where}): the controller state at applied index {index} differs "
                "from another node's at that index",
            )

    def check_metadata_final(self, replicas: dict[int, Incarnation]) -> None:
        states = {}
        for n, live in replicas.items():
            if live.controller is None:
                return
            states[n] = live.controller.applier.snapshot()
            missing = self.topics_acked - set(live.controller.applier.state.topics)
            if missing:
                raise SafetyViolation(
                    "acknowledged metadata lost",
                    f"n{n}: topics {sorted(missing)} were acknowledged but are not in its state",
                )
        if len(set(states.values())) != 1:
            indexes = {n: i for n, (i, _d) in states.items()}
            raise SafetyViolation("metadata state", f"controllers differ at the end: {indexes}")

    def ack(self, partition: int, base_offset: int, producer_id: int, sequence: int) -> None:
        key = (partition, base_offset)
        ident = (producer_id, sequence)
        old = self.acked.get(key)
        if old is not None and old != ident:
            raise SafetyViolation(
                "acknowledgement",
                f"partition {partition} offset {base_offset} acknowledged to {old} and {ident}",
            )
        self.acked[key] = ident
        self.stats.acked_batches = len(self.acked)

    def check_replica(self, node: int, incarnation: int, live: Incarnation, where: str) -> None:
        """The incremental checks of one live replica (its new committed batches, its high
        watermarks since the last check)."""
        self.stats.checks += 1
        for p, part in live.partitions.items():
            hws = live.high_watermarks[p]
            for a, b in itertools.pairwise(hws):
                if b < a:
                    raise SafetyViolation(
                        "high watermark", f"n{node} partition {p} went back from {a} to {b}"
                    )
            del hws[:-1]
            plog = live.logs[p]
            hw = part.high_watermark
            if hw > plog.log_end_offset:
                raise SafetyViolation(
                    "high watermark",
                    f"n{node} partition {p}: {hw} past log end {plog.log_end_offset}",
                )
            scan = self._scans.get((node, p))
            if scan is None or scan.incarnation != incarnation:
                scan = _Scan(incarnation, plog.log_start_offset, hw)
                self._scans[(node, p)] = scan
            scan.next_offset = max(scan.next_offset, plog.log_start_offset)
            self._scan(node, p, live, scan, hw, where)

    def _scan(self, node: int, p: int, live: Incarnation, scan: _Scan, hw: int, where: str) -> None:
        plog = live.logs[p]
        offset = scan.next_offset
        while offset < hw:
            data = plog.read(offset, 1 << 20, max_offset=hw).records
            if not data:
                break
            for pos, header in iter_headers(data, check=False):
                if header.next_offset > hw:
                    break
                if header.base_offset > offset:
                    # The log skips offsets it counts as held (no compaction here).
                    raise SafetyViolation(
                        "committed prefix",
                        f"n{node} partition {p} ({where}): a hole in the log, offsets {offset}"
                        f"..{header.base_offset - 1} are missing below its high watermark {hw}",
                    )
                batch = bytes(data[pos : pos + header.size])
                key = (p, header.base_offset)
                seen = self.committed.get(key)
                if seen is None:
                    self.committed[key] = batch
                    self.first_seen[key] = f"n{node} {where}"
                    self.stats.committed_batches += 1
                elif seen != batch:
                    raise SafetyViolation(
                        "committed prefix",
                        f"n{node} partition {p} ({where}) holds a different committed batch at "
                        f"offset {header.base_offset} than {self.first_seen[key]} showed",
                    )
                offset = header.next_offset
            else:
                continue
            break
        scan.next_offset = offset

    def check_final(self, replicas: dict[int, Incarnation]) -> None:
        """Once every replica is up and caught up (same log end, high watermark there)."""
        partitions = next(iter(replicas.values())).partitions
        for n, live in replicas.items():
            for p in partitions:
                hw = live.partitions[p].high_watermark
                scan = _Scan(-1, live.logs[p].log_start_offset, hw)
                self._scan(n, p, live, scan, hw, "at the end")
                if scan.next_offset != hw:
                    raise SafetyViolation(
                        "committed prefix",
                        f"n{n} partition {p}: committed batches end at {scan.next_offset}, "
                        f"its high watermark is {hw}",
                    )
        for p in partitions:
            ends = {n: live.logs[p].log_end_offset for n, live in replicas.items()}
            hws = {n: live.partitions[p].high_watermark for n, live in replicas.items()}
            if len(set(ends.values())) != 1 or ends != hws:
                raise SafetyViolation(
                    "convergence", f"partition {p}: log ends {ends}, high watermarks {hws}"
                )
            starts = {n: live.logs[p].log_start_offset for n, live in replicas.items()}
            for n, live in replicas.items():
                self._holds_every_committed_batch(n, p, live)
            for key, ident in self.acked.items():
                if key[0] != p:
                    continue
                batch = self.committed.get(key)
                if batch is None and key[1] >= max(starts.values()):
                    raise SafetyViolation(
                        "acknowledged write lost",
                        f"partition {p}: batch {ident} acknowledged at offset {key[1]} is in "
                        "no replica's committed log",
                    )
            seen: dict[tuple[int, int], int] = {}
            for (q, base), batch in sorted(self.committed.items()):
                if q != p:
                    continue
                header = next(iter_headers(batch, check=False))[1]
                if (p, base) in self.acked and self.acked[(p, base)] != (
                    header.producer_id,
                    header.base_sequence,
                ):
                    raise SafetyViolation(
                        "acknowledged write lost",
                        f"partition {p} offset {base}: acknowledged {self.acked[(p, base)]}, "
                        f"committed ({header.producer_id}, {header.base_sequence})",
                    )
                if header.producer_id >= 0:
                    ident = (header.producer_id, header.base_sequence)
                    if ident in seen:
                        raise SafetyViolation(
                            "duplicate",
                            f"partition {p}: producer {ident[0]} sequence {ident[1]} committed "
                            f"at offsets {seen[ident]} and {base}",
                        )
                    seen[ident] = base
            dumps = {}
            for n, live in replicas.items():
                table = live.partitions[p]._producers.table  # the replica's own table
                dumps[n] = sorted(map(tuple, table.dump()))
                rebuilt = ProducerState(live.logs[p], None).table
                if sorted(map(tuple, rebuilt.dump())) != dumps[n]:
                    raise SafetyViolation(
                        "producer state",
                        f"n{n} partition {p}: the live table {dumps[n]} is not the one rebuilt "
                        f"from its log {sorted(map(tuple, rebuilt.dump()))}",
                    )
            if len({tuple(d) for d in dumps.values()}) != 1:
                raise SafetyViolation("producer state", f"partition {p}: replicas differ: {dumps}")

    def _holds_every_committed_batch(self, node: int, p: int, live: Incarnation) -> None:
        """Every batch committed anywhere, from this replica's log start on, is in its log at
        the same offset, byte for byte."""
        plog = live.logs[p]
        start = plog.log_start_offset
        for (q, base), batch in sorted(self.committed.items()):
            if q != p or base < start:
                continue
            data = plog.read(base, 1).records
            held = b""
            for pos, header in iter_headers(data, check=False):
                if header.base_offset == base:
                    held = bytes(data[pos : pos + header.size])
                break
            if held != batch:
                raise SafetyViolation(
                    "committed prefix",
                    f"n{node} partition {p}: the batch committed at offset {base} "
                    f"({self.first_seen[(p, base)]}) is not in its log there",
                )
