"""The ``acs send`` span's HTTP client attributes, and the messaging attributes of the other spans.

Spans are converted with the Azure Monitor exporter's own (pure) conversion function, so the tests
show the dependency type, target and name Application Insights stores.
"""

from __future__ import annotations

import pytest
from azure.monitor.opentelemetry.exporter.export.trace._exporter import _convert_span_to_envelope

from postbus.events import parse_event
from postbus.settings import load_settings
from postbus.telemetry import acs_endpoint, live_metrics_endpoint
from postbus.telemetry.spans import acs_request_attributes
from tests.unit.telemetry.capture import captured_telemetry


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        (
            "https://contoso-mail.communication.azure.com/",
            (
                "contoso-mail.communication.azure.com",
                443,
                "https://contoso-mail.communication.azure.com/emails:send",
            ),
        ),
        ("http://127.0.0.1:8025", ("127.0.0.1", 8025, "http://127.0.0.1:8025/emails:send")),
        (
            "contoso.unitedstates.communication.azure.com",
            (
                "contoso.unitedstates.communication.azure.com",
                443,
                "https://contoso.unitedstates.communication.azure.com/emails:send",
            ),
        ),
        (
            "https://user:secret@acs.example.com:8443/x?y=1",
            ("acs.example.com", 8443, "https://acs.example.com:8443/emails:send"),
        ),
    ],
)
def test_request_attributes_name_the_host_port_and_url(endpoint: str, expected: tuple[str, int, str]) -> None:
    attributes = acs_request_attributes(endpoint)
    assert (attributes["server.address"], attributes["server.port"], attributes["url.full"]) == expected
    assert attributes["http.request.method"] == "POST"
    assert "secret" not in str(attributes)


@pytest.mark.parametrize("endpoint", [None, "", "https://"])
def test_without_a_usable_endpoint_there_are_no_request_attributes(endpoint: str | None) -> None:
    assert acs_request_attributes(endpoint) == {}


def test_a_duplicate_send_is_a_successful_409_and_a_timeout_names_its_class() -> None:
    with captured_telemetry() as captured:
        with captured.telemetry.acs_send(operation_id="op-1", server="http://127.0.0.1:8025") as call:
            call.result = "duplicate"
        with (
            pytest.raises(TimeoutError),
            captured.telemetry.acs_send(operation_id="op-2", server="http://127.0.0.1:8025"),
        ):
            raise TimeoutError("no answer from ACS")
    spans = {span.attributes["postbus.operation_id"]: span for span in captured.spans("acs send")}
    duplicate = _convert_span_to_envelope(spans["op-1"]).data.base_data
    timeout = _convert_span_to_envelope(spans["op-2"]).data.base_data
    assert (duplicate.type, duplicate.target, duplicate.result_code, duplicate.success) == (
        "HTTP",
        "127.0.0.1:8025",
        "409",
        True,
    )
    assert (timeout.result_code, timeout.success) == ("0", False)
    assert spans["op-2"].attributes["error.type"] == "TimeoutError"
    assert "http.response.status_code" not in spans["op-2"].attributes


def test_the_endpoint_comes_from_the_settings_and_never_the_key() -> None:
    key = "c2VjcmV0LWtleS12YWx1ZQ=="
    from_string = load_settings(
        acs_connection_string=f"endpoint=https://acs1.communication.azure.com/;accesskey={key}"
    )
    assert acs_endpoint(from_string) == "https://acs1.communication.azure.com/"
    assert acs_endpoint(load_settings(acs_endpoint="https://acs2.communication.azure.com")) == (
        "https://acs2.communication.azure.com"
    )
    assert acs_endpoint(load_settings()) is None
    with captured_telemetry(from_string) as captured, captured.telemetry.acs_send(operation_id="op-1"):
        pass
    (span,) = captured.spans("acs send")
    assert span.attributes["server.address"] == "acs1.communication.azure.com"
    assert key not in str(dict(span.attributes))


@pytest.mark.parametrize(
    ("connection_string", "expected"),
    [
        ("InstrumentationKey=k;IngestionEndpoint=https://in/;LiveEndpoint=https://live/", "https://live/"),
        ("instrumentationkey=k;liveendpoint=https://live/;", "https://live/"),
        ("InstrumentationKey=k;IngestionEndpoint=https://in/", None),
        ("InstrumentationKey=k;LiveEndpoint=", None),
    ],
)
def test_the_live_endpoint_is_read_from_the_connection_string(
    connection_string: str, expected: str | None
) -> None:
    assert live_metrics_endpoint(connection_string) == expected


def test_spans_use_the_current_messaging_operation_attributes() -> None:
    event = parse_event(
        {
            "id": "o-1",
            "type": "order.confirmation",
            "tenant": "contoso",
            "to": ["a@example.com"],
            "sender": "orders",
            "data": {},
        }
    )
    with captured_telemetry() as captured:
        publishing = captured.telemetry.publishing("notifications")
        properties = publishing.properties(event)
        publishing.finish({"o-1"})
        with captured.telemetry.processing(
            queue="notifications", properties=properties, message_id="o-1", delivery_count=0
        ):
            pass
    (producer,) = captured.spans("notifications publish")
    (consumer,) = captured.spans("notifications process")
    assert (
        producer.attributes["messaging.operation.type"],
        producer.attributes["messaging.operation.name"],
    ) == (
        "create",
        "publish",
    )
    assert (
        consumer.attributes["messaging.operation.type"],
        consumer.attributes["messaging.operation.name"],
    ) == (
        "process",
        "process",
    )
    # The deprecated attribute is gone, so a query on it finds nothing rather than half the spans.
    assert "messaging.operation" not in producer.attributes
    assert "messaging.operation" not in consumer.attributes
