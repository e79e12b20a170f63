"""OpenTelemetry for Postbus: one ``configure_telemetry(settings)`` per process, spans and metrics on the hot path.

Which exporter runs is decided by the settings, once, at process start::

    telemetry = configure_telemetry(settings)   # "azure_monitor", "otlp" or "none"
    telemetry.exporter

* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set: the Azure Monitor distro
  (``configure_azure_monitor``) exports traces, metrics and logs; log records reach its log pipeline
  through our own bridge (:class:`OtelLogHandler`) so the fields of each structlog line become
  ``customDimensions``. The distro's Azure SDK tracing is turned off: the Service Bus SDK
  would add its own ``b"traceparent"`` next to ours and open a receive span every idle second.
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: OTLP/HTTP exporters for traces, metrics and logs.
* neither: real providers without processors or readers. Spans still carry trace ids (so
  ``traceparent`` travels and log lines have ``trace_id``) but nothing is exported.

Tests pass their own providers (``InMemorySpanExporter``, ``InMemoryMetricReader``); then the
OpenTelemetry globals, which can be set only once per process, are left alone.

Spans (OTel messaging conventions): ``<queue> publish`` (PRODUCER) per published event, whose context
travels in the ``traceparent``/``tracestate``/``Diagnostic-Id`` application properties;
``<queue> process`` (CONSUMER) per received message, parented to that context; ``render <type>``
and ``acs send`` (CLIENT) beneath it. Metrics live under the meter ``postbus``; their names are a
contract with the workbook and alerts in ``infra/`` and the queries in ``docs/runbook.md``.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import Token
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from postbus.logs import redact

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from postbus.events import NotificationEvent
    from postbus.settings import Settings

__all__ = [
    "BREAKER_STATE_CODES",
    "METER_NAME",
    "PROP_DIAGNOSTIC_ID",
    "PROP_TRACEPARENT",
    "PROP_TRACESTATE",
    "SLO_SECONDS",
    "Exporter",
    "OtelLogHandler",
    "Processing",
    "PublishTrace",
    "SendCall",
    "Telemetry",
    "configure_telemetry",
    "current_telemetry",
    "set_current_telemetry",
]

Exporter = Literal["azure_monitor", "otlp", "none"]

METER_NAME: Final = "postbus"
TRACER_NAME: Final = "postbus"
#: The latency objective of the healthcare reminders: 97 % of events at ACS within five minutes.
SLO_SECONDS: Final = 300.0
PROP_TRACEPARENT: Final = "traceparent"
PROP_TRACESTATE: Final = "tracestate"
#: Azure tools (Service Bus Explorer, the SDKs' own tracing) read the trace context from here.
PROP_DIAGNOSTIC_ID: Final = "Diagnostic-Id"
#: Values of the ``postbus.breaker.state`` gauge, by ``worker.breaker.BreakerState`` value.
BREAKER_STATE_CODES: Final = {"closed": 0, "half_open": 1, "open": 2}
#: Name of the root-logger handler that forwards log records to OpenTelemetry.
LOG_HANDLER_NAME: Final = "postbus-otel"
#: Where the Azure Monitor distro may put its own logging handler: a logger nothing writes to.
_DISTRO_LOGGER: Final = "postbus.telemetry.unused-distro-handler"

# Buckets for exporters that keep them (OTLP); Application Insights keeps count/sum/min/max only.
_ACS_BUCKETS_MS: Final = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
_E2E_BUCKETS_MS: Final = (1000, 5000, 15_000, 30_000, 60_000, 120_000, 240_000, 300_000, 600_000, 1_800_000)
_PROPAGATOR: Final = TraceContextTextMapPropagator()
_MAX_EXCEPTION_TEXT: Final = 2000
#: Loggers whose records are not forwarded: the exporters' own complaints would feed back into them.
_UNBRIDGED: Final = ("opentelemetry", "azure.monitor", "urllib3")


def _exception_event(span: Span, exc: BaseException) -> None:
    """``span.record_exception`` without the stack trace and with secrets and addresses redacted."""
    message = redact(str(exc))[:_MAX_EXCEPTION_TEXT]
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


def _parent_context(properties: Mapping[Any, Any]) -> otel_context.Context | None:
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
                    _exception_event(self._span, exc)
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
    block as it came, recorded on the span and named in the histogram's ``result`` attribute.
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
            if exc is not None and isinstance(exc, Exception):
                _exception_event(self._span, exc)
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
                "messaging.operation": "publish",
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
                _exception_event(span, error)
            else:
                span.set_status(Status(StatusCode.ERROR, "not sent"))
            span.end()
        self._spans.clear()


class _Watched:
    __slots__ = ("breaker_state", "send_rate")

    def __init__(self, send_rate: Callable[[], float], breaker_state: Callable[[], int]) -> None:
        self.send_rate = send_rate
        self.breaker_state = breaker_state


class Telemetry:
    """The tracer and the ``postbus`` instruments of one process (see the module docstring).

    Example::

        telemetry = configure_telemetry(settings)
        with telemetry.processing(queue="notifications", properties=props, message_id="o-1",
                                  delivery_count=0) as processing:
            ...
            processing.finish(outcome="sent", event_id="o-1", event_type="order.confirmation")
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        exporter: Exporter = "none",
        shutdown: Sequence[Callable[[], object]] = (),
    ) -> None:
        self.exporter: Exporter = exporter
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer = tracer_provider.get_tracer(TRACER_NAME)
        self._shutdown = tuple(shutdown)
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        meter = meter_provider.get_meter(METER_NAME)
        self.messages_processed = meter.create_counter(
            "postbus.messages.processed", unit="{message}", description="Messages processed, by outcome."
        )
        self.acs_send_duration = meter.create_histogram(
            "postbus.acs.send.duration",
            unit="ms",
            description="Duration of one ACS send request.",
            explicit_bucket_boundaries_advisory=_ACS_BUCKETS_MS,
        )
        self.e2e_latency = meter.create_histogram(
            "postbus.e2e.latency",
            unit="ms",
            description="From the first enqueue of an event to ACS accepting its email (SLO metric).",
            explicit_bucket_boundaries_advisory=_E2E_BUCKETS_MS,
        )
        self.retries_scheduled = meter.create_counter(
            "postbus.retries.scheduled", unit="{message}", description="Delayed retries scheduled, by reason."
        )
        self.throttle_events = meter.create_counter(
            "postbus.throttle.events", unit="{response}", description="ACS 429 answers."
        )
        self.deadletters = meter.create_counter(
            "postbus.deadletters", unit="{message}", description="Messages dead-lettered, by reason."
        )
        #: Messages being processed now; observed at collection time, so the hot path only counts.
        self.inflight_count = 0
        meter.create_observable_up_down_counter(
            "postbus.inflight",
            callbacks=[self._observe_inflight],
            unit="{message}",
            description="Messages being processed now.",
        )
        self.events_published = meter.create_counter(
            "postbus.events.published", unit="{event}", description="Events published to the queue."
        )
        meter.create_observable_gauge(
            "postbus.send.rate",
            callbacks=[self._observe_send_rate],
            unit="{email}/s",
            description="Sends per second the rate gate currently permits.",
        )
        meter.create_observable_gauge(
            "postbus.breaker.state",
            callbacks=[self._observe_breaker],
            unit="1",
            description="Circuit breaker: 0 closed, 1 half-open, 2 open.",
        )

    # ---- consumer side ---------------------------------------------------------------------------

    def processing(
        self, *, queue: str, properties: Mapping[Any, Any], message_id: str, delivery_count: int
    ) -> Processing:
        """The ``<queue> process`` span of one received message, parented to its producer."""
        span = self.tracer.start_span(
            f"{queue} process",
            context=_parent_context(properties),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "servicebus",
                "messaging.destination.name": queue,
                "messaging.operation": "process",
                "messaging.message.id": message_id,
                "messaging.servicebus.message.delivery_count": delivery_count,
                # messaging.* attributes are not copied to Application Insights' customDimensions.
                "postbus.message_id": message_id,
            },
        )
        return Processing(self, span)

    @contextmanager
    def render(self, event_type: str) -> Iterator[Span]:
        """The ``render <type>`` span; an exception is recorded (redacted) and re-raised."""
        with self.tracer.start_as_current_span(
            f"render {event_type}", record_exception=False, set_status_on_exception=False
        ) as span:
            try:
                yield span
            except Exception as exc:
                _exception_event(span, exc)
                raise

    def acs_send(self, *, operation_id: str, server: str | None = None) -> SendCall:
        """The ``acs send`` CLIENT span around one ACS request."""
        attributes: dict[str, str] = {"postbus.operation_id": operation_id}
        if server:
            attributes["server.address"] = server
        return SendCall(self, self.tracer.start_span("acs send", kind=SpanKind.CLIENT, attributes=attributes))

    def record_accepted(self, first_enqueued: datetime | None, *, event_type: str, tenant: str) -> None:
        """ACS accepted an email: record the end-to-end latency from the event's first enqueue."""
        if first_enqueued is None:
            return
        latency_ms = max(0.0, (datetime.now(UTC) - first_enqueued).total_seconds() * 1000)
        self.e2e_latency.record(
            latency_ms,
            {
                "type": event_type,
                "tenant": tenant,
                "slo_met": "true" if latency_ms <= SLO_SECONDS * 1000 else "false",
            },
        )

    def record_throttle(self) -> None:
        """ACS answered 429."""
        self.throttle_events.add(1)

    # ---- producer side ---------------------------------------------------------------------------

    def publishing(self, queue: str) -> PublishTrace:
        """Producer spans for one publish call (see :class:`PublishTrace`)."""
        return PublishTrace(self, queue)

    # ---- gauges ----------------------------------------------------------------------------------

    def watch(
        self, *, send_rate: Callable[[], float], breaker_state: Callable[[], int]
    ) -> Callable[[], None]:
        """Observe a worker's gate rate and breaker state; returns the function that stops it."""
        watched = _Watched(send_rate, breaker_state)
        with self._lock:
            self._watched.append(watched)

        def unwatch() -> None:
            with self._lock:
                if watched in self._watched:
                    self._watched.remove(watched)

        return unwatch

    def _observe_send_rate(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            rates = [watched.send_rate() for watched in self._watched]
        # "Unlimited" (no quota configured) has no number to chart.
        return [Observation(rate) for rate in rates if math.isfinite(rate)]

    def _observe_inflight(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.inflight_count)]

    def _observe_breaker(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(watched.breaker_state()) for watched in self._watched]

    def shutdown(self) -> None:
        """Flush and stop the providers this object created (nothing for providers passed in)."""
        for stop in self._shutdown:
            stop()


