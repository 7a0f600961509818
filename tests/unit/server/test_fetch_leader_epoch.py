"""KIP-320 on the gRPC Fetch: a fetch naming a leader epoch other than the partition's is
refused (older: FENCED_LEADER_EPOCH, newer: UNKNOWN_LEADER_EPOCH); unnamed, it is not checked."""

from pathlib import Path

from inproc import running_broker
from produce_batches import batch_values, make_batch

from rilke import errors
from rilke.proto import rilke_pb2 as pb

TIMEOUT = 10


def test_fetch_checks_the_leader_epoch_it_names(tmp_path: Path) -> None:
    with running_broker(tmp_path) as b:
        b.admin.CreateTopics(
            pb.CreateTopicsRequest(topics=[pb.NewTopic(name="t", num_partitions=1)]),
            timeout=TIMEOUT,
        )
        b.broker.Produce(
            pb.ProduceRequest(
                acks=1,
                timeout_ms=5000,
                partitions=[pb.ProducePartitionData(topic="t", records=make_batch([b"a"]))],
            ),
            timeout=TIMEOUT,
        )

        def fetch(**epoch: int) -> pb.FetchPartitionResponse:
            wanted = pb.FetchPartition(topic="t", partition=0, fetch_offset=0, **epoch)
            request = pb.FetchRequest(partitions=[wanted])
            return b.broker.Fetch(request, timeout=TIMEOUT).partitions[0]

        # A single node's partition has leader epoch 0.
        for named in ({}, {"current_leader_epoch": 0}, {"current_leader_epoch": -1}):
            got = fetch(**named)
            assert got.error.code == 0
            assert [v for _o, v in batch_values(got.records)] == [b"a"]
        newer = fetch(current_leader_epoch=1)
        assert newer.error.code == errors.UnknownLeaderEpochError.code
        assert newer.records == b""
