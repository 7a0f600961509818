"""W3C trace context in record headers, through OpenTelemetry (the ``otel`` extra).

When ``opentelemetry-api`` is installed and the program has set a tracer provider (or a
producer is made with ``trace_context=True``), the producer writes the ``traceparent`` (and
``tracestate``) header of the current span into each record it sends while a span is active,
and a consumer continues that trace: :func:`process_span` opens a CONSUMER span whose parent
is the record's producer span; :func:`extract` gives the bare context. Without OpenTelemetry
(or without an active span) nothing is written and these helpers do nothing, at no cost to
the send path beyond one check.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACE_HEADERS = (TRACEPARENT, TRACESTATE)

_otel: Any
_propagate: Any
try:
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _otel
except ImportError:  # the `otel` extra is not installed
    _otel = None
    _propagate = None

ENABLED = _otel is not None
"""Whether OpenTelemetry is importable in this process."""


def tracing_configured() -> bool:
    """Whether the program has set a tracer provider of its own (an SDK's): the default for
    a producer's ``trace_context``. Looking for the current span costs about a microsecond
    a record, which a program that traces nothing should not pay (measured with `rilke
    bench produce`: 25% of its throughput with OpenTelemetry installed but unconfigured)."""
    if _otel is None:
        return False
    provider = _otel.get_tracer_provider()
    return not isinstance(provider, _otel.ProxyTracerProvider | _otel.NoOpTracerProvider)


Headers = list[tuple[str, "bytes | None"]]


def _has_active_span() -> bool:
    return bool(_otel is not None and _otel.get_current_span().get_span_context().is_valid)


def inject(headers: Headers | None) -> Headers | None:
    """``headers`` with the current span's ``traceparent``/``tracestate`` added (replacing
    any given), or ``headers`` unchanged when no span is active or OpenTelemetry is absent."""
    if not _has_active_span():
        return headers
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    if not carrier:
        return headers
    kept = [(k, v) for k, v in headers or () if k not in carrier]
    return kept + [(k, v.encode()) for k, v in carrier.items() if k in _TRACE_HEADERS]


def extract(headers: Sequence[tuple[str, bytes | None]]) -> Any:
    """The OpenTelemetry context carried by a record's headers (the current context when
    they carry none); None when OpenTelemetry is absent."""
    if _propagate is None:
        return None
    carrier = {
        k: v.decode("ascii", "replace") for k, v in headers if k in _TRACE_HEADERS and v is not None
    }
    return _propagate.extract(carrier)


@contextlib.contextmanager
def process_span(record: Any, name: str | None = None) -> Iterator[Any]:
    """``with process_span(record): handle(record)``: a CONSUMER span named
    ``"<topic> process"`` that continues the producer's trace (yields the span, or None
    without OpenTelemetry)."""
    if _otel is None:
        yield None
        return
    tracer = _otel.get_tracer("rilke")
    with tracer.start_as_current_span(
        name or f"{record.topic} process",
        context=extract(record.headers),
        kind=_otel.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
        },
    ) as span:
        yield span
