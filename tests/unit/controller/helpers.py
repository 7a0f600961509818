"""Shared builders for the controller tests: a state with a cluster id and brokers."""

from __future__ import annotations

from collections.abc import Sequence

from rilke.replication.controller.decider import ControllerDecider
from rilke.replication.controller.records import (
    BrokerRegistered,
    BrokerUnfenced,
    ClusterCreated,
    MetadataRecord,
)
from rilke.replication.controller.state import MetadataState


class Log:
    """A state plus the next offset: ``append(records)`` applies them as one batch."""

    def __init__(self) -> None:
        self.state = MetadataState()
        self.next_offset = 1

    def append(self, records: Sequence[MetadataRecord]) -> int:
        """Apply as one entry; returns its last offset. Raises what the state raises (the
        offsets are consumed either way)."""
        last = self.next_offset + len(records) - 1
        self.next_offset = last + 1
        self.state.apply_batch(records, last)
        return last


def cluster(brokers: int = 3, racks: Sequence[str | None] | None = None) -> Log:
    """A log with a cluster id and ``brokers`` alive brokers 1..N (port 9000 + id)."""
    log = Log()
    log.append([ClusterCreated("test-cluster")])
    for b in range(1, brokers + 1):
        rack = racks[b - 1] if racks else None
        epoch = log.append([BrokerRegistered(b, "127.0.0.1", 9000 + b, rack)])
        log.append([BrokerUnfenced(b, epoch)])
    return log


def decide_and_apply(log: Log, records: list[MetadataRecord]) -> list[MetadataRecord]:
    if records:
        log.append(records)
    return records


def decider_for(log: Log, now_ms: int = 0) -> ControllerDecider:
    decider = ControllerDecider(log.state)
    decider.become_leader(now_ms)
    return decider