# ---- logs ----------------------------------------------------------------------------------------

#: Keys of a structlog event dict that are not fields of the line (or are carried otherwise).
_NOT_FIELDS: Final = frozenset(
    {"event", "_record", "_from_structlog", "exc_info", "stack_info", "timestamp", "level", "logger"}
)
_SEVERITY: Final = (
    (logging.ERROR, SeverityNumber.ERROR, "ERROR"),
    (logging.WARNING, SeverityNumber.WARN, "WARN"),
    (logging.INFO, SeverityNumber.INFO, "INFO"),
    (logging.NOTSET, SeverityNumber.DEBUG, "DEBUG"),
)


#: What every secret pattern of :func:`postbus.logs.redact` needs; most values (ids, names) have none.
_MAY_NEED_REDACTING: Final = re.compile(r"[=@]|(?i:bearer|hmac)")


def _attribute(value: object) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    return redact(text) if _MAY_NEED_REDACTING.search(text) else text


def log_fields(record: logging.LogRecord) -> tuple[str, dict[str, str | int | float | bool]]:
    """The body and attributes a log record is exported with: the event name and its redacted fields."""
    message = record.msg
    attributes: dict[str, str | int | float | bool] = {}
    if isinstance(message, dict):  # a structlog line: the event dict, before rendering
        body = redact(str(message.get("event", "")))
        for key, value in message.items():
            if key not in _NOT_FIELDS and value is not None:
                attributes[str(key)] = _attribute(value)
    else:
        body = redact(record.getMessage())
    attributes["logger"] = record.name
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        attributes["exception.type"] = type(error).__qualname__
        attributes["exception.message"] = redact(str(error))[:_MAX_EXCEPTION_TEXT]
    return body, attributes


