"""ListOffsets for many partitions at once, routed to each partition's leader.

Shared by the consumer (positions, end offsets, offsets_for_times) and the admin client.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from rilke.client import codec
from rilke.client.cluster import Cluster
from rilke.client.structs import OffsetAndTimestamp, TopicPartition
from rilke.client.transport import error_from_proto
from rilke.errors import LeaderNotAvailableError, RilkeError
from rilke.proto import rilke_pb2 as pb
from rilke.records import header as hdr

EARLIEST = -2
LATEST = -1


async def list_offsets(
    cluster: Cluster,
    queries: dict[TopicPartition, int],
    timeout_s: float,
    isolation_level: int = 0,
) -> dict[TopicPartition, OffsetAndTimestamp]:
    """For each partition, the offset for its query (EARLIEST, LATEST, or a time in ms).

    A time with no record at or after it answers offset -1 (as the broker says). Retries
    retriable errors (refreshing metadata on leader errors) until ``timeout_s``; raises the
    typed error of the first partition that fails for good.
    """
    pending = dict(queries)
    result: dict[TopicPartition, OffsetAndTimestamp] = {}
    topics = {tp.topic for tp in pending}

    async def once(remaining: float) -> dict[TopicPartition, OffsetAndTimestamp]:
        if cluster.is_stale() or any(cluster.leader_for(tp) < 0 for tp in pending):
            await cluster.refresh(topics, remaining)
        by_node: dict[int, list[TopicPartition]] = defaultdict(list)
        for tp in pending:
            leader = cluster.leader_for(tp)
            if leader < 0:
                err = cluster.topic_errors.get(tp.topic)
                if err is not None and not err.retriable:
                    raise err
                if cluster.partitions_for(tp.topic) is not None:
                    from rilke.errors import UnknownTopicOrPartitionError

                    raise UnknownTopicOrPartitionError(
                        f"partition {tp.partition} of topic {tp.topic!r} does not exist"
                    )
                raise LeaderNotAvailableError(f"no leader known for {tp.topic}-{tp.partition}")
            by_node[leader].append(tp)
        first_error: RilkeError | None = None
        for node, tps in by_node.items():
            request = pb.ListOffsetsRequest(
                partitions=[
                    pb.ListOffsetsPartition(
                        topic=tp.topic, partition=tp.partition, timestamp=pending[tp]
                    )
                    for tp in tps
                ],
                isolation_level=isolation_level,
            )
            response = await cluster.call_node(node, "Broker", "ListOffsets", request, remaining)
            for r in response.partitions:
                tp = TopicPartition(r.topic, r.partition)
                err = error_from_proto(r.error, f"list offsets of {r.topic}-{r.partition}")
                if err is None:
                    result[tp] = OffsetAndTimestamp(r.offset, r.timestamp)
                    pending.pop(tp, None)
                elif first_error is None or (first_error.retriable and not err.retriable):
                    first_error = err
        if first_error is not None:
            raise first_error
        return result

    answers = await cluster.retrying(once, timeout_s)
    for tp, query in queries.items():
        found = answers.get(tp)
        if query >= 0 and found is not None and found.offset >= 0:
            answers[tp] = await _exact_time_offset(cluster, tp, query, found, timeout_s)
    return answers


async def _exact_time_offset(
    cluster: Cluster, tp: TopicPartition, time_ms: int, found: OffsetAndTimestamp, timeout_s: float
) -> OffsetAndTimestamp:
    """The first record at or after ``time_ms`` within the batch the broker pointed at.

    The broker answers a time query with the base offset of the first batch whose max
    timestamp reaches the time (it does not decode records); the records before the time in
    that batch are skipped here by reading the batch once.
    """
    leader = cluster.leader_for(tp)
    if leader < 0:
        return found
    request = pb.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        replica_id=-1,
        partitions=[
            pb.FetchPartition(
                topic=tp.topic,
                partition=tp.partition,
                fetch_offset=found.offset,
                partition_max_bytes=1,  # at least one whole batch comes back
            )
        ],
    )
    try:
        response = await cluster.call_node(leader, "Broker", "Fetch", request, timeout_s)
    except RilkeError:
        return found  # the batch-level answer is still a valid place to start
    for r in response.partitions:
        if error_from_proto(r.error) is not None or not r.records:
            return found
        data = r.records
        pos = 0
        while pos < len(data):
            size = hdr.peek_size(data, pos)
            if size is None or len(data) - pos < size:
                break
            header = hdr.read_header(data, pos)
            if not header.is_control and header.max_timestamp >= time_ms:
                batch = memoryview(data)[pos : pos + size]
                for offset, ts, *_ in codec.read_records(batch, header, True):
                    if offset >= found.offset and ts >= time_ms:
                        return OffsetAndTimestamp(offset, ts)
            pos += size
    return found


def normalize_tps(tps: Iterable[TopicPartition | tuple[str, int]]) -> list[TopicPartition]:
    return [tp if isinstance(tp, TopicPartition) else TopicPartition(*tp) for tp in tps]
