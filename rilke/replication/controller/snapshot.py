"""A snapshot of the whole metadata state, so the metadata log can be trimmed.

Restart is snapshot + tail: :func:`decode_snapshot` gives the state as of the snapshot's
``applied_offset``, and the entries after it are applied on top. The encoding is compact JSON
with a version; decoding checks the shape and the state's own invariants (a snapshot that does
not hold raises :class:`CorruptMetadataRecordError`, never a half-built state).

Pure: bytes in, bytes out.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from rilke.errors import CorruptMetadataRecordError
from rilke.replication.controller.records import NO_LEADER
from rilke.replication.controller.state import (
    BrokerInfo,
    BrokerState,
    MetadataState,
    PartitionInfo,
    TopicMeta,
)

SNAPSHOT_VERSION = 1


def encode_snapshot(state: MetadataState) -> bytes:
    """The whole state as bytes (deterministic: equal states give equal bytes)."""
    body = {
        "v": SNAPSHOT_VERSION,
        "applied_offset": state.applied_offset,
        "cluster_id": state.cluster_id,
        "next_producer_id": state.next_producer_id,
        "voters": list(state.voters),
        "brokers": [
            [b.broker_id, b.host, b.port, b.rack, b.state.value, b.epoch]
            for b in sorted(state.brokers.values(), key=lambda b: b.broker_id)
        ],
        "kafka_listeners": [
            [b.broker_id, b.kafka_host, b.kafka_port]
            for b in sorted(state.brokers.values(), key=lambda b: b.broker_id)
            if b.kafka_host is not None
        ],
        "producer_id_blocks": [
            [broker, first, count]
            for broker, (first, count) in sorted(state.producer_id_blocks.items())
        ],
        "topics": [
            [
                t.name,
                t.topic_id,
                dict(t.configs),
                [_partition(p) for p in t.partitions],
            ]
            for t in sorted(state.topics.values(), key=lambda t: t.name)
        ],
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def _partition(p: PartitionInfo) -> list[Any]:
    """A partition as a list; a running move's target is a fifth element (left out when
    there is none, so snapshots without moves read as before)."""
    out: list[Any] = [list(p.replicas), p.leader, p.leader_epoch, list(p.isr)]
    if p.target:
        out.append(list(p.target))
    return out


def decode_snapshot(data: bytes) -> MetadataState:
    """The state a snapshot holds; raises CorruptMetadataRecordError if it does not hold."""
    try:
        body = json.loads(data)
        if body.get("v") != SNAPSHOT_VERSION:
            raise CorruptMetadataRecordError(
                f"metadata snapshot version {body.get('v')!r}, this build reads {SNAPSHOT_VERSION}"
            )
        return _build(body)
    except CorruptMetadataRecordError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, AssertionError) as e:
        raise CorruptMetadataRecordError(
            f"metadata snapshot does not hold: {type(e).__name__}: {e}"
        ) from None


def _int(value: Any) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _ints(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise TypeError(f"{value!r} is not a list")
    return tuple(_int(v) for v in value)


def _build(body: dict[str, Any]) -> MetadataState:
    state = MetadataState()
    state.applied_offset = _int(body["applied_offset"])
    cluster_id = body["cluster_id"]
    state.cluster_id = None if cluster_id is None else _str(cluster_id)
    state.next_producer_id = _int(body["next_producer_id"])
    state.voters = _ints(body["voters"])
    for broker_id, host, port, rack, broker_state, epoch in body["brokers"]:
        info = BrokerInfo(
            _int(broker_id),
            _str(host),
            _int(port),
            None if rack is None else _str(rack),
            BrokerState(broker_state),
            _int(epoch),
        )
        state.brokers[info.broker_id] = info
    for broker_id, kafka_host, kafka_port in body.get("kafka_listeners", []):
        # Absent in snapshots written before brokers registered a Kafka listener.
        info = state.brokers[_int(broker_id)]
        state.brokers[info.broker_id] = replace(
            info, kafka_host=_str(kafka_host), kafka_port=_int(kafka_port)
        )
    for broker, first, count in body["producer_id_blocks"]:
        state.producer_id_blocks[_int(broker)] = (_int(first), _int(count))
    for name, topic_id, configs, partitions in body["topics"]:
        if not isinstance(configs, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in configs.items()
        ):
            raise TypeError(f"configs of {name!r} are not a string map")
        parts = []
        for replicas, leader, epoch, isr, *more in partitions:
            target = _ints(more[0]) if more else ()
            p = PartitionInfo(_ints(replicas), _int(leader), _int(epoch), _ints(isr), target)
            if not p.isr or not set(p.isr) <= set(p.members):
                raise ValueError(f"partition of {name!r}: isr {p.isr} not in {p.replicas}")
            if p.leader != NO_LEADER and p.leader not in p.isr:
                raise ValueError(f"partition of {name!r}: leader {p.leader} not in isr")
            for r in p.replicas:
                state.replica_counts[r] = state.replica_counts.get(r, 0) + 1
            if p.leader != NO_LEADER:
                state.leader_counts[p.leader] = state.leader_counts.get(p.leader, 0) + 1
            parts.append(p)
        topic = TopicMeta(_str(name), _str(topic_id), dict(configs), tuple(parts))
        if topic.name in state.topics or topic.topic_id in state.topic_names:
            raise ValueError(f"topic {topic.name!r} or its id appears twice")
        state.topics[topic.name] = topic
        state.topic_names[topic.topic_id] = topic.name
    return state