class OtelLogHandler(logging.Handler):
    """Forwards standard-library records (structlog's included) to an OpenTelemetry logger provider.

    A structlog line arrives as its event dict; the event name becomes the body (``message`` in
    Application Insights) and every field an attribute (``customDimensions``), redacted like the
    JSON line on stderr. Records are emitted in the caller's context, so a line written inside a
    span carries its trace and span id (``operation_Id``/``operation_ParentId``).
    """

    def __init__(self, provider: LoggerProvider, *, level: int = logging.NOTSET) -> None:
        super().__init__(level=level)
        self._provider = provider
        self.set_name(LOG_HANDLER_NAME)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_UNBRIDGED):
            return
        try:
            body, attributes = log_fields(record)
            severity, text = next(
                (number, name) for floor, number, name in _SEVERITY if record.levelno >= floor
            )
            self._provider.get_logger(record.name).emit(
                LogRecord(
                    timestamp=int(record.created * 1e9),
                    context=otel_context.get_current(),
                    severity_text=text,
                    severity_number=severity,
                    body=body,
                    attributes=attributes,
                )
            )
        except Exception:  # a telemetry failure must never break the caller's logging
            self.handleError(record)


def install_log_handler(provider: LoggerProvider) -> OtelLogHandler:
    """Attach an :class:`OtelLogHandler` to the root logger (replacing an earlier one)."""
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == LOG_HANDLER_NAME]:
        root.removeHandler(existing)
    handler = OtelLogHandler(provider)
    root.addHandler(handler)
    return handler


# ---- configuration -------------------------------------------------------------------------------

_current: Telemetry | None = None
_configured: Telemetry | None = None
_state_lock = threading.Lock()


