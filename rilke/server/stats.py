"""The broker's counters, updated on the hot path and read by the metrics collector.

Cheap by construction: a request adds to ints of an :class:`ApiStats` its handler holds
already (bound once, when the handler is registered), and to a :class:`TopicStats` looked up
once per partition of a request; nothing is done per record. No locks: every update runs on
the broker's event loop thread, and so does the collector (rilke.server.metrics_http serves
/metrics on that loop), so a scrape sees each counter whole.

Histograms are bucket counts (:class:`Histogram`, Prometheus' ``le`` buckets, cumulated only at
scrape time): ``observe`` is one bisect and two adds.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import NamedTuple

from rilke.records.header import LOG_OVERHEAD, header_struct

# Request latency buckets (seconds): 100 us to 60 s; the top ones catch long polls.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
# fsync latency buckets (seconds): 50 us (a page-cache-only device) to 10 s (a dying disk).
FSYNC_BUCKETS_S: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    10.0,
)

# The error code counted for a gRPC call that failed as a whole (a status such as
# INVALID_ARGUMENT or INTERNAL instead of an answer with per-item errors).
RPC_FAILED = -1

_BASE_TIMESTAMP = header_struct("base_timestamp")
_RECORDS_COUNT = header_struct("batch_length", "records_count")


class Histogram:
    """Observations in fixed buckets: ``counts[i]`` holds those <= ``bounds[i]`` and above
    the bound before it; the last count holds those above every bound (``+Inf``)."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        assert list(bounds) == sorted(bounds) and bounds, "bucket bounds must ascend"
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> Iterator[tuple[float, int]]:
        """(upper bound, observations <= it), ending with (inf, all): Prometheus' buckets."""
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            yield bound, total

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s observations (same bounds) into this one."""
        assert other.bounds == self.bounds
        for i, n in enumerate(other.counts):
            self.counts[i] += n
        self.sum += other.sum


class ApiStats:
    """One API of one listener: requests answered, per-item errors by wire code, latency."""

    __slots__ = ("errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[int, int] = {}  # error code -> items answered with it
        self.latency = Histogram(LATENCY_BUCKETS_S)

    def error(self, code: int) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


class TopicStats:
    """Bytes and records of one topic accepted from producers and sent to consumers."""

    __slots__ = ("bytes_in", "bytes_out", "records_in", "records_out")

    def __init__(self) -> None:
        self.bytes_in = 0
        self.records_in = 0
        self.bytes_out = 0
        self.records_out = 0

    def produced(self, size: int, records: int) -> None:
        self.bytes_in += size
        self.records_in += records

    def fetched(self, records: bytes) -> None:
        """Count a fetch answer's batches (a walk of their headers, one per batch)."""
        if records:
            self.bytes_out += len(records)
            self.records_out += count_records(records)


class SegmentFiles(NamedTuple):
    """The segment file cache of a node (rilke.storage.handles.FileCache)."""

    open: int  # descriptors open now
    max_open: int  # the cache's bound
    opens: int  # files opened since start (a miss of the cache)
    evictions: int  # descriptors closed to make room


class BrokerStats:
    """Every counter of one broker. ``apis`` by (listener, api name): listener ``grpc`` or
    ``kafka``; ``topics`` by topic name (a deleted topic's counters stay, as a counter
    must not go down; a topic created again under that name continues them)."""

    def __init__(self) -> None:
        self.apis: dict[tuple[str, str], ApiStats] = {}
        self.topics: dict[str, TopicStats] = {}
        self.fsync = Histogram(FSYNC_BUCKETS_S)  # each flush job's syncs (rilke.storage.log)

    def api(self, listener: str, name: str) -> ApiStats:
        """The stats of one API (made on first use: bind it once, not per request)."""
        key = (listener, name)
        found = self.apis.get(key)
        if found is None:
            found = self.apis[key] = ApiStats()
        return found

    def topic(self, name: str) -> TopicStats:
        found = self.topics.get(name)
        if found is None:
            found = self.topics[name] = TopicStats()
        return found


def count_records(records: bytes | memoryview) -> int:
    """The records in the whole batches of ``records`` (their headers' record counts); a
    trailing partial batch (a fetch may end with one) is not counted."""
    total = 0
    pos = 0
    size = len(records)
    unpack = _RECORDS_COUNT.unpack_from
    need = _RECORDS_COUNT.size
    while pos + need <= size:
        length, count = unpack(records, pos)
        if length <= 0 or pos + LOG_OVERHEAD + length > size:
            break
        total += count
        pos += LOG_OVERHEAD + length
    return total


def first_batch_timestamp(records: bytes | memoryview) -> int | None:
    """The base timestamp (ms) of the first batch in ``records``, or None if none is whole
    enough to say."""
    if len(records) < _BASE_TIMESTAMP.size:
        return None
    (base_timestamp,) = _BASE_TIMESTAMP.unpack_from(records, 0)
    return int(base_timestamp)
