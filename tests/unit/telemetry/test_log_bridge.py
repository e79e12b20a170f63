"""Log records reach OpenTelemetry (and so Application Insights) with the structlog fields as attributes.

The last step, from OpenTelemetry records to Application Insights envelopes, is the Azure Monitor
exporter's own conversion function (private, but pure: no network), so the test shows the exact
``message`` and ``customDimensions`` the runbook's queries read.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from azure.monitor.opentelemetry.exporter.export.logs._exporter import _convert_log_to_envelope
from azure.monitor.opentelemetry.exporter.export.trace._exporter import _convert_span_to_envelope

from postbus.logs import configure_logging, get_logger
from tests.unit.telemetry.capture import captured_telemetry

SECRET = "c2VjcmV0LWtleS12YWx1ZQ=="


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(fmt="json", stream=buffer)
    yield buffer
    logging.getLogger().handlers = [h for h in logging.getLogger().handlers if h.get_name() != "postbus"]


def test_the_canonical_line_carries_the_consumer_span_and_its_fields_become_custom_dimensions(
    stream: io.StringIO,
) -> None:
    with captured_telemetry() as captured:
        telemetry = captured.telemetry
        with telemetry.processing(
            queue="notifications", properties={}, message_id="order-1", delivery_count=0
        ) as processing:
            get_logger("postbus.worker").info(
                "message processed",
                outcome="dead_lettered",
                message_id="order-1",
                event_id="order-1",
                type="order.confirmation",
                tenant="contoso",
                attempt=0,
                recipient_domain="example.com",
                reason="RecipientRejected",
                description=f"ACS refused jane.doe@example.com (accesskey={SECRET})",
            )
            processing.finish(outcome="dead_lettered", event_id="order-1", reason="RecipientRejected")
            span_context = processing.span.get_span_context()
    (readable,) = [r for r in captured.finished_logs() if r.log_record.body == "message processed"]
    record = readable.log_record
    # The OpenTelemetry record is in the consumer span and has every field, redacted.
    assert record.trace_id == span_context.trace_id
    assert record.span_id == span_context.span_id
    attributes = dict(record.attributes or {})
    assert attributes["event_id"] == "order-1"
    assert attributes["attempt"] == 0
    assert attributes["recipient_domain"] == "example.com"
    assert attributes["description"].startswith("ACS refused j***@example.com (accesskey=***")
    assert SECRET not in attributes["description"]
    # The stderr JSON line says the same, with the same trace id.
    (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert line["trace_id"] == format(span_context.trace_id, "032x")
    assert line["description"] == attributes["description"]
    # Application Insights: message is the event name, the fields are customDimensions.
    envelope = _convert_log_to_envelope(readable)
    data = envelope.data.base_data
    assert envelope.tags["ai.operation.id"] == format(span_context.trace_id, "032x")
    assert data.message == "message processed"
    for name in ("outcome", "event_id", "type", "tenant", "attempt", "recipient_domain", "reason"):
        assert name in data.properties, name
    assert data.properties["outcome"] == "dead_lettered"
    assert SECRET not in json.dumps(data.properties)


def test_records_from_other_libraries_are_redacted_and_the_exporters_own_are_not_forwarded() -> None:
    with captured_telemetry() as captured:
        logging.getLogger("azure.servicebus").warning("connect failed: SharedAccessKey=%s", SECRET)
        logging.getLogger("azure.monitor.opentelemetry.exporter").warning("transmission failed")
        logging.getLogger("opentelemetry.sdk").warning("dropped")
    bodies = [record.body for record in captured.log_records()]
    assert bodies == ["connect failed: SharedAccessKey=***"]


def test_an_exception_on_a_log_line_is_sent_as_type_and_redacted_message() -> None:
    with captured_telemetry() as captured:
        try:
            raise ValueError(f"Bearer {SECRET}")
        except ValueError:
            get_logger("postbus.worker").exception("receive failed")
    (record,) = captured.log_records()
    attributes = dict(record.attributes or {})
    assert attributes["exception.type"] == "ValueError"
    assert SECRET not in str(attributes)


def test_the_consumer_span_is_a_request_whose_custom_dimensions_hold_the_postbus_attributes() -> None:
    with (
        captured_telemetry() as captured,
        captured.telemetry.processing(
            queue="notifications", properties={}, message_id="order-1", delivery_count=1
        ) as processing,
    ):
        processing.finish(
            outcome="sent",
            event_id="order-1",
            event_type="order.confirmation",
            tenant="contoso",
            attempt=1,
            operation_id="6f0b7c8e-0000-5000-8000-000000000001",
            recipient_domain="example.com",
        )
    (span,) = captured.spans("notifications process")
    envelope = _convert_span_to_envelope(span)
    data = envelope.data.base_data
    assert envelope.data.base_type == "RequestData"
    assert data.name == "notifications process"
    assert data.success
    assert data.properties["postbus.event_id"] == "order-1"
    assert data.properties["postbus.message_id"] == "order-1"
    assert data.properties["postbus.operation_id"] == "6f0b7c8e-0000-5000-8000-000000000001"
    assert data.properties["postbus.outcome"] == "sent"
    # messaging.* is a standard prefix the exporter keeps out of customDimensions.
    assert not any(key.startswith("messaging.") for key in data.properties)


def test_the_acs_call_is_a_dependency_named_acs_send() -> None:
    with captured_telemetry() as captured, captured.telemetry.acs_send(operation_id="op-1") as call:
        call.result = "accepted"
    (span,) = captured.spans("acs send")
    envelope = _convert_span_to_envelope(span)
    assert envelope.data.base_type == "RemoteDependencyData"
    assert envelope.data.base_data.name == "acs send"
    assert envelope.data.base_data.properties["postbus.operation_id"] == "op-1"
    assert envelope.data.base_data.properties["postbus.acs.result"] == "accepted"
