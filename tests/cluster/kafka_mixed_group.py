"""One consumer group of the three Python Kafka libraries (kafka-python, confluent-kafka,
aiokafka), each on a thread, each bootstrapped where the test says. Import it after the
test module's ``pytest.importorskip`` of the three libraries."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence

import aiokafka
import confluent_kafka
import kafka
import kafka.coordinator.assignors.roundrobin


class MixedGroup:
    """``bootstraps``: the Kafka listeners of kafka-python, confluent-kafka and aiokafka."""

    def __init__(self, topic: str, group: str, bootstraps: Sequence[str]) -> None:
        self.topic, self.group = topic, group
        self.kp_at, self.ck_at, self.aio_at = bootstraps
        self.got: dict[str, set[str]] = {
            "kafka-python": set(),
            "confluent": set(),
            "aiokafka": set(),
        }
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._guarded(f), daemon=True)
            for f in (self._kp, self._ck, self._aio)
        ]

    def _guarded(self, fn: Callable[[], None]) -> Callable[[], None]:
        def body() -> None:
            try:
                fn()
            except BaseException as e:
                self.errors.append(e)

        return body

    def _kp(self) -> None:
        c = kafka.KafkaConsumer(
            self.topic,
            bootstrap_servers=self.kp_at,
            group_id=self.group,
            auto_offset_reset="earliest",
            partition_assignment_strategy=[
                kafka.coordinator.assignors.roundrobin.RoundRobinPartitionAssignor
            ],
        )
        try:
            while not self._stop.is_set():
                for records in c.poll(timeout_ms=100).values():
                    self.got["kafka-python"].update(r.value.decode() for r in records)
        finally:
            c.close()

    def _ck(self) -> None:
        c = confluent_kafka.Consumer(
            {
                "bootstrap.servers": self.ck_at,
                "group.id": self.group,
                "auto.offset.reset": "earliest",
                "partition.assignment.strategy": "roundrobin",
            }
        )
        c.subscribe([self.topic])
        try:
            while not self._stop.is_set():
                m = c.poll(0.1)
                if m is not None and m.error() is None:
                    self.got["confluent"].add(m.value().decode())
        finally:
            c.close()

    def _aio(self) -> None:
        async def run() -> None:
            c = aiokafka.AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.aio_at,
                group_id=self.group,
                auto_offset_reset="earliest",
            )
            await c.start()
            try:
                while not self._stop.is_set():
                    for records in (await c.getmany(timeout_ms=100)).values():
                        self.got["aiokafka"].update(r.value.decode() for r in records)
            finally:
                await c.stop()

        asyncio.run(run())

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self, timeout_s: float) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout_s)

    def consumed(self) -> set[str]:
        return set().union(*self.got.values())

    def share_until_all_consumed(
        self, produce: Callable[[int], list[str]], timeout_s: float
    ) -> set[str]:
        """Keep producing (``produce(already_produced)`` writes a chunk and returns its values)
        until every library has consumed some (so each holds partitions), then until
        everything produced is consumed; the values produced."""
        deadline = time.monotonic() + timeout_s
        produced: set[str] = set()
        while not (all(self.got.values()) and self.consumed() >= produced):
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, {k: len(v) for k, v in self.got.items()}
            if not all(self.got.values()):
                produced.update(produce(len(produced)))
            time.sleep(0.2)
        return produced
