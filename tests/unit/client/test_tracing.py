"""W3C trace context: the producer writes `traceparent` of the active span into each record's
headers; a consumer's process_span continues that trace; without a span nothing is added."""

from __future__ import annotations

import pytest

from rilke.client import tracing
from rilke.client.consumer import Consumer
from rilke.client.producer import Producer

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")


def test_traceparent_goes_out_and_the_consumer_continues_the_trace(fake):
    fake.broker.create("t", 1)
    tracer = sdk_trace.TracerProvider().get_tracer("test")
    with Producer(fake.address, trace_context=True) as p:
        p.send("t", b"untraced", headers=[("h", b"1")]).get(5)
        with tracer.start_as_current_span("checkout") as span:
            p.send("t", b"traced", headers=[("h", b"2")]).get(5)
        ctx = span.get_span_context()
    with Consumer(
        "t", bootstrap_servers=fake.address, auto_offset_reset="earliest", consumer_timeout_ms=2000
    ) as c:
        records = list(c)
    assert [r.value for r in records] == [b"untraced", b"traced"]
    assert records[0].headers == (("h", b"1"),)
    headers = dict(records[1].headers)
    assert headers["h"] == b"2"
    assert (
        headers["traceparent"]
        == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}".encode()
    )
    with tracing.process_span(records[1]) as consumer_span:
        got = consumer_span.get_span_context()
        assert got.trace_id == ctx.trace_id
        assert trace.get_current_span() is consumer_span
    parent = trace.get_current_span(tracing.extract(records[1].headers)).get_span_context()
    assert parent.span_id == ctx.span_id


def test_without_opentelemetry_headers_are_left_alone(monkeypatch):
    monkeypatch.setattr(tracing, "_otel", None)
    monkeypatch.setattr(tracing, "_propagate", None)
    assert tracing.inject([("a", b"1")]) == [("a", b"1")]
    assert tracing.extract([("traceparent", b"00-x")]) is None


def test_trace_context_is_on_by_default_only_where_tracing_is_set_up(fake, monkeypatch):
    with Producer(fake.address) as p:
        assert p._aio.trace_context is False and p._aio._prepare is None  # nothing per record
    monkeypatch.setattr(trace, "get_tracer_provider", sdk_trace.TracerProvider)
    assert tracing.tracing_configured()
    with Producer(fake.address) as p:
        assert p._aio.trace_context is True
    monkeypatch.setattr(tracing, "ENABLED", False)
    with pytest.raises(ValueError, match=r"rilke\[otel\]"):
        Producer(fake.address, trace_context=True)
