"""configure_telemetry picks Azure Monitor, OTLP or nothing from the settings, without network access.

The OpenTelemetry globals can be set only once per process, and the Azure Monitor distro always sets
them, so each choice is made in a fresh interpreter. That interpreter reports the exporters hanging
off the global providers as JSON and leaves with ``os._exit`` before any exporter could flush; every
socket connect and name lookup it attempts is recorded (and refused), so the test proves that
configuring touched no network.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from postbus.settings import load_settings
from postbus.telemetry import choose_exporter, configure_telemetry, set_current_telemetry

ROOT = Path(__file__).resolve().parents[3]
APPINSIGHTS = (
    "InstrumentationKey=00000000-0000-4000-8000-000000000000;"
    "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/"
)

_PROBE = textwrap.dedent(
    """
    import json, logging, os, socket, sys

    attempts = []
    def refuse_connect(self, address, *args):
        attempts.append(repr(address))
        raise OSError("network disabled by the test")
    def refuse_lookup(host, *args, **kwargs):
        attempts.append(repr(host))
        raise OSError("network disabled by the test")
    socket.socket.connect = refuse_connect
    socket.socket.connect_ex = refuse_connect
    socket.getaddrinfo = refuse_lookup

    from opentelemetry import metrics, trace
    from opentelemetry._logs import get_logger_provider
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry

    def exporters(obj, depth=0, seen=None):
        seen = seen if seen is not None else set()
        if id(obj) in seen or depth > 8:
            return []
        seen.add(id(obj))
        name = type(obj).__name__
        if name.endswith("Exporter") and "Processor" not in name:
            return [name]
        found = []
        values = list(vars(obj).values()) if hasattr(obj, "__dict__") else []
        if isinstance(obj, (list, tuple)):
            values = list(obj)
        for value in values:
            if hasattr(value, "__dict__") or isinstance(value, (list, tuple)):
                found += exporters(value, depth + 1, seen)
        return found

    telemetry = configure_telemetry(load_settings())
    again = configure_telemetry(load_settings())
    tracer_provider = trace.get_tracer_provider()
    from azure.core.settings import settings as azure_settings
    span = telemetry.tracer.start_span("probe")
    child = telemetry.tracer.start_span("child", context=trace.set_span_in_context(span))
    parent_ctx, child_ctx = span.get_span_context(), child.get_span_context()
    report = {
        "meter_provider": type(metrics.get_meter_provider()).__name__,
        "span": {
            "recording": span.is_recording(),
            "trace_id_set": parent_ctx.is_valid,
            "sampled": parent_ctx.trace_flags.sampled,
            "child_same_trace": child_ctx.trace_id == parent_ctx.trace_id,
            "child_new_span": child_ctx.span_id != parent_ctx.span_id,
        },
        "exporter": telemetry.exporter,
        "same_object_on_second_call": again is telemetry,
        "tracer_provider": type(tracer_provider).__name__,
        "span_exporters": sorted(set(exporters(tracer_provider))),
        "metric_exporters": sorted(set(exporters(metrics.get_meter_provider()))),
        "log_exporters": sorted(set(exporters(get_logger_provider()))),
        "resource": {k: str(v) for k, v in tracer_provider.resource.attributes.items()},
        "log_handlers": [h.get_name() for h in logging.getLogger().handlers],
        "root_handler_types": [type(h).__name__ for h in logging.getLogger().handlers],
        "azure_sdk_tracing": azure_settings.tracing_implementation() is not None,
        "network_attempts": attempts,
    }
    sys.stdout.write(json.dumps(report))
    sys.stdout.flush()
    os._exit(0)  # no atexit flush: exporting is not what is being tested
    """
)


def _configure_in_fresh_process(extra_env: dict[str, str]) -> dict[str, Any]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTBUS_", "APPLICATIONINSIGHTS_", "OTEL_"))
    }
    env |= {
        "POSTBUS_SERVICE_NAME": "postbus-worker",
        "POSTBUS_ENVIRONMENT": "test",
        "POSTBUS_INSTANCE_ID": "replica-7",
        # The distro's defaults would ask the Azure VM metadata endpoint and send statsbeat.
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "PYTHONPATH": str(ROOT),
    } | extra_env
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _no_remote_network(attempts: list[str]) -> bool:
    return all("127.0.0.1" in attempt or "localhost" in attempt for attempt in attempts)


def test_an_application_insights_connection_string_selects_azure_monitor() -> None:
    report = _configure_in_fresh_process({"APPLICATIONINSIGHTS_CONNECTION_STRING": APPINSIGHTS})
    assert report["exporter"] == "azure_monitor"
    assert report["same_object_on_second_call"]
    assert report["tracer_provider"] == "TracerProvider"
    assert "AzureMonitorTraceExporter" in report["span_exporters"]
    assert "AzureMonitorMetricExporter" in report["metric_exporters"]
    assert report["log_exporters"] == ["AzureMonitorLogExporter"]
    # Only our bridge is on the root logger (the distro's handler would export each line unredacted,
    # as the repr of its event dict); the Service Bus SDK's own tracing stays off.
    assert report["root_handler_types"] == ["OtelLogHandler"]
    assert not report["azure_sdk_tracing"]
    assert report["resource"]["service.name"] == "postbus-worker"
    assert report["resource"]["service.instance.id"] == "replica-7"
    assert report["resource"]["deployment.environment"] == "test"
    assert _no_remote_network(report["network_attempts"]), report["network_attempts"]


def test_an_otlp_endpoint_selects_the_otlp_http_exporters() -> None:
    report = _configure_in_fresh_process({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert report["exporter"] == "otlp"
    assert report["span_exporters"] == ["OTLPSpanExporter"]
    assert report["metric_exporters"] == ["OTLPMetricExporter"]
    assert report["log_exporters"] == ["OTLPLogExporter"]
    assert "postbus-otel" in report["log_handlers"]
    assert report["resource"]["service.name"] == "postbus-worker"
    assert report["network_attempts"] == []


def test_without_either_nothing_is_exported_but_spans_still_get_trace_ids() -> None:
    report = _configure_in_fresh_process({})
    assert report["exporter"] == "none"
    # Spans are not recorded, but they still get ids (and the sampled flag, so that an exporting
    # process downstream records its part of the trace); metrics cost nothing.
    assert report["tracer_provider"] == "UnrecordedTracerProvider"
    assert report["meter_provider"] == "NoOpMeterProvider"
    assert report["span"]["recording"] is False
    assert report["span"]["trace_id_set"]
    assert report["span"]["sampled"]
    assert report["span"]["child_same_trace"]
    assert report["span"]["child_new_span"]
    assert report["span_exporters"] == []
    assert report["metric_exporters"] == []
    assert report["log_exporters"] == []
    assert "postbus-otel" not in report["log_handlers"]
    assert report["resource"]["deployment.environment"] == "test"
    assert report["network_attempts"] == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"applicationinsights_connection_string": APPINSIGHTS, "otel_exporter_otlp_endpoint": "http://x"},
            "azure_monitor",
        ),
        ({"otel_exporter_otlp_endpoint": "http://127.0.0.1:4318"}, "otlp"),
        ({}, "none"),
    ],
)
def test_azure_monitor_wins_over_otlp_and_nothing_is_the_default(
    overrides: dict[str, str], expected: str
) -> None:
    assert choose_exporter(load_settings(**overrides)) == expected


def test_providers_passed_in_are_used_as_they_are_and_the_globals_are_left_alone() -> None:
    before = (trace.get_tracer_provider(), metrics.get_meter_provider())
    tracer_provider, meter_provider = TracerProvider(), MeterProvider()
    previous = set_current_telemetry(None)
    try:
        telemetry = configure_telemetry(
            load_settings(applicationinsights_connection_string=APPINSIGHTS),
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
        )
        assert telemetry.exporter == "none"
        assert telemetry.tracer_provider is tracer_provider
        assert (trace.get_tracer_provider(), metrics.get_meter_provider()) == before
    finally:
        set_current_telemetry(previous)
        meter_provider.shutdown()
