"""Spans of one message: the producer span per published event, the consumer span and its ACS calls.

The producer's context travels in the message's application properties (``traceparent``,
``tracestate``, and ``Diagnostic-Id`` for Azure tools); the worker's ``<queue> process`` span is
parented to it, so delayed retries, which keep those properties, stay in the original trace.
Exceptions are recorded as span events with secrets and addresses redacted and no stack trace.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Mapping
from contextvars import Token
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from postbus.logs import redact

if TYPE_CHECKING:
    from postbus.events import NotificationEvent
    from postbus.telemetry.instruments import Telemetry

__all__ = [
    "ACS_SEND_PATH",
    "MAX_EXCEPTION_TEXT",
    "PROP_DIAGNOSTIC_ID",
    "PROP_TRACEPARENT",
    "PROP_TRACESTATE",
    "Processing",
    "PublishTrace",
    "SendCall",
    "acs_request_attributes",
    "parent_context",
    "record_exception",
]

PROP_TRACEPARENT: Final = "traceparent"
PROP_TRACESTATE: Final = "tracestate"
#: Azure tools (Service Bus Explorer, the SDKs' own tracing) read the trace context from here.
PROP_DIAGNOSTIC_ID: Final = "Diagnostic-Id"
_PROPAGATOR: Final = TraceContextTextMapPropagator()
#: Longest exception message recorded on a span or a log record.
MAX_EXCEPTION_TEXT: Final = 2000
#: The ACS Email data-plane operation behind every ``acs send`` span.
ACS_SEND_PATH: Final = "/emails:send"
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
#: The HTTP status of each successful send result (ACS answers 202; 409 is an operation id it has seen).
_RESULT_STATUS: Final = {"accepted": 202, "duplicate": 409}


def acs_request_attributes(endpoint: str | None) -> dict[str, str | int]:
    """OpenTelemetry HTTP client attributes of a send to ``endpoint`` (a URL, or a bare host name).

    Application Insights types a CLIENT span as an HTTP dependency only when it has
    ``http.request.method``, and takes the dependency's target (the application map's node) from
    ``server.address`` and ``server.port``; an empty ``endpoint`` gives no attributes.
    """
    if not endpoint:
        return {}
    parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
    host = parts.hostname
    if not host:
        return {}
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 443)
    except ValueError:  # a port that is not a number: name the host alone
        port = _DEFAULT_PORTS.get(scheme, 443)
    authority = host if port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    return {
        "http.request.method": "POST",
        "server.address": host,
        "server.port": port,
        "url.scheme": scheme,
        # No user info and no query string: neither belongs in telemetry.
        "url.full": f"{scheme}://{authority}{ACS_SEND_PATH}",
    }


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind an ACS failure: ours carry the SDK's error as their cause."""
    for candidate in (exc, exc.__cause__):
        status = getattr(candidate, "status_code", None)
        if isinstance(status, int):
            return status
    return None


def record_exception(span: Span, exc: BaseException) -> None:
    """``span.record_exception`` without the stack trace and with secrets and addresses redacted."""
    message = redact(str(exc))[:MAX_EXCEPTION_TEXT]
    span.add_event(
        "exception",
        {"exception.type": type(exc).__qualname__, "exception.message": message, "exception.escaped": False},
    )
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {message}"[:200]))


def _header(properties: Mapping[Any, Any], name: str) -> str | None:
    value = properties.get(name)
    if value is None:
        value = properties.get(name.encode())
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return value if isinstance(value, str) else None


def parent_context(properties: Mapping[Any, Any]) -> otel_context.Context | None:
    """The producer's context from a message's application properties (``None`` if it has none)."""
    traceparent = _header(properties, PROP_TRACEPARENT) or _header(properties, PROP_DIAGNOSTIC_ID)
    if not traceparent:
        return None
    carrier = {PROP_TRACEPARENT: traceparent}
    tracestate = _header(properties, PROP_TRACESTATE)
    if tracestate:
        carrier[PROP_TRACESTATE] = tracestate
    return _PROPAGATOR.extract(carrier)


