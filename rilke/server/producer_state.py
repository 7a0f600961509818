"""Idempotent producing: per-partition producer state, and producer id allocation.

A producer with an id (``producer_id >= 0``) numbers its batches per partition with sequences.
The partition remembers, per producer, its epoch and the last few batches it wrote (sequences
and offsets), so that:

- a retried batch (same epoch, same first and last sequence as a remembered one) is answered
  with its original base offset and not written again (a duplicate is a success);
- a batch that leaves a gap, or repeats a sequence not remembered, gets OutOfOrderSequenceError;
- a batch from an older epoch gets InvalidProducerEpochError (the producer was fenced);
- a new epoch starts again at sequence 0.

:class:`ProducerStateTable` is sans-I/O: the partition feeds it the batch headers it appends
and the ones it finds at the tail of the log when it opens. Not thread-safe.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rilke.errors import (
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
)
from rilke.records.header import NO_PRODUCER_ID, NO_SEQUENCE, BatchHeader
from rilke.server.files import write_atomically

BATCHES_REMEMBERED = 5  # as Kafka: a producer keeps at most 5 requests in flight per partition
_SEQUENCE_MASK = 0x7FFFFFFF


@dataclass(frozen=True, slots=True)
class _WrittenBatch:
    first_sequence: int
    last_sequence: int
    base_offset: int


@dataclass(slots=True)
class _ProducerEntry:
    epoch: int
    batches: deque[_WrittenBatch] = field(default_factory=lambda: deque(maxlen=BATCHES_REMEMBERED))

    @property
    def last_sequence(self) -> int:
        return self.batches[-1].last_sequence if self.batches else NO_SEQUENCE


class ProducerStateTable:
    """What each idempotent producer last wrote to one partition."""

    def __init__(self) -> None:
        self._producers: dict[int, _ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, headers: Sequence[BatchHeader]) -> int | None:
        """Check the batches of one append against the state without changing it.

        Returns None when the batches are new and may be written, or the original base offset
        when the append is a retry of batches already written (all of them duplicates).
        Raises OutOfOrderSequenceError, InvalidProducerEpochError, or InvalidRecordError for an
        append that mixes duplicates and new batches.
        """
        duplicate_offset: int | None = None
        new_seen = False
        pending: dict[int, tuple[int, int]] = {}  # producer id -> (epoch, last sequence)
        for header in headers:
            pid = header.producer_id
            if pid == NO_PRODUCER_ID or header.is_control:
                new_seen = True
                continue
            if header.base_sequence == NO_SEQUENCE:
                raise InvalidRecordError(f"producer {pid} sent a batch without a sequence number")
            entry = self._producers.get(pid)
            if pid in pending:
                epoch, last_sequence = pending[pid]
            elif entry is not None:
                epoch, last_sequence = entry.epoch, entry.last_sequence
            else:
                # Unknown producer (new, or its state fell out of the tail we rebuilt from):
                # accept whatever sequence it starts with, as Kafka does after state expiry.
                pending[pid] = (header.producer_epoch, header.last_sequence)
                new_seen = True
                continue
            if header.producer_epoch < epoch:
                raise InvalidProducerEpochError(
                    f"producer {pid} epoch {header.producer_epoch} is older than the current "
                    f"epoch {epoch}: it has been fenced"
                )
            if header.producer_epoch > epoch:
                if header.base_sequence != 0:
                    raise OutOfOrderSequenceError(
                        f"producer {pid} started epoch {header.producer_epoch} at sequence "
                        f"{header.base_sequence}, expected 0"
                    )
            else:
                if entry is not None and pid not in pending:
                    original = _find(entry, header)
                    if original is not None:
                        if new_seen:
                            raise InvalidRecordError(
                                "an append mixes new batches and already written ones"
                            )
                        if duplicate_offset is None:
                            duplicate_offset = original
                        continue
                expected = (last_sequence + 1) & _SEQUENCE_MASK
                if header.base_sequence != expected:
                    raise OutOfOrderSequenceError(
                        f"producer {pid} epoch {epoch} sent sequence {header.base_sequence}, "
                        f"expected {expected}"
                    )
            if duplicate_offset is not None:
                raise InvalidRecordError("an append mixes already written batches and new ones")
            pending[pid] = (header.producer_epoch, header.last_sequence)
            new_seen = True
        return duplicate_offset

    def record(self, header: BatchHeader, base_offset: int) -> None:
        """Remember a batch written at ``base_offset`` (after a successful append or on load)."""
        pid = header.producer_id
        if pid == NO_PRODUCER_ID or header.is_control or header.base_sequence == NO_SEQUENCE:
            return
        entry = self._producers.get(pid)
        if entry is None or header.producer_epoch > entry.epoch:
            entry = _ProducerEntry(header.producer_epoch)
            self._producers[pid] = entry
        elif header.producer_epoch < entry.epoch:
            return
        entry.batches.append(_WrittenBatch(header.base_sequence, header.last_sequence, base_offset))

    def clear(self) -> None:
        self._producers.clear()

    def dump(self) -> list[list[int]]:
        """The state as JSON-able rows: [producer id, epoch, first seq, last seq, offset]..."""
        return [
            [pid, entry.epoch, b.first_sequence, b.last_sequence, b.base_offset]
            for pid, entry in self._producers.items()
            for b in entry.batches
        ]

    def load(self, rows: list[list[int]]) -> None:
        """Replace the state with rows from :meth:`dump`. Raises ValueError for bad rows."""
        self._producers.clear()
        for row in rows:
            pid, epoch, first, last, offset = (int(x) for x in row)
            entry = self._producers.get(pid)
            if entry is None or entry.epoch != epoch:
                entry = _ProducerEntry(epoch)
                self._producers[pid] = entry
            entry.batches.append(_WrittenBatch(first, last, offset))


def _find(entry: _ProducerEntry, header: BatchHeader) -> int | None:
    for batch in entry.batches:
        if (
            batch.first_sequence == header.base_sequence
            and batch.last_sequence == header.last_sequence
        ):
            return batch.base_offset
    return None


class ProducerIdManager:
    """Hands out producer ids, never the same twice, across restarts.

    Persists only the end of the current block of ids (``producer_ids.json``), so most calls
    write nothing. Not thread-safe.
    """

    BLOCK_SIZE = 1000

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / "producer_ids.json"
        self._next = 0
        self._block_end = 0
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
            self._next = self._block_end = int(document["next_block_start"])
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError):
            raise RuntimeError(f"producer id file {self._path} is damaged") from None

    def next_id(self) -> int:
        """A producer id not handed out before."""
        if self._next >= self._block_end:
            self._block_end = self._next + self.BLOCK_SIZE
            write_atomically(self._path, json.dumps({"next_block_start": self._block_end}).encode())
        pid = self._next
        self._next += 1
        return pid
