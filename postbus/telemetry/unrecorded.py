"""Spans that carry trace ids and nothing else: the tracer of a process whose telemetry goes nowhere.

With no exporter configured, recording a span (attributes, events, status, a processor call on
end) is pure cost, but its ids still matter: ``traceparent`` travels on to the next hop and log
lines carry ``trace_id``/``span_id``. :class:`UnrecordedTracerProvider` starts
``NonRecordingSpan``\\ s with fresh span ids, the parent's trace id (or a new one) and the sampled
flag, so a downstream process that does export records its spans as if this hop had exported
too (a sampler that said "drop" would clear the flag, and the next hop's parent-based sampler
would drop the whole trace)::

    provider = UnrecordedTracerProvider(resource)
    with provider.get_tracer("postbus").start_as_current_span("work") as span:
        span.get_span_context().trace_id   # set; nothing is recorded or exported
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    TraceFlags,
)
from opentelemetry.util._decorator import _agnosticcontextmanager

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.util.types import Attributes

__all__ = ["UnrecordedTracer", "UnrecordedTracerProvider"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)


def _span_id() -> int:
    span_id = random.getrandbits(64)
    while span_id == INVALID_SPAN_ID:
        span_id = random.getrandbits(64)
    return span_id


def _trace_id() -> int:
    trace_id = random.getrandbits(128)
    while trace_id == INVALID_TRACE_ID:
        trace_id = random.getrandbits(128)
    return trace_id


class UnrecordedTracer(trace.Tracer):
    """Starts non-recording spans with real ids (see the module docstring)."""

    def start_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> Span:
        parent = trace.get_current_span(context).get_span_context()
        if parent.is_valid:
            span_context = SpanContext(
                parent.trace_id,
                _span_id(),
                is_remote=False,
                trace_flags=_SAMPLED,
                trace_state=parent.trace_state,
            )
        else:
            span_context = SpanContext(_trace_id(), _span_id(), is_remote=False, trace_flags=_SAMPLED)
        return NonRecordingSpan(span_context)

    # The API's own decorator: the base class's return type is its context manager.
    @_agnosticcontextmanager
    def start_as_current_span(
        self,
        name: str,
        context: otel_context.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> Iterator[Span]:
        span = self.start_span(name, context)
        with trace.use_span(span, end_on_exit=end_on_exit) as current:
            yield current


class UnrecordedTracerProvider(trace.TracerProvider):
    """The provider of :class:`UnrecordedTracer`; ``resource`` is kept for whoever inspects it."""

    def __init__(self, resource: Resource | None = None) -> None:
        self.resource = resource
        self._tracer = UnrecordedTracer()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> trace.Tracer:
        return self._tracer
