"""Idempotent producing: what each producer last wrote to one partition.

A producer with an id (``producer_id >= 0``) numbers its batches per partition with sequences.
The partition remembers, per producer, its epoch and the last few batches it wrote (sequences
and offsets), so that:

- a retried batch (same epoch, same first and last sequence as a remembered one) is answered
  with its original base offset and not written again (a duplicate is a success);
- a batch that leaves a gap, or repeats a sequence not remembered, gets OutOfOrderSequenceError,
  as does the first batch of a producer not known here unless it starts at sequence 0;
- a batch from an older epoch gets InvalidProducerEpochError (the producer was fenced);
- a new epoch starts again at sequence 0.

:class:`ProducerStateTable` is sans-I/O: it is fed the headers of batches as they are applied
to the log (written, with their offsets), whoever wrote them: a leader's appends, a
follower's replicated batches, the tail of the log replayed on open. :class:`ProducerState`
keeps a table with its snapshot file (``producer-state.json`` in the partition's folder) and
rebuilds it on open: snapshot plus the log after it. Neither is thread-safe.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rilke.errors import (
    CorruptLogDataError,
    InvalidProducerEpochError,
    InvalidRecordError,
    OutOfOrderSequenceError,
)
from rilke.records.header import NO_PRODUCER_ID, NO_SEQUENCE, BatchHeader, read_header
from rilke.storage.files import atomic_write
from rilke.storage.log import PartitionLog

log = logging.getLogger(__name__)

# The producer state snapshot's name in the partition's folder: a fixed name, so no file
# name grows with the topic's (issue 8).
PRODUCER_STATE_FILE = "producer-state.json"
# How far back from the log end producer state is rebuilt when no snapshot covers the tail.
PRODUCER_STATE_TAIL_OFFSETS = 200_000
_SCAN_CHUNK_BYTES = 1 << 20
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
                # Unknown producer: new (its first batch has sequence 0), or its state fell
                # out of the tail rebuilt from. Any other first sequence is refused: requests
                # of one producer may arrive out of order (concurrent gRPC calls), and a
                # later batch taken first would refuse the earlier one for good (FINDINGS 1).
                # A producer whose state was lost goes on under a new id (its sender resets).
                if header.base_sequence != 0:
                    raise OutOfOrderSequenceError(
                        f"producer {pid} epoch {header.producer_epoch} sent sequence "
                        f"{header.base_sequence}, expected 0 (no batch of it is known here)"
                    )
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
        """Remember a batch applied at ``base_offset`` (written to the log, or replayed)."""
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


class ProducerState:
    """One partition's producer state, fed from the batches applied to its log, with its
    snapshot file.

    On construction the state is rebuilt: the snapshot, then the headers of the log after it
    (without a usable snapshot, the last PRODUCER_STATE_TAIL_OFFSETS offsets). Afterwards the
    partition calls :meth:`apply` with every batch written to the log, in log order, whoever
    wrote it (a follower rebuilds the same state from the same bytes). Snapshots cover only
    flushed data, so a snapshot is never ahead of what survives a crash. ``state_dir`` None
    keeps no file. ``snapshot_limit`` (a replicated partition: its high watermark) bounds
    them further: a snapshot is taken only when the whole log lies below it, because a log's
    tail above it may still be cut (Raft truncates an uncommitted tail) and a snapshot over
    a cut tail would bring the cut batches' sequences back. On the partition's thread only,
    except :meth:`SnapshotDue.write`.
    """

    def __init__(
        self,
        log_: PartitionLog,
        state_dir: Path | None,
        *,
        snapshot_limit: Callable[[], int] | None = None,
    ) -> None:
        self._log = log_
        self._snapshot_limit = snapshot_limit
        self.path = state_dir / PRODUCER_STATE_FILE if state_dir else None
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
        self.table = ProducerStateTable()
        self._snapshot_offset = -1  # the log end offset of the last snapshot written
        self._rebuild()

    def __len__(self) -> int:
        return len(self.table)

    def check(self, headers: Sequence[BatchHeader]) -> int | None:
        """:meth:`ProducerStateTable.check`: None for new batches, the original base offset
        of a retried append, or raises its sequence or epoch error."""
        return self.table.check(headers)

    def apply(self, headers: Sequence[BatchHeader], first_offset: int) -> None:
        """Batches with these headers were written to the log from ``first_offset`` on, one
        after another (their base offsets as assigned, whatever the headers say)."""
        offset = first_offset
        for header in headers:
            self.table.record(header, offset)
            offset += header.last_offset_delta + 1

    def apply_stored(self, data: bytes | bytearray | memoryview) -> None:
        """Batches as they lie in the log (their stamped base offsets), e.g. a follower's
        replicated batches once written."""
        pos = 0
        while pos < len(data):
            header = read_header(data, pos)
            self.table.record(header, header.base_offset)
            pos += header.size

    def rebuild(self, truncated_to: int | None = None) -> None:
        """Rebuild the state from the log as it is now (a replica's log was cut back to
        ``truncated_to``, maybe with new batches written after it, or reset by Raft: -1). A
        snapshot beyond the log end, or beyond the cut, describes batches no longer there:
        removed (the log after the cut may have grown past it again with other batches)."""
        self._snapshot_offset = -1
        if self.path is not None:
            limit = self._log.log_end_offset
            if truncated_to is not None:
                limit = min(limit, truncated_to)
            try:
                offset = int(json.loads(self.path.read_text(encoding="utf-8"))["offset"])
            except (OSError, ValueError, KeyError, TypeError):
                offset = None
            if offset is None or offset > limit:
                self.path.unlink(missing_ok=True)
        self._rebuild()

    def _rebuild(self) -> None:
        plog = self._log
        start = max(plog.log_start_offset, plog.log_end_offset - PRODUCER_STATE_TAIL_OFFSETS)
        snapshot_offset = self._load_snapshot()
        if snapshot_offset is not None:
            start = max(plog.log_start_offset, snapshot_offset)
        else:
            self.table.clear()
        offset = start
        end = plog.log_end_offset
        while offset < end:
            try:
                chunk = plog.read(offset, _SCAN_CHUNK_BYTES).records
            except CorruptLogDataError as exc:
                # Its batches cannot be read (reported by the log); sequences of producers
                # that wrote there are checked from what follows.
                offset = exc.next_offset
                continue
            if not chunk:
                break
            pos = 0
            while pos < len(chunk):
                header = read_header(chunk, pos)
                if header.last_offset >= offset:
                    self.table.record(header, header.base_offset)
                pos += header.size
                offset = header.next_offset

    def _load_snapshot(self) -> int | None:
        if self.path is None:
            return None
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
            offset = int(document["offset"])
            if not self._log.log_start_offset <= offset <= self._log.log_end_offset:
                return None
            self.table.load(document["producers"])
            self._snapshot_offset = offset
            return offset
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            log.warning("producer state snapshot %s is damaged; rebuilding", self.path)
            self.table.clear()
            return None

    def snapshot_due(self) -> SnapshotDue | None:
        """The snapshot to write now, or None: only when everything in the log is flushed
        (so it covers only flushed data) and the log moved since the last one."""
        if self.path is None:
            return None
        end = self._log.log_end_offset
        if self._log.flushed_offset < end or end == self._snapshot_offset:
            return None
        if self._snapshot_limit is not None and end > self._snapshot_limit():
            return None  # a tail that may still be cut (see the class docstring)
        if end == self._log.log_start_offset and not self.table:
            return None  # nothing to rebuild from, nothing to keep (an idle, empty partition)
        document = {"offset": end, "producers": self.table.dump()}
        return SnapshotDue(self.path, end, json.dumps(document).encode())

    def written(self, due: SnapshotDue) -> None:
        """``due`` was written (on whatever thread): later snapshots are due from it on."""
        self._snapshot_offset = max(self._snapshot_offset, due.offset)

    def write_snapshot(self) -> None:
        """Write the snapshot due now, if any, on this thread (shutdown). Blocks on disk."""
        due = self.snapshot_due()
        if due is not None:
            due.write(unique_tmp=False)
            self.written(due)

    def forget(self) -> None:
        """Remove the snapshot file (the partition is being deleted)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class SnapshotDue:
    """A producer state snapshot taken on the partition's thread, to write on any thread."""

    path: Path
    offset: int  # the log end offset it covers (all flushed)
    document: bytes

    def write(self, *, unique_tmp: bool = True) -> None:
        atomic_write(self.path, self.document, unique_tmp=unique_tmp)
