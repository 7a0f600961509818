"""The broker's Prometheus metrics: a prometheus_client collector that reads, at scrape time,
the counters of rilke.server.stats and the state of the broker (partitions, groups, storage).

Nothing is kept here between scrapes: the hot path only adds to plain ints (rilke.server.stats)
and this collector turns them, and the broker's state, into metric families when /metrics is
asked for. It runs on the broker's event loop (rilke.server.metrics_http serves there), so it
reads that state without locks and sees it whole.

Names follow Prometheus' conventions: the ``rilke_`` prefix, units in the name
(``_bytes``, ``_seconds``, ``_records``), ``_total`` for counters. The series (labels):

- ``rilke_requests_total``, ``rilke_request_errors_total`` (``code``: the wire error code of
  each item answered with one; -1: a gRPC call failed as a whole, or a Kafka handler failed) and
  ``rilke_request_duration_seconds`` (histogram), by ``listener`` (grpc, kafka) and ``api``.
- ``rilke_topic_{bytes,records}_{in,out}_total`` by ``topic``: accepted from producers (not
  counting idempotent duplicates) and sent to consumers.
- ``rilke_partition_{size_bytes,log_start_offset,log_end_offset,high_watermark}`` by
  ``topic``, ``partition``.
- ``rilke_consumer_group_committed_offset``, ``rilke_consumer_group_lag_records`` (high
  watermark - committed) and ``rilke_consumer_group_lag_seconds`` (age of the oldest
  unconsumed batch: now - base timestamp of the batch holding the committed offset; 0 without
  lag) by ``group``, ``topic``, ``partition``.
- ``rilke_fsync_duration_seconds`` (histogram: each group-commit flush job's syncs).
- ``rilke_connections`` by ``listener`` (gRPC: TCP connections established to its port, from
  /proc on Linux, as grpcio exposes no count; Kafka: the listener's own),
  ``rilke_segment_files_open``, ``rilke_segment_files_open_max``,
  ``rilke_segment_file_opens_total``, ``rilke_segment_file_evictions_total``.
- ``rilke_scrubber_{bytes,batches,segments,passes,corrupt_batches}_total``.
- Raft (filled by the cluster through :class:`RaftSource`; empty families on a node without
  Raft): ``rilke_raft_term``, ``rilke_raft_leader`` (1 when this node leads the group),
  ``rilke_raft_leadership_changes_total``, ``rilke_raft_follower_lag_records`` (leader's log end
  - the follower's match, by ``follower``), and ``rilke_under_replicated_partitions``.
- ``rilke_build_info`` (``version``, ``node_id``), ``rilke_metrics_scrape_duration_seconds`` (the
  previous scrape's collection time), and prometheus_client's ``process_*`` and ``python_info``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from rilke.server.broker import Broker
from rilke.server.stats import Histogram, first_batch_timestamp

log = logging.getLogger(__name__)

# Consumer-group partitions whose lag in seconds one scrape reads a batch for (the first
# batch past the committed offset, from the page cache most often); past this many, the
# others' lag in seconds is left out of that scrape (their lag in records is not).
MAX_LAG_READS_PER_SCRAPE = 2000


_TCP_TABLES = ("/proc/self/net/tcp", "/proc/self/net/tcp6")
_TCP_ESTABLISHED = "01"


def established_connections(port: int, tables: Iterable[str] = _TCP_TABLES) -> int | None:
    """TCP connections established to local ``port`` (Linux: read from /proc/self/net/tcp
    and tcp6, as ``ss`` does; grpcio exposes no count of its own); None where there are no
    such tables."""
    count = 0
    found = False
    wanted = f":{port:04X}"
    for table in tables:
        try:
            with open(table, encoding="ascii") as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split(None, 4)
            if len(fields) >= 4 and fields[3] == _TCP_ESTABLISHED and fields[1].endswith(wanted):
                count += 1
    return count if found else None


class ScrubCounters(Protocol):
    batches_scrubbed: int
    bytes_scrubbed: int
    corrupt_batches_found: int
    segments_scrubbed: int
    passes_completed: int


class CommittedOffsets(Protocol):
    """What the collector reads of the group coordinators (GroupManager)."""

    def committed_offsets(self) -> Iterable[tuple[str, Any, int]]: ...


@dataclass(frozen=True)
class RaftGroupMetrics:
    """One Raft group (a partition, or the metadata controller: topic ``__cluster_metadata``
    partition 0) as this node sees it, for the Raft series."""

    topic: str
    partition: int
    term: int
    is_leader: bool
    leadership_changes: int  # times this group's leader changed, as seen by this node
    # On the leader: each follower's lag in records (leader's log end - its match index).
    follower_lag: dict[int, int] = field(default_factory=dict)
    under_replicated: bool = False  # on the leader: a replica is out of the ISR / behind


# The hook the cluster fills: called at each scrape, on the event loop.
RaftSource = Callable[[], Iterable[RaftGroupMetrics]]


@dataclass
class MetricsSources:
    """Where the collector reads from, beside the broker. Each is optional (None: not there,
    e.g. no scrubber, no Kafka listener) and read at scrape time."""

    groups: Callable[[], CommittedOffsets | None] = lambda: None
    scrub_stats: Callable[[], ScrubCounters | None] = lambda: None
    kafka_connections: Callable[[], int | None] = lambda: None
    grpc_connections: Callable[[], int | None] = lambda: None
    raft: RaftSource | None = None
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))


def _histogram(name: str, doc: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(name, doc, labels=labels)


def _add_histogram(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    buckets = [
        ("+Inf" if bound == float("inf") else repr(bound), count)
        for bound, count in hist.cumulative()
    ]
    family.add_metric(labels, buckets, hist.sum)


class BrokerCollector(Collector):
    """A prometheus_client collector of one broker's series (see the module doc)."""

    def __init__(self, broker: Broker, sources: MetricsSources | None = None) -> None:
        self.broker = broker
        self.sources = sources or MetricsSources()
        self.last_scrape_seconds = 0.0

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        yield from self._build_info()
        yield from self._requests()
        yield from self._topics()
        yield from self._partitions_and_lag()
        yield from self._storage()
        yield from self._scrubber()
        yield from self._raft()
        took = GaugeMetricFamily(
            "rilke_metrics_scrape_duration_seconds",
            "Seconds the previous scrape of /metrics took to collect",
        )
        took.add_metric([], self.last_scrape_seconds)
        yield took
        self.last_scrape_seconds = time.perf_counter() - started

    def _build_info(self) -> Iterator[Metric]:
        from rilke import __version__

        info = GaugeMetricFamily(
            "rilke_build_info",
            "Always 1: the broker's version and node id",
            labels=["version", "node_id"],
        )
        info.add_metric([__version__, str(self.broker.config.node_id)], 1)
        yield info

    def _requests(self) -> Iterator[Metric]:
        labels = ["listener", "api"]
        requests = CounterMetricFamily(
            "rilke_requests_total", "Requests answered, by listener and API", labels=labels
        )
        errors = CounterMetricFamily(
            "rilke_request_errors_total",
            "Items answered with an error, by wire error code (-1: the call failed as a whole)",
            labels=[*labels, "code"],
        )
        latency = _histogram(
            "rilke_request_duration_seconds",
            "Time from a request's arrival to its answer (long polls included)",
            labels,
        )
        for (listener, api), stats in sorted(self.broker.stats.apis.items()):
            requests.add_metric([listener, api], stats.requests)
            for code, count in sorted(stats.errors.items()):
                errors.add_metric([listener, api, str(code)], count)
            _add_histogram(latency, [listener, api], stats.latency)
        yield requests
        yield errors
        yield latency

    def _topics(self) -> Iterator[Metric]:
        families = {
            "bytes_in": CounterMetricFamily(
                "rilke_topic_bytes_in_total",
                "Record batch bytes accepted from producers",
                labels=["topic"],
            ),
            "records_in": CounterMetricFamily(
                "rilke_topic_records_in_total", "Records accepted from producers", labels=["topic"]
            ),
            "bytes_out": CounterMetricFamily(
                "rilke_topic_bytes_out_total",
                "Record batch bytes sent to consumers",
                labels=["topic"],
            ),
            "records_out": CounterMetricFamily(
                "rilke_topic_records_out_total", "Records sent to consumers", labels=["topic"]
            ),
        }
        for topic, stats in sorted(self.broker.stats.topics.items()):
            for attr, family in families.items():
                family.add_metric([topic], getattr(stats, attr))
        yield from families.values()

    def _partitions_and_lag(self) -> Iterator[Metric]:
        labels = ["topic", "partition"]
        size = GaugeMetricFamily(
            "rilke_partition_size_bytes", "Bytes of a partition's segments on disk", labels=labels
        )
        start = GaugeMetricFamily(
            "rilke_partition_log_start_offset", "First offset a partition holds", labels=labels
        )
        end = GaugeMetricFamily(
            "rilke_partition_log_end_offset", "Offset the next record will get", labels=labels
        )
        hwm = GaugeMetricFamily(
            "rilke_partition_high_watermark",
            "Offset up to which consumers may read (committed)",
            labels=labels,
        )
        broker = self.broker
        partitions: dict[tuple[str, int], Any] = {}
        for topic in list(broker.topics):
            try:
                parts = broker.partitions_of(topic.name)
            except Exception:
                continue  # offline, or deleted meanwhile
            for p, part in enumerate(parts):
                try:
                    offsets = part.offsets()
                    size_bytes = part.size_bytes()
                except Exception:
                    continue  # closed meanwhile
                key = [topic.name, str(p)]
                partitions[(topic.name, p)] = (part, offsets)
                size.add_metric(key, size_bytes)
                start.add_metric(key, offsets.log_start_offset)
                end.add_metric(key, offsets.log_end_offset)
                hwm.add_metric(key, offsets.high_watermark)
        yield size
        yield start
        yield end
        yield hwm
        yield from self._lag(partitions)

    def _lag(self, partitions: dict[tuple[str, int], Any]) -> Iterator[Metric]:
        labels = ["group", "topic", "partition"]
        committed_f = GaugeMetricFamily(
            "rilke_consumer_group_committed_offset", "A group's committed offset", labels=labels
        )
        lag_records = GaugeMetricFamily(
            "rilke_consumer_group_lag_records",
            "Records between a group's committed offset and the high watermark",
            labels=labels,
        )
        lag_seconds = GaugeMetricFamily(
            "rilke_consumer_group_lag_seconds",
            "Age of the oldest record a group has not consumed (0 without lag)",
            labels=labels,
        )
        groups = self.sources.groups()
        if groups is not None:
            now_ms = self.sources.clock_ms()
            reads = 0
            for group_id, tp, committed in sorted(groups.committed_offsets()):
                found = partitions.get((tp.topic, tp.partition))
                if found is None or committed < 0:
                    continue
                part, offsets = found
                key = [group_id, tp.topic, str(tp.partition)]
                lag = max(0, offsets.high_watermark - max(committed, offsets.log_start_offset))
                committed_f.add_metric(key, committed)
                lag_records.add_metric(key, lag)
                if lag == 0:
                    lag_seconds.add_metric(key, 0.0)
                    continue
                if reads >= MAX_LAG_READS_PER_SCRAPE:
                    continue
                reads += 1
                age = self._age_seconds(part, max(committed, offsets.log_start_offset), now_ms)
                if age is not None:
                    lag_seconds.add_metric(key, age)
        yield committed_f
        yield lag_records
        yield lag_seconds

    @staticmethod
    def _age_seconds(part: Any, offset: int, now_ms: int) -> float | None:
        try:
            data = part.read(offset, 1)  # the first whole batch at or past ``offset``
        except Exception:
            return None
        timestamp = first_batch_timestamp(data.records)
        if timestamp is None or timestamp < 0:
            return None
        return max(0, now_ms - timestamp) / 1000

    def _storage(self) -> Iterator[Metric]:
        fsync = _histogram(
            "rilke_fsync_duration_seconds",
            "Time the syncs of one flush job took (group commit: one job serves many appends)",
            [],
        )
        _add_histogram(fsync, [], self.broker.stats.fsync)
        yield fsync
        connections = GaugeMetricFamily(
            "rilke_connections", "Client connections open now", labels=["listener"]
        )
        for listener, count in (
            ("grpc", self.sources.grpc_connections()),
            ("kafka", self.sources.kafka_connections()),
        ):
            if count is not None:
                connections.add_metric([listener], count)
        yield connections
        files = self.broker.segment_files()
        if files is not None:
            gauge = GaugeMetricFamily(
                "rilke_segment_files_open", "Segment file descriptors open now (an LRU cache)"
            )
            gauge.add_metric([], files.open)
            yield gauge
            gauge = GaugeMetricFamily(
                "rilke_segment_files_open_max", "The bound of the segment file cache"
            )
            gauge.add_metric([], files.max_open)
            yield gauge
            yield CounterMetricFamily(
                "rilke_segment_file_opens_total",
                "Segment files opened (misses of the cache)",
                value=files.opens,
            )
            yield CounterMetricFamily(
                "rilke_segment_file_evictions_total",
                "Segment file descriptors closed to make room in the cache",
                value=files.evictions,
            )

    def _scrubber(self) -> Iterator[Metric]:
        stats = self.sources.scrub_stats()
        if stats is None:
            return
        for name, doc, value in (
            (
                "bytes",
                "Bytes of sealed segments whose CRCs the scrubber checked",
                stats.bytes_scrubbed,
            ),
            ("batches", "Batches the scrubber checked", stats.batches_scrubbed),
            ("segments", "Segments the scrubber checked whole", stats.segments_scrubbed),
            ("passes", "Passes of the scrubber over every sealed segment", stats.passes_completed),
            (
                "corrupt_batches",
                "Batches the scrubber found corrupt (each begins a corrupt range)",
                stats.corrupt_batches_found,
            ),
        ):
            yield CounterMetricFamily(f"rilke_scrubber_{name}_total", doc, value=value)

    def _raft(self) -> Iterator[Metric]:
        labels = ["topic", "partition"]
        term = GaugeMetricFamily("rilke_raft_term", "A Raft group's current term", labels=labels)
        leader = GaugeMetricFamily(
            "rilke_raft_leader", "1 when this node leads the Raft group", labels=labels
        )
        changes = CounterMetricFamily(
            "rilke_raft_leadership_changes_total",
            "Leader changes of a Raft group seen by this node",
            labels=labels,
        )
        lag = GaugeMetricFamily(
            "rilke_raft_follower_lag_records",
            "On the leader: records a follower's log is behind (log end - match)",
            labels=[*labels, "follower"],
        )
        under = GaugeMetricFamily(
            "rilke_under_replicated_partitions",
            "Partitions this node leads with a replica out of sync",
        )
        count = 0
        if self.sources.raft is not None:
            for group in self.sources.raft():
                key = [group.topic, str(group.partition)]
                term.add_metric(key, group.term)
                leader.add_metric(key, 1 if group.is_leader else 0)
                changes.add_metric(key, group.leadership_changes)
                for follower, behind in sorted(group.follower_lag.items()):
                    lag.add_metric([*key, str(follower)], behind)
                count += group.under_replicated
        under.add_metric([], count)
        yield from (term, leader, changes, lag, under)


def make_registry(collector: BrokerCollector, *, process: bool = True) -> CollectorRegistry:
    """A registry of its own (not prometheus_client's global one: several brokers may run in
    one process, in tests) holding ``collector`` and, with ``process``, the process and
    platform collectors (``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
    ``process_open_fds``, ``python_info``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    if process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
    return registry


__all__ = [
    "MAX_LAG_READS_PER_SCRAPE",
    "BrokerCollector",
    "MetricsSources",
    "RaftGroupMetrics",
    "RaftSource",
    "make_registry",
]
