"""One node at scale, with a real broker process: creating thousands of topics does not stall
other requests, and descriptors stay within the budget with many partitions."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import grpc
import pytest
from produce_batches import make_batch
from rilke_broker_process import BrokerFactory, BrokerProcess

from rilke.proto import rilke_pb2 as pb
from rilke.proto import rilke_pb2_grpc as pb_grpc

CREATE_TIMEOUT_S = 300


def stubs(broker: BrokerProcess) -> tuple[grpc.Channel, object, object]:
    channel = grpc.insecure_channel(broker.address)
    return channel, pb_grpc.BrokerStub(channel), pb_grpc.AdminStub(channel)  # type: ignore[no-untyped-call]


def create_all(admin: object, names: list[str], partitions: int) -> pb.CreateTopicsResponse:
    request = pb.CreateTopicsRequest(
        topics=[pb.NewTopic(name=name, num_partitions=partitions) for name in names],
        timeout_ms=CREATE_TIMEOUT_S * 1000,
    )
    return admin.CreateTopics(request, timeout=CREATE_TIMEOUT_S)  # type: ignore[attr-defined,no-any-return]


@pytest.mark.slow
def test_metadata_is_answered_while_thousands_of_topics_are_being_created(
    broker: BrokerProcess,
) -> None:
    """One CreateTopics request of 2,000 topics; meanwhile Metadata must be answered and must
    see the creation part done: some of the topics but not all. A broker that creates topics
    on its event loop cannot answer in between: every Metadata answer sees none or all."""
    names = [f"many-{i:05d}" for i in range(2000)]
    wanted = set(names)
    channel, broker_stub, admin = stubs(broker)
    created: list[pb.CreateTopicsResponse] = []
    failure: list[BaseException] = []

    def create() -> None:
        try:
            created.append(create_all(admin, names, 2))
        except BaseException as e:
            failure.append(e)

    creator = threading.Thread(target=create, daemon=True)
    seen_partly: list[int] = []
    try:
        creator.start()
        while creator.is_alive():
            answer = broker_stub.Metadata(pb.MetadataRequest(), timeout=CREATE_TIMEOUT_S)  # type: ignore[attr-defined]
            visible = len(wanted & {topic.name for topic in answer.topics})
            if 0 < visible < len(wanted):
                seen_partly.append(visible)
        creator.join(CREATE_TIMEOUT_S)
    finally:
        channel.close()
    assert not failure, failure
    assert created and all(r.error.code == 0 for r in created[0].results)
    assert seen_partly, "no Metadata answer came while the topics were being created"
    assert seen_partly == sorted(seen_partly)  # topics appear and stay


def test_a_broker_with_many_partitions_and_segments_keeps_to_its_descriptor_budget(
    broker_factory: BrokerFactory, tmp_path: Path
) -> None:
    budget = 64
    others = 10  # descriptors beyond the cache's: this test's connection, a flush's duplicates
    broker = broker_factory(tmp_path / "data", "--max-open-files", str(budget))
    assert broker.proc is not None
    fd_dir = Path(f"/proc/{broker.proc.pid}/fd")
    baseline = len(os.listdir(fd_dir))
    channel, broker_stub, admin = stubs(broker)
    try:
        request = pb.CreateTopicsRequest(
            topics=[pb.NewTopic(name="wide", num_partitions=300, configs={"segment.bytes": "2000"})]
        )
        result = admin.CreateTopics(request, timeout=CREATE_TIMEOUT_S)  # type: ignore[attr-defined]
        assert result.results[0].error.code == 0, result.results[0].error.message
        for _ in range(4):  # 4 batches of ~700 bytes: 2 segments per partition
            produce = pb.ProduceRequest(
                acks=1,
                timeout_ms=10_000,
                partitions=[
                    pb.ProducePartitionData(
                        topic="wide", partition=p, records=make_batch([b"v" * 600])
                    )
                    for p in range(300)
                ],
            )
            response = broker_stub.Produce(produce, timeout=60)  # type: ignore[attr-defined]
            assert all(p.error.code == 0 for p in response.partitions)
        # 300 partitions x 2-3 segments x 3 files = ~2,000 files; the cache holds 64.
        assert len(os.listdir(fd_dir)) <= baseline + budget + others
        fetched = broker_stub.Fetch(  # type: ignore[attr-defined]
            pb.FetchRequest(
                partitions=[pb.FetchPartition(topic="wide", partition=p) for p in range(300)]
            ),
            timeout=60,
        )
        assert all(p.error.code == 0 and p.records for p in fetched.partitions)
        assert len(os.listdir(fd_dir)) <= baseline + budget + others
    finally:
        channel.close()


def test_bench_topics_runs_against_a_spawned_broker_and_writes_its_figures(
    tmp_path: Path,
) -> None:
    """Smoke test of `rilke bench topics` (figures are not asserted: no timings)."""
    import json

    from rilke.cli.main import main

    out = tmp_path / "figures.json"
    args = ["--log-level", "WARNING", "bench", "topics", "--spawn-broker", "--count", "30"]
    args += ["--batch", "5", "--fill", "2", "--segments", "2", "--idle-seconds", "0.2"]
    args += ["--max-open-files", "32", "--json", str(out)]
    assert main(args) == 0
    figures = json.loads(out.read_text())
    assert figures["count"] == 30 and figures["error_count"] == 0
    assert figures["metadata_during_create"]["calls"] >= 1
    assert figures["fill"]["read_mb"] > 0
    assert figures["open_fds"]["after_fill_and_read"] > 0
    assert figures["restart"]["start_s"] > 0
