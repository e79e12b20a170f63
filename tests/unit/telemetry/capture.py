"""In-memory OpenTelemetry for tests: spans, metrics and log records, without touching the globals.

The OpenTelemetry globals can be set only once per process, so tests never set them: each test gets
its own providers, passed to ``configure_telemetry`` (which then leaves the globals alone and makes
them the process's current telemetry until the test ends).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from postbus.settings import Settings, load_settings
from postbus.telemetry import LOG_HANDLER_NAME, Telemetry, configure_telemetry, set_current_telemetry

__all__ = ["Captured", "MetricPoint", "captured_telemetry"]


@dataclass(frozen=True)
class MetricPoint:
    """One data point of one metric: its attributes and value (sum, gauge value or histogram count)."""

    name: str
    attributes: dict[str, Any]
    value: float
    sum: float | None = None


@dataclass
class Captured:
    """What one test's telemetry recorded."""

    telemetry: Telemetry
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader
    log_exporter: InMemoryLogRecordExporter

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        found = list(self.span_exporter.get_finished_spans())
        return [span for span in found if name is None or span.name == name]

    def metrics(self) -> list[MetricPoint]:
        data = self.metric_reader.get_metrics_data()
        points: list[MetricPoint] = []
        if data is None:
            return points
        for resource_metrics in data.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        attributes = dict(point.attributes or {})
                        if hasattr(point, "count"):  # histogram
                            points.append(MetricPoint(metric.name, attributes, point.count, point.sum))
                        else:
                            points.append(MetricPoint(metric.name, attributes, point.value))
        return points

    def metric(self, name: str) -> list[MetricPoint]:
        return [point for point in self.metrics() if point.name == name]

    def finished_logs(self) -> list[Any]:
        """``ReadableLogRecord`` objects, as an exporter receives them."""
        return list(self.log_exporter.get_finished_logs())

    def log_records(self) -> list[Any]:
        return [item.log_record for item in self.finished_logs()]


@contextmanager
def captured_telemetry(settings: Settings | None = None) -> Iterator[Captured]:
    """Telemetry on in-memory exporters for the duration of the block (the process's current one)."""
    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    log_exporter = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(log_exporter))
    previous = set_current_telemetry(None)
    telemetry = configure_telemetry(
        settings or load_settings(),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        logger_provider=logger_provider,
    )
    try:
        yield Captured(telemetry, span_exporter, reader, log_exporter)
    finally:
        set_current_telemetry(previous)
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == LOG_HANDLER_NAME]:
            root.removeHandler(handler)
        tracer_provider.shutdown()
        meter_provider.shutdown()
        logger_provider.shutdown()