def current_telemetry() -> Telemetry:
    """The process's telemetry: what :func:`configure_telemetry` set, else one on the global providers."""
    global _current
    if _current is None:
        with _state_lock:
            if _current is None:
                # The API's proxies turn into the real providers whenever they are set.
                _current = Telemetry(
                    tracer_provider=trace.get_tracer_provider(), meter_provider=metrics.get_meter_provider()
                )
    return _current


def set_current_telemetry(telemetry: Telemetry | None) -> Telemetry | None:
    """Replace the process's telemetry (tests); returns the previous one. ``None`` resets to the default."""
    global _current
    with _state_lock:
        previous, _current = _current, telemetry
    return previous


def _resource(settings: Settings) -> Resource:
    from opentelemetry.sdk.resources import Resource

    return Resource(
        {
            "service.name": settings.service_name,
            "service.instance.id": settings.instance_id,
            "deployment.environment": settings.environment,
            "deployment.environment.name": settings.environment,
        }
    )


def choose_exporter(settings: Settings) -> Exporter:
    """Azure Monitor if its connection string is set, else OTLP if an endpoint is, else nothing."""
    if settings.applicationinsights_connection_string is not None:
        return "azure_monitor"
    if settings.otel_exporter_otlp_endpoint:
        return "otlp"
    return "none"


def configure_telemetry(
    settings: Settings,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    logger_provider: LoggerProvider | None = None,
) -> Telemetry:
    """Set up tracing, metrics and log export for this process; call once, at start, from each entry point.

    With providers passed in (tests), they are used as they are: nothing is exported and the
    OpenTelemetry globals are not touched. Otherwise the exporter follows :func:`choose_exporter`,
    the global providers are set, and later calls return the same object (globals are set once).
    """
    global _configured
    if tracer_provider is not None or meter_provider is not None or logger_provider is not None:
        telemetry = Telemetry(
            tracer_provider=tracer_provider or trace.NoOpTracerProvider(),
            meter_provider=meter_provider or metrics.NoOpMeterProvider(),
        )
        if logger_provider is not None:
            install_log_handler(logger_provider)
        set_current_telemetry(telemetry)
        return telemetry
    with _state_lock:
        if _configured is None:
            exporter = choose_exporter(settings)
            resource = _resource(settings)
            if exporter == "azure_monitor":
                _configured = _azure_monitor(settings, resource)
            elif exporter == "otlp":
                _configured = _otlp(settings, resource)
            else:
                _configured = _local(resource)
        configured = _configured
    set_current_telemetry(configured)
    return configured


def _local(resource: Resource) -> Telemetry:
    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.trace import TracerProvider

    tracer_provider = TracerProvider(resource=resource)
    meter_provider = MeterProvider(resource=resource, exemplar_filter=AlwaysOffExemplarFilter())
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return Telemetry(tracer_provider=tracer_provider, meter_provider=meter_provider, exporter="none")


def _otlp(settings: Settings, resource: Resource) -> Telemetry:
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk._logs import LoggerProvider as SdkLoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    base = (settings.otel_exporter_otlp_endpoint or "").rstrip("/")
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base}/v1/traces")))
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=f"{base}/v1/metrics"))],
    )
    logger_provider = SdkLoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(
        BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{base}/v1/logs"))
    )
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    set_logger_provider(logger_provider)
    install_log_handler(logger_provider)
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporter="otlp",
        shutdown=(tracer_provider.shutdown, meter_provider.shutdown, logger_provider.shutdown),
    )


def _azure_monitor(settings: Settings, resource: Resource) -> Telemetry:
    from azure.monitor.opentelemetry import configure_azure_monitor
    from opentelemetry._logs import get_logger_provider

    assert settings.applicationinsights_connection_string is not None
    connection_string = settings.applicationinsights_connection_string.get_secret_value()
    configure_azure_monitor(
        connection_string=connection_string,
        resource=resource,
        # The distro's own logging handler would export each structlog line as the repr of its event
        # dict (unredacted, no customDimensions), and its ``disable_logging`` keyword is overwritten
        # from OTEL_LOGS_EXPORTER (1.8.11). So its handler goes on a logger nothing writes to, and our
        # bridge on the root logger feeds the distro's log pipeline instead.
        logger_name=_DISTRO_LOGGER,
        # The Service Bus SDK's own spans would duplicate ours and add a second (bytes) traceparent.
        instrumentation_options={"azure_sdk": {"enabled": False}},
    )
    logger_provider = get_logger_provider()
    install_log_handler(logger_provider)
    tracer_provider = trace.get_tracer_provider()
    meter_provider = metrics.get_meter_provider()
    stoppers: list[Callable[[], object]] = []
    for provider in (logger_provider, tracer_provider, meter_provider):
        stop = getattr(provider, "shutdown", None)
        if callable(stop):
            stoppers.append(stop)
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporter="azure_monitor",
        shutdown=stoppers,
    )