class Processing:
    """The consumer span of one message; current (for log lines and child spans) while entered.

    ``finish`` records what happened: span attributes, status and the per-message metrics. The
    canonical log line must be written before the block is left, so it carries the span's ids.
    """

    __slots__ = ("_done", "_span", "_telemetry", "_token")

    def __init__(self, telemetry: Telemetry, span: Span) -> None:
        self._telemetry = telemetry
        self._span = span
        self._token: Token[otel_context.Context] | None = None
        self._done = False

    @property
    def span(self) -> Span:
        """The ``<queue> process`` span."""
        return self._span

    def __enter__(self) -> Processing:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._telemetry.inflight_count += 1
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            if exc is not None:
                if isinstance(exc, Exception):
                    record_exception(self._span, exc)
                else:  # cancelled on shutdown: not the message's fault, and not an error of the code
                    self._span.set_attribute("postbus.outcome", "cancelled")
            self._span.end()
        finally:
            self._telemetry.inflight_count -= 1
            if self._token is not None:
                otel_context.detach(self._token)

    def finish(
        self,
        *,
        outcome: str,
        event_id: str | None = None,
        event_type: str = "",
        tenant: str = "",
        attempt: int | None = None,
        reason: str | None = None,
        operation_id: str | None = None,
        recipient_domain: str | None = None,
        error: str | None = None,
    ) -> None:
        """Record the verdict: ``outcome`` is the log line's (sent, retry_scheduled, dead_lettered, ...)."""
        if self._done:
            return
        self._done = True
        span = self._span
        telemetry = self._telemetry
        if span.is_recording():
            attributes: dict[str, str | int] = {"postbus.outcome": outcome}
            if event_id is not None:
                attributes |= {
                    "postbus.event_id": event_id,
                    "postbus.type": event_type,
                    "postbus.tenant": tenant,
                }
            if attempt is not None:
                attributes["postbus.attempt"] = attempt
            if operation_id:
                attributes["postbus.operation_id"] = operation_id
            if recipient_domain:
                attributes["postbus.recipient_domain"] = recipient_domain
            if outcome == "dead_lettered" and reason:
                attributes["postbus.dead_letter_reason"] = reason
            elif outcome == "retry_scheduled" and reason:
                attributes["postbus.retry_reason"] = reason
            span.set_attributes(attributes)
            if outcome in ("dead_lettered", "abandoned") or error:
                description = reason or "failed"
                if error:
                    description = f"{description}: {redact(error)}"
                span.set_status(Status(StatusCode.ERROR, description[:200]))
                span.set_attribute("error.type", reason or "error")
        telemetry.messages_processed.add(1, {"outcome": outcome, "type": event_type, "tenant": tenant})
        if outcome == "dead_lettered":
            telemetry.deadletters.add(1, {"reason": reason or "unknown"})
        elif outcome == "retry_scheduled":
            telemetry.retries_scheduled.add(1, {"reason": reason or "unknown"})


class SendCall:
    """The ``acs send`` CLIENT span of one ACS request and its duration (``postbus.acs.send.duration``).

    Set :attr:`result` (``accepted``/``duplicate``) before a normal exit; an exception leaves the
    block as it came, recorded on the span and named in the histogram's ``result`` attribute. A span
    that names its endpoint also records the HTTP status (202 accepted, 409 duplicate, or the
    failure's own status) and, on failure, ``error.type``.
    """

    __slots__ = ("_span", "_started", "_telemetry", "_token", "result")

    def __init__(self, telemetry: Telemetry, span: Span) -> None:
        self._telemetry = telemetry
        self._span = span
        self._started = 0.0
        self._token: Token[otel_context.Context] | None = None
        self.result = "accepted"

    def __enter__(self) -> SendCall:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._started = time.perf_counter()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        elapsed_ms = (time.perf_counter() - self._started) * 1000
        try:
            result = self.result if exc is None else type(exc).__name__
            status = _RESULT_STATUS.get(self.result) if exc is None else _http_status(exc)
            if exc is not None and isinstance(exc, Exception):
                record_exception(self._span, exc)
                self._span.set_attribute("error.type", str(status) if status else type(exc).__qualname__)
            if status is not None:
                self._span.set_attribute("http.response.status_code", status)
            self._span.set_attribute("postbus.acs.result", result)
            self._span.end()
            self._telemetry.acs_send_duration.record(elapsed_ms, {"result": result})
        finally:
            if self._token is not None:
                otel_context.detach(self._token)


class PublishTrace:
    """Producer spans of one publish call: :meth:`properties` is the publisher's properties hook.

    Each event gets a ``<queue> publish`` span (child of whatever is current, e.g. an HTTP request)
    whose context goes into the message; :meth:`finish` ends the spans once the batches are sent
    and counts ``postbus.events.published``.
    """

    def __init__(self, telemetry: Telemetry, queue: str) -> None:
        self._telemetry = telemetry
        self._queue = queue
        self._name = f"{queue} publish"
        self._spans: list[tuple[str, Span, dict[str, str]]] = []

    def properties(self, event: NotificationEvent) -> dict[str, str]:
        """Start the event's span and return its trace context as application properties."""
        span = self._telemetry.tracer.start_span(
            self._name,
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "servicebus",
                "messaging.destination.name": self._queue,
                # One span per message, whose context the message carries, before the batch is sent:
                # a "create" span in the OpenTelemetry messaging conventions.
                "messaging.operation.type": "create",
                "messaging.operation.name": "publish",
                "messaging.message.id": event.id,
                "postbus.event_id": event.id,
                "postbus.type": event.type,
                "postbus.tenant": event.tenant,
            },
        )
        self._spans.append((event.id, span, {"type": event.type, "tenant": event.tenant}))
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        if PROP_TRACEPARENT in carrier:
            carrier[PROP_DIAGNOSTIC_ID] = carrier[PROP_TRACEPARENT]
        return carrier

    def hook(
        self, user_hook: Callable[[NotificationEvent], Mapping[str, str]] | None
    ) -> Callable[[NotificationEvent], Mapping[str, str]]:
        """:meth:`properties` merged with a caller's own hook (whose values win)."""
        if user_hook is None:
            return self.properties

        def merged(event: NotificationEvent) -> Mapping[str, str]:
            return {**self.properties(event), **user_hook(event)}

        return merged

    def finish(self, sent: Collection[str], error: BaseException | None = None) -> None:
        """End every span: OK for the message ids in ``sent``, the error for the others."""
        sent_ids = sent if isinstance(sent, set | frozenset) else set(sent)
        published = self._telemetry.events_published
        for message_id, span, attributes in self._spans:
            if message_id in sent_ids:
                published.add(1, attributes)
            elif error is not None:
                record_exception(span, error)
            else:
                span.set_status(Status(StatusCode.ERROR, "not sent"))
            span.end()
        self._spans.clear()
