"""``send_many``: many records to one topic in one call, batch by batch instead of record by record.

A caller that already holds many values (and keys) pays the per-call work of ``send()`` once
per batch rather than once per record: one lock acquisition, one partition choice and one
encoding call (``BatchBuilder.append_many``) per batch. Every record is still checked before
any is queued, and gets its own :class:`~rilke.client.batch.RecordFuture`, in the order given.

Records go where ``send()`` would put them: ``partition`` if given, else by key hash, else the
sticky partition (which moves on when its batch fills). All records of one call share one
create time (``timestamp_ms``, default now) and carry no headers. With serializers,
interceptors or trace context set, each record takes the ``send()`` path instead.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from itertools import repeat
from typing import TYPE_CHECKING, Any, overload

from rilke.client.accumulator import BATCH_OVERHEAD_BYTES, RECORD_OVERHEAD_BYTES
from rilke.client.batch import RecordFuture
from rilke.client.structs import TopicPartition
from rilke.errors import MessageSizeTooLargeError, UnknownTopicOrPartitionError

if TYPE_CHECKING:
    from rilke.client.producer import _ProducerCore

_new = tuple.__new__


def _as_bytes(items: Sequence[Any], what: str) -> list[bytes | None]:
    """``items`` as a list of bytes or None (str encoded as UTF-8, bytearray/memoryview copied);
    TypeError naming the first item of another type."""
    if set(map(type, items)) <= {bytes, type(None)}:  # the common case, checked in C
        return list(items)
    out: list[bytes | None] = []
    for i, x in enumerate(items):
        if x is None or isinstance(x, bytes):
            out.append(x)
        elif isinstance(x, str):
            out.append(x.encode())
        elif isinstance(x, bytearray | memoryview):
            out.append(bytes(x))
        else:
            raise TypeError(f"{what}s[{i}] must be bytes, str or None, not {type(x).__name__}")
    return out


class RecordFutures(Sequence[RecordFuture]):
    """The futures of one ``send_many`` call, one per record, in the order given, made when
    looked at: the call keeps one (batch, first index) span per batch, not one object per
    record (making them all up front cost more than encoding the records; `rilke bench
    produce --send-many`, issue 14). Indexing, slicing, iterating and ``len`` work as on a
    list.
    """

    __slots__ = ("_batches", "_firsts", "_starts", "_total")

    def __init__(self) -> None:
        self._starts: list[int] = []  # the call's index of each span's first record
        self._batches: list[Any] = []
        self._firsts: list[int] = []  # that record's index in its batch
        self._total = 0

    def _add(self, batch: Any, first: int, count: int) -> None:
        self._starts.append(self._total)
        self._batches.append(batch)
        self._firsts.append(first)
        self._total += count

    def __len__(self) -> int:
        return self._total

    @overload
    def __getitem__(self, i: int) -> RecordFuture: ...
    @overload
    def __getitem__(self, i: slice) -> list[RecordFuture]: ...
    def __getitem__(self, i: int | slice) -> RecordFuture | list[RecordFuture]:
        if isinstance(i, slice):
            return [self[j] for j in range(self._total)[i]]
        if i < 0:
            i += self._total
        if not 0 <= i < self._total:
            raise IndexError("record future index out of range")
        span = bisect_right(self._starts, i) - 1
        return _new(
            RecordFuture, (self._batches[span], self._firsts[span] + i - self._starts[span])
        )

    def __iter__(self) -> Iterator[RecordFuture]:
        ends = [*self._starts[1:], self._total] if self._starts else []
        for start, end, batch, first in zip(
            self._starts, ends, self._batches, self._firsts, strict=True
        ):
            yield from map(
                _new, repeat(RecordFuture), zip(repeat(batch), range(first, first + end - start))
            )


class ManySend:
    """One ``send_many`` call in progress: the checked records, grouped by partition, and how
    far appending got. :meth:`step` appends until done or the buffer is full (raising
    :class:`~rilke.client.accumulator.BufferFull`); the facade waits for space and steps again.
    """

    def __init__(  # noqa: PLR0917
        self,
        core: _ProducerCore,
        topic: str,
        values: Sequence[Any],
        keys: Sequence[Any] | None,
        partition: int | None,
        timestamp_ms: int | None,
        num_partitions: int,
    ) -> None:
        """Checks every record (raising TypeError, ValueError, MessageSizeTooLargeError or
        UnknownTopicOrPartitionError before anything is queued) and groups them."""
        if isinstance(values, bytes | str) or (keys is not None and isinstance(keys, bytes | str)):
            raise TypeError("send_many takes sequences of values (and keys), not one value")
        vals = _as_bytes(values, "value")
        ks = None if keys is None else _as_bytes(keys, "key")
        if ks is not None and len(ks) != len(vals):
            raise ValueError(f"send_many got {len(vals)} values but {len(ks)} keys")
        if ks is not None and ks.count(None) == len(ks):
            ks = None  # no key at all: the sticky partition, as send() does
        largest = _largest_record(vals, ks)
        if largest + RECORD_OVERHEAD_BYTES + BATCH_OVERHEAD_BYTES > core.max_request_size:
            raise MessageSizeTooLargeError(
                f"a record of {largest} bytes is larger than max_request_size "
                f"({core.max_request_size}): raise max_request_size or send smaller records"
            )
        if partition is not None and not 0 <= partition < num_partitions:
            raise UnknownTopicOrPartitionError(
                f"partition {partition} of topic {topic!r} does not exist "
                f"(the topic has {num_partitions} partitions)"
            )
        if timestamp_ms is None:
            timestamp_ms = time.time_ns() // 1_000_000
        elif timestamp_ms < 0:
            raise ValueError(f"timestamp_ms must be >= 0 (ms since the epoch), not {timestamp_ms}")
        self.core = core
        self.largest = largest
        self.topic = topic
        self.timestamp_ms = timestamp_ms
        self.num_partitions = num_partitions
        # (partition or None for sticky, keys, values, original indexes or None for 0..n-1)
        self.groups: list[
            tuple[int | None, list[bytes | None] | None, list[bytes | None], list[int] | None]
        ]
        if partition is not None or ks is None:
            self.groups = [(partition, ks, vals, None)]
            self.futures: Sequence[RecordFuture] = RecordFutures()
        else:
            by_partition: dict[int | None, list[int]] = {}
            keyed = core._keyed
            for i, k in enumerate(ks):
                p = None if k is None else keyed.partition(k, num_partitions)
                by_partition.setdefault(p, []).append(i)
            self.groups = [
                (p, [ks[i] for i in idx], [vals[i] for i in idx], idx)
                for p, idx in by_partition.items()
            ]
            self._placed: list[RecordFuture] = [None] * len(vals)  # type: ignore[list-item]
            self.futures = self._placed  # every item is set by step()
        self._group = 0
        self._pos = 0
        self.queued = 0  # records appended so far

    def step(self) -> None:
        """Append what is left, batch by batch; raises BufferFull (keeping the progress made)
        when the accumulator's buffer is full."""
        core = self.core
        acc = core.acc
        topic = self.topic
        ts = self.timestamp_ms
        while self._group < len(self.groups):
            p, keys, values, idx = self.groups[self._group]
            stop = len(values)
            while self._pos < stop:
                sticky = p is None
                part = core._sticky.partition(topic, self.num_partitions) if p is None else p
                tp = core._tps.get((topic, part))
                if tp is None:
                    tp = core._tps[(topic, part)] = TopicPartition(topic, part)
                start = self._pos
                batch, first, end = acc.append_many(tp, keys, values, ts, start, stop, self.largest)
                if idx is None:
                    assert isinstance(self.futures, RecordFutures)
                    self.futures._add(batch, first, end - start)
                else:
                    futures = map(
                        _new,
                        repeat(RecordFuture),
                        zip(repeat(batch), range(first, first + end - start)),
                    )
                    for i, fut in zip(idx[start:end], futures, strict=True):
                        self._placed[i] = fut
                self.queued += end - start
                if sticky and batch.full:
                    core._sticky.on_new_batch(topic, self.num_partitions, part)
                    core._sticky_tps.pop(topic, None)  # send() takes the new choice
                self._pos = end
            self._group += 1
            self._pos = 0


def _largest_record(values: list[bytes | None], keys: list[bytes | None] | None) -> int:
    """The key and value bytes of the largest record (its exact size only when needed)."""
    bound = max(map(len, filter(None, values)), default=0)
    if keys is not None:
        bound += max(map(len, filter(None, keys)), default=0)
        if bound:  # the largest key and value may be of different records: look closer
            return max(len(k or b"") + len(v or b"") for k, v in zip(keys, values, strict=True))
    return bound
