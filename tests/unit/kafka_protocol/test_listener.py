"""The Kafka listener inside a real BrokerServer (in-process, 127.0.0.1, an OS-assigned
port, a temporary data directory): bad input is answered or closed as Kafka does, logged with
the client's address, writes nothing, and the broker and other connections carry on."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rilke.server.config import load_config
from rilke.server.kafka import codec, handler
from rilke.server.kafka import schemas as sc
from rilke.server.server import BrokerServer
from tests.produce_batches import make_batch

MAX_FRAME = 4096
DEADLINE_S = 10.0


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.correlation = 0

    def send(self, api_key: int, version: int, body: dict[str, Any]) -> int:
        self.correlation += 1
        self.writer.write(codec.encode_request(api_key, version, self.correlation, "t", body))
        return self.correlation

    async def receive(self, api_key: int, version: int) -> tuple[int, dict[str, Any]]:
        length = struct.unpack(
            ">i", await asyncio.wait_for(self.reader.readexactly(4), DEADLINE_S)
        )[0]
        frame = await asyncio.wait_for(self.reader.readexactly(length), DEADLINE_S)
        return codec.decode_response(api_key, version, frame)

    async def call(self, api_key: int, version: int, body: dict[str, Any]) -> dict[str, Any]:
        sent = self.send(api_key, version, body)
        got, response = await self.receive(api_key, version)
        assert got == sent
        return response

    async def closed_by_broker(self) -> bool:
        data = await asyncio.wait_for(self.reader.read(100), DEADLINE_S)
        return data == b""

    def peer(self) -> str:
        host, port = self.writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"


Scenario = Callable[[Callable[[], Awaitable[Client]]], Awaitable[None]]


def run(tmp_path: Path, scenario: Scenario) -> None:
    config = load_config(
        {
            "data_dir": str(tmp_path / "data"),
            "listen": "127.0.0.1:0",
            "kafka_listen": "127.0.0.1:0",
            "kafka_max_frame_bytes": str(MAX_FRAME),
            "scrub_bytes_per_second": "0",
        },
        env={},
    )

    async def main() -> None:
        server = BrokerServer(config)
        await server.start()
        assert server.kafka_address is not None
        host, port = server.kafka_address
        opened: list[Client] = []

        async def connect() -> Client:
            client = Client(*await asyncio.open_connection(host, port))
            opened.append(client)
            return client

        try:
            await scenario(connect)
            # The broker carries on: a new connection is served.
            fresh = await connect()
            assert (await fresh.call(sc.API_VERSIONS, 2, {}))["error_code"] == 0
        finally:
            for client in opened:
                client.writer.close()
            await server.stop()

    asyncio.run(main())


API_VERSIONS_V3 = struct.pack(">hhi", 18, 3, 99) + b"\x00\x07rdkafka\x00" + b"\x00"


def test_api_versions_advertises_the_served_set_and_falls_back_per_kip_511(tmp_path: Path) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        body = await c.call(sc.API_VERSIONS, 2, {})
        served = {k["api_key"]: (k["min_version"], k["max_version"]) for k in body["api_keys"]}
        assert served == sc.SERVED
        assert served[sc.PRODUCE] == (3, 3) and served[sc.FIND_COORDINATOR] == (0, 1)
        c.writer.write(struct.pack(">i", len(API_VERSIONS_V3)) + API_VERSIONS_V3)
        correlation, fallback = await c.receive(sc.API_VERSIONS, 0)
        assert correlation == 99
        assert fallback == {
            "error_code": 35,
            "api_keys": [{"api_key": 18, "min_version": 0, "max_version": 2}],
        }
        assert (await c.call(sc.API_VERSIONS, 0, {}))["error_code"] == 0  # still open

    run(tmp_path, scenario)


@pytest.mark.parametrize(
    ("name", "data", "logged"),
    [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "over the maximum of 4096"),
        ("oversized", struct.pack(">i", MAX_FRAME + 1) + b"\x00" * 100, "4097 bytes is over"),
        ("short", struct.pack(">i", 3) + b"\x00\x00\x00", "too short for a request header"),
        (
            "unknown key",
            struct.pack(">i", 10) + struct.pack(">hhih", 99, 0, 1, -1),
            "api key 99 (unknown)",
        ),
        (
            "unserved version",
            struct.pack(">i", 10) + struct.pack(">hhih", 0, 9, 1, -1),
            "api key 0 (Produce) version 9 is not served (versions 3-3)",
        ),
        (
            "unparsable",
            struct.pack(">i", 14) + struct.pack(">hhih", 3, 4, 1, -1) + b"\x00\x00\x00\x05",
            "request does not parse",
        ),
    ],
)
def test_bad_input_closes_the_connection_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, name: str, data: bytes, logged: str
) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        other = await connect()
        assert (await other.call(sc.API_VERSIONS, 2, {}))["error_code"] == 0
        bad = await connect()
        bad.writer.write(data)
        assert await bad.closed_by_broker(), name
        assert any(
            logged in r.getMessage() and bad.peer() in r.getMessage() for r in caplog.records
        ), [r.getMessage() for r in caplog.records if "kafka client" in r.getMessage()]
        assert (await other.call(sc.API_VERSIONS, 2, {}))["error_code"] == 0  # unaffected

    with caplog.at_level(logging.WARNING, logger="rilke.server.kafka.handler"):
        run(tmp_path, scenario)


def test_truncated_frame_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        peer = c.peer()
        c.writer.write(struct.pack(">i", 100) + b"\x00" * 10)
        c.writer.write_eof()
        assert await c.closed_by_broker()
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while not any(
            "truncated frame (10 of 100 bytes)" in r.getMessage() and peer in r.getMessage()
            for r in caplog.records
        ):
            assert asyncio.get_running_loop().time() < deadline, "never logged"
            await asyncio.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger="rilke.server.kafka.handler"):
        run(tmp_path, scenario)


def test_silent_client_is_closed_after_the_idle_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "DEFAULT_IDLE_TIMEOUT_S", 0.3)

    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        assert await c.closed_by_broker()
        assert any(
            "idle for" in r.getMessage() and c.peer() in r.getMessage() for r in caplog.records
        )

    with caplog.at_level(logging.WARNING, logger="rilke.server.kafka.handler"):
        run(tmp_path, scenario)


def _produce(topic: str, records: bytes, acks: int = -1) -> dict[str, Any]:
    return {
        "transactional_id": None,
        "acks": acks,
        "timeout_ms": 5000,
        "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
    }


def _latest(topic: str) -> dict[str, Any]:
    return {
        "replica_id": -1,
        "isolation_level": 0,
        "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
    }


def _create(topic: str) -> dict[str, Any]:
    return {
        "topics": [
            {
                "name": topic,
                "num_partitions": 1,
                "replication_factor": 1,
                "assignments": [],
                "configs": [],
            }
        ],
        "timeout_ms": 5000,
        "validate_only": False,
    }


def test_bad_batches_get_their_partition_error_and_write_nothing(tmp_path: Path) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        created = await c.call(sc.CREATE_TOPICS, 2, _create("t"))
        assert created["topics"][0]["error_code"] == 0
        good = make_batch([b"a", b"b"])
        bad_crc = bytearray(good)
        bad_crc[-1] ^= 0xFF
        magic_1 = bytearray(good)
        magic_1[16] = 1
        for records, code in ((bytes(bad_crc), 2), (bytes(magic_1), 87), (good[:40], 2)):
            response = await c.call(sc.PRODUCE, 3, _produce("t", records))
            part = response["responses"][0]["partition_responses"][0]
            assert part["error_code"] == code, records[:20]
            assert part["base_offset"] == -1
        offsets = await c.call(sc.LIST_OFFSETS, 2, _latest("t"))
        assert offsets["topics"][0]["partitions"][0]["offset"] == 0  # nothing written
        response = await c.call(sc.PRODUCE, 3, _produce("t", good))
        assert response["responses"][0]["partition_responses"][0]["error_code"] == 0
        unknown = await c.call(sc.PRODUCE, 3, _produce("nope", good))
        assert unknown["responses"][0]["partition_responses"][0]["error_code"] == 3

    run(tmp_path, scenario)


def test_pipelined_requests_are_answered_in_order_and_acks_0_gets_no_answer(tmp_path: Path) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        await c.call(sc.CREATE_TOPICS, 2, _create("t"))
        fetch = {
            "replica_id": -1,
            "max_wait_ms": 300,
            "min_bytes": 1,
            "max_bytes": 1 << 20,
            "isolation_level": 0,
            "topics": [
                {
                    "topic": "t",
                    "partitions": [
                        {"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}
                    ],
                }
            ],
        }
        first = c.send(sc.FETCH, 4, fetch)  # long poll: nothing there yet
        c.send(sc.PRODUCE, 3, _produce("t", make_batch([b"x"]), acks=0))  # no answer
        third = c.send(sc.API_VERSIONS, 2, {})
        got, fetched = await c.receive(sc.FETCH, 4)
        assert got == first
        part = fetched["responses"][0]["partitions"][0]
        # The acks=0 produce, behind it on the connection, woke the long poll.
        assert part["error_code"] == 0 and part["records"] and part["high_watermark"] == 1
        got, _ = await c.receive(sc.API_VERSIONS, 2)
        assert got == third

    run(tmp_path, scenario)


async def _logged(caplog: pytest.LogCaptureFixture, text: str, peer: str) -> None:
    """Wait (with a deadline) for a handler log line holding ``text`` and ``peer``."""
    deadline = asyncio.get_running_loop().time() + DEADLINE_S
    while not any(text in r.getMessage() and peer in r.getMessage() for r in caplog.records):
        assert asyncio.get_running_loop().time() < deadline, f"never logged: {text}"
        await asyncio.sleep(0.01)


def test_a_frame_that_stalls_mid_read_is_closed_after_the_frame_timeout(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handler, "FRAME_READ_TIMEOUT_S", 0.3)

    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        other = await connect()
        c = await connect()
        c.writer.write(struct.pack(">i", 100) + b"\x00" * 10)  # and then nothing, still open
        assert await c.closed_by_broker()
        await _logged(caplog, "frame of 100 bytes not complete after", c.peer())
        assert (await other.call(sc.API_VERSIONS, 2, {}))["error_code"] == 0  # unaffected

    with caplog.at_level(logging.WARNING, logger="rilke.server.kafka.handler"):
        run(tmp_path, scenario)


def test_a_truncated_length_prefix_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        peer = c.peer()
        c.writer.write(b"\x00\x00")
        c.writer.write_eof()
        assert await c.closed_by_broker()
        await _logged(caplog, "truncated frame (2 of 4 length bytes)", peer)

    with caplog.at_level(logging.WARNING, logger="rilke.server.kafka.handler"):
        run(tmp_path, scenario)


def test_a_produce_that_does_not_parse_closes_the_connection_and_writes_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        setup = await connect()
        assert (await setup.call(sc.CREATE_TOPICS, 2, _create("t")))["topics"][0]["error_code"] == 0
        whole = codec.encode_request(sc.PRODUCE, 3, 5, "t", _produce("t", make_batch([b"x"])))
        body = whole[4:]
        cut = body[:-7]  # the records field claims 7 more bytes than the frame holds
        grown = body[:-1] + b"\x00" * 9  # and one whose records run past their length
        for frame in (cut, grown):
            bad = await connect()
            peer = bad.peer()
            bad.writer.write(struct.pack(">i", len(frame)) + frame)
            assert await bad.closed_by_broker()
            await _logged(caplog, "request does not parse", peer)
        offsets = await setup.call(sc.LIST_OFFSETS, 2, _latest("t"))
        assert offsets["topics"][0]["partitions"][0]["offset"] == 0  # nothing written

    with caplog.at_level(logging.WARNING, logger="rilke.server.kafka.handler"):
        run(tmp_path, scenario)


def test_alter_configs_replace_and_incremental_alter_configs_change_a_topic(
    tmp_path: Path,
) -> None:
    def alter(name: str, configs: list[dict[str, Any]], kind: int = 2) -> dict[str, Any]:
        resource = {"resource_type": kind, "resource_name": name, "configs": configs}
        return {"resources": [resource], "validate_only": False}

    def op(name: str, operation: int, value: str | None) -> dict[str, Any]:
        return {"name": name, "config_operation": operation, "value": value}

    async def scenario(connect: Callable[[], Awaitable[Client]]) -> None:
        c = await connect()
        await c.call(sc.CREATE_TOPICS, 2, _create("t"))

        async def configs() -> dict[str, str]:
            body = {
                "resources": [
                    {"resource_type": 2, "resource_name": "t", "configuration_keys": None}
                ],
                "include_synonyms": False,
            }
            [result] = (await c.call(sc.DESCRIBE_CONFIGS, 1, body))["results"]
            return {e["name"]: e["value"] for e in result["configs"] if e["config_source"] == 1}

        async def code(api: int, version: int, body: dict[str, Any]) -> int:
            [response] = (await c.call(api, version, body))["responses"]
            return int(response["error_code"])

        inc = sc.INCREMENTAL_ALTER_CONFIGS
        assert await code(inc, 0, alter("t", [op("retention.ms", 0, "5000")])) == 0
        assert await configs() == {"retention.ms": "5000"}
        # AlterConfigs: the listed configs are the whole set; retention.ms goes back.
        listed = [{"name": "segment.bytes", "value": "1048576"}]
        assert await code(sc.ALTER_CONFIGS, 1, alter("t", listed)) == 0
        assert await configs() == {"segment.bytes": "1048576"}
        refusals = [
            (inc, alter("t", [op("segment.bytes", 2, "1")]), 40),  # APPEND: INVALID_CONFIG
            (inc, alter("t", [op("retention.ms", 0, "soon")]), 40),
            (inc, alter("t", [op("a.b", 0, "1"), op("a.b", 1, None)]), 42),
            (inc, alter("1", [op("retention.ms", 0, "1")], kind=4), 42),  # a broker
            (inc, alter("nope", [op("retention.ms", 0, "1")]), 3),
            (sc.ALTER_CONFIGS, alter("t", [{"name": "retention.ms", "value": "x"}]), 40),
        ]
        for api, body, expected in refusals:
            assert await code(api, 0, body) == expected, body
        assert await configs() == {"segment.bytes": "1048576"}  # changed nothing
        assert await code(inc, 0, alter("t", [op("segment.bytes", 1, None)])) == 0
        assert await configs() == {}

    run(tmp_path, scenario)
