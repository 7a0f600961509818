"""Error mapping from the wire and from gRPC, and settings checks."""

from __future__ import annotations

import grpc
import pytest

from rilke.client.config import compression_id, normalize_acks, parse_bootstrap_servers
from rilke.client.transport import error_from_proto, error_from_rpc
from rilke.errors import (
    BrokerNotAvailableError,
    InvalidRequestError,
    MessageSizeTooLargeError,
    NotLeaderError,
    RequestTimedOutError,
    RilkeError,
)
from rilke.proto import rilke_pb2 as pb


def test_wire_codes_map_to_classes_with_flags():
    assert error_from_proto(pb.Error(code=0)) is None
    assert error_from_proto(None) is None
    err = error_from_proto(pb.Error(code=20, message="moved"), "produce to t-0")
    assert isinstance(err, NotLeaderError) and err.retriable and err.invalid_metadata
    assert str(err) == "produce to t-0: moved"
    unknown = error_from_proto(pb.Error(code=999))
    assert type(unknown) is RilkeError and not unknown.retriable


class _FakeRpcError(grpc.aio.AioRpcError):
    def __init__(self, code):
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details="boom")


@pytest.mark.parametrize(
    ("code", "cls", "retriable"),
    [
        (grpc.StatusCode.UNAVAILABLE, BrokerNotAvailableError, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, RequestTimedOutError, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, MessageSizeTooLargeError, False),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidRequestError, False),
    ],
)
def test_grpc_status_maps_to_errors(code, cls, retriable):
    err = error_from_rpc(_FakeRpcError(code), "h:1", "Broker.Produce")
    assert isinstance(err, cls) and err.retriable is retriable
    assert "h:1" in str(err)


def test_bootstrap_servers_parsing():
    assert parse_bootstrap_servers("a:1, b:2") == ["a:1", "b:2"]
    assert parse_bootstrap_servers(["a"]) == ["a:9292"]
    for bad in ("", "a:x", ":1", "a:70000"):
        with pytest.raises(ValueError):
            parse_bootstrap_servers(bad)


def test_acks_and_compression():
    assert [normalize_acks(a) for a in (0, 1, -1, "all", "1")] == [0, 1, -1, -1, 1]
    with pytest.raises(ValueError):
        normalize_acks(2)
    assert compression_id("LZ4") == 3 and compression_id(None) == 0
    assert compression_id("zstd") == 4 and compression_id("SNAPPY") == 2
    with pytest.raises(ValueError, match="compression must be one of"):
        compression_id("brotli")


def test_compression_without_its_package_names_the_extra(monkeypatch):
    from rilke.records import compression

    monkeypatch.setattr(compression, "_zstd_mod", None)
    with pytest.raises(ValueError, match=r"zstandard.*rilke\[zstd\]"):
        compression_id("zstd")


def test_breaker_makes_dead_broker_fail_fast():
    import asyncio

    from rilke.client.transport import Transport

    async def main():
        t = Transport(breaker_threshold=2)
        # Nothing listens on port 1: each call fails UNAVAILABLE.
        for _ in range(2):
            with pytest.raises(BrokerNotAvailableError):
                await t.call("127.0.0.1:1", "Broker", "Metadata", pb.MetadataRequest(), 2.0)
        # The third call is refused by the open circuit, without a network call.
        with pytest.raises(BrokerNotAvailableError, match="not trying again"):
            await t.call("127.0.0.1:1", "Broker", "Metadata", pb.MetadataRequest(), 2.0)
        await t.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    "setting",
    [
        {"request_timeout_ms": 0},
        {"request_timeout_ms": -5},
        {"retry_backoff_ms": -1},
        {"retry_backoff_max_ms": -1},
        {"metadata_max_age_ms": 0},
        {"bootstrap_servers": "host:notaport"},
    ],
    ids=lambda setting: next(iter(setting)),
)
def test_every_client_checks_its_connection_settings(setting):
    from rilke.client.admin import Admin
    from rilke.client.consumer import Consumer
    from rilke.client.producer import Producer

    settings = {"bootstrap_servers": "127.0.0.1:1", **setting}
    servers = settings.pop("bootstrap_servers")
    for make in (
        lambda: Admin(servers, **settings),
        lambda: Producer(servers, **settings),
        lambda: Consumer(bootstrap_servers=servers, **settings),
    ):
        with pytest.raises(ValueError, match=next(iter(setting)).removesuffix("_servers")):
            make()
