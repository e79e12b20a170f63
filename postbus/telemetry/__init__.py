"""OpenTelemetry for Postbus: one ``configure_telemetry(settings)`` per process, spans and metrics on the hot path.

Which exporter runs is decided by the settings, once, at process start::

    telemetry = configure_telemetry(settings)   # "azure_monitor", "otlp" or "none"
    telemetry.exporter

* ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set: the Azure Monitor distro
  (``configure_azure_monitor``) exports traces, metrics and logs; log records reach its log pipeline
  through our own bridge (:class:`OtelLogHandler`) so the fields of each structlog line become
  ``customDimensions``. The distro's Azure SDK tracing is turned off: the Service Bus SDK
  would add its own ``b"traceparent"`` next to ours and open a receive span every idle second.
  Live metrics run only when the connection string names a ``LiveEndpoint``.
* ``OTEL_EXPORTER_OTLP_ENDPOINT`` set: OTLP/HTTP exporters for traces, metrics and logs.
* neither: nothing is recorded. Spans are non-recording (they cost next to nothing) but still
  carry trace ids and the sampled flag, so ``traceparent`` travels and log lines have
  ``trace_id`` (:mod:`postbus.telemetry.unrecorded`); metrics go to the no-op meter provider.

Tests pass their own providers (``InMemorySpanExporter``, ``InMemoryMetricReader``); then the
OpenTelemetry globals, which can be set only once per process, are left alone.

Spans (OTel messaging conventions): ``<queue> publish`` (PRODUCER) per published event, whose context
travels in the ``traceparent``/``tracestate``/``Diagnostic-Id`` application properties;
``<queue> process`` (CONSUMER) per received message, parented to that context; ``acs send``
(CLIENT, with the HTTP client attributes of ``POST <ACS endpoint>/emails:send``) beneath it.
Rendering has no span of its own: it is CPU work inside the consumer span, and a failure is on
that span as the ``TemplateError`` dead-letter reason. Metrics live under the meter ``postbus``; their names are a
contract with the workbook and alerts in ``infra/`` and the queries in ``docs/runbook.md``.
"""

from __future__ import annotations

from postbus.telemetry.bridge import LOG_HANDLER_NAME, OtelLogHandler, install_log_handler, log_fields
from postbus.telemetry.configure import (
    Exporter,
    acs_endpoint,
    choose_exporter,
    configure_telemetry,
    current_telemetry,
    live_metrics_endpoint,
    set_current_telemetry,
)
from postbus.telemetry.instruments import BREAKER_STATE_CODES, METER_NAME, SLO_SECONDS, TRACER_NAME, Telemetry
from postbus.telemetry.spans import (
    PROP_DIAGNOSTIC_ID,
    PROP_TRACEPARENT,
    PROP_TRACESTATE,
    Processing,
    PublishTrace,
    SendCall,
)

__all__ = [
    "BREAKER_STATE_CODES",
    "LOG_HANDLER_NAME",
    "METER_NAME",
    "PROP_DIAGNOSTIC_ID",
    "PROP_TRACEPARENT",
    "PROP_TRACESTATE",
    "SLO_SECONDS",
    "TRACER_NAME",
    "Exporter",
    "OtelLogHandler",
    "Processing",
    "PublishTrace",
    "SendCall",
    "Telemetry",
    "acs_endpoint",
    "choose_exporter",
    "configure_telemetry",
    "current_telemetry",
    "install_log_handler",
    "live_metrics_endpoint",
    "log_fields",
    "set_current_telemetry",
]
