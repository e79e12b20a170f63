"""``configure_telemetry``: which exporter runs, decided once per process from the settings."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from opentelemetry import metrics, trace
from opentelemetry._logs import LoggerProvider

from postbus.telemetry.bridge import install_log_handler
from postbus.telemetry.instruments import Exporter, Telemetry
from postbus.telemetry.unrecorded import UnrecordedTracerProvider

if TYPE_CHECKING:
    from opentelemetry.sdk.resources import Resource

    from postbus.settings import Settings

__all__ = [
    "Exporter",
    "acs_endpoint",
    "choose_exporter",
    "configure_telemetry",
    "current_telemetry",
    "live_metrics_endpoint",
    "set_current_telemetry",
]

#: Where the Azure Monitor distro may put its own logging handler: a logger nothing writes to.
_DISTRO_LOGGER: Final = "postbus.telemetry.unused-distro-handler"


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


def acs_endpoint(settings: Settings) -> str | None:
    """The ACS endpoint the settings send to (the endpoint part of a connection string, never its key)."""
    if settings.acs_endpoint:
        return settings.acs_endpoint
    if settings.acs_connection_string is not None:
        fields = _fields(settings.acs_connection_string.get_secret_value())
        return fields.get("endpoint") or None
    return None


def live_metrics_endpoint(connection_string: str) -> str | None:
    """The ``LiveEndpoint`` an Application Insights connection string names, if any.

    The connection strings Azure hands out name one. Without it the exporter falls back to a
    global live metrics host; where that cannot be reached (a regional or sovereign cloud, a
    private network, a local stand-in) every process would log an error with a traceback every
    few seconds, so live metrics run only when the connection string asks for them.
    """
    return _fields(connection_string).get("liveendpoint") or None


def _fields(connection_string: str) -> dict[str, str]:
    """``Key=Value;...`` as a dict with lower-case keys (values may contain ``=``)."""
    fields: dict[str, str] = {}
    for part in connection_string.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            fields[key.strip().lower()] = value.strip()
    return fields


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
            acs_endpoint=acs_endpoint(settings),
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
                _configured = _local(settings, resource)
        configured = _configured
    set_current_telemetry(configured)
    return configured


def _local(settings: Settings, resource: Resource) -> Telemetry:
    # Nothing exports, so nothing is recorded: spans are born non-recording (no attributes, events
    # or processors) but still get ids, so ``traceparent`` travels and log lines carry a trace_id;
    # metrics go to the no-op provider instead of aggregating for a reader that does not exist.
    tracer_provider = UnrecordedTracerProvider(resource)
    meter_provider = metrics.NoOpMeterProvider()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    return Telemetry(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        exporter="none",
        acs_endpoint=acs_endpoint(settings),
    )


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
        acs_endpoint=acs_endpoint(settings),
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
        # Deliberately, not by the distro's default (on): see live_metrics_endpoint.
        enable_live_metrics=live_metrics_endpoint(connection_string) is not None,
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
        acs_endpoint=acs_endpoint(settings),
    )
