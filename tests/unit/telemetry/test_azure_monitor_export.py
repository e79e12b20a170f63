"""Through the real Azure Monitor distro to a stand-in ingestion endpoint on 127.0.0.1.

A fresh interpreter configures telemetry with a connection string whose ingestion endpoint is a
small HTTP server in this test, records one dead-lettered message (consumer span, metrics and the
canonical line), and shuts down, which flushes. The test then reads the Application Insights
envelopes that arrived: one ``message processed`` line with its fields as ``customDimensions``
(redacted), one request for the consumer span, and the ``postbus`` metrics.
"""

from __future__ import annotations

import json
import textwrap

from tests.unit.telemetry.ingestion import run_child, stand_in_ingestion

_CHILD = textwrap.dedent(
    """
    import io
    from postbus.logs import configure_logging, get_logger
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry

    configure_logging(fmt="json", stream=io.StringIO())
    telemetry = configure_telemetry(load_settings())
    properties = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with telemetry.processing(
        queue="notifications", properties=properties, message_id="o-1", delivery_count=0
    ) as p:
        p.finish(outcome="dead_lettered", event_id="o-1", event_type="order.confirmation", tenant="contoso",
                 attempt=0, reason="RecipientRejected")
        get_logger("postbus.worker").info(
            "message processed", outcome="dead_lettered", event_id="o-1", type="order.confirmation",
            tenant="contoso", attempt=0, reason="RecipientRejected", recipient_domain="example.com",
            description="ACS refused jane.doe@example.com",
        )
    telemetry.shutdown()
    """
)


def test_the_canonical_line_span_and_metrics_arrive_as_application_insights_telemetry() -> None:
    with stand_in_ingestion() as ingestion:
        endpoint = ingestion.endpoint
        done = run_child(
            _CHILD,
            f"InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint={endpoint};"
            f"LiveEndpoint={endpoint}",
            POSTBUS_SERVICE_NAME="postbus-worker",
        )
    assert done.returncode == 0, done.stderr
    received = ingestion.envelopes
    by_type = ingestion.by_type()
    # One log line: message = event name, fields = customDimensions, in the span's operation
    (line,) = by_type["MessageData"]
    data = line["data"]["baseData"]
    assert data["message"] == "message processed"
    assert data["properties"]["event_id"] == "o-1"
    assert data["properties"]["outcome"] == "dead_lettered"
    assert data["properties"]["recipient_domain"] == "example.com"
    assert data["properties"]["description"] == "ACS refused j***@example.com"
    assert line["tags"]["ai.cloud.role"] == "postbus-worker"
    # The consumer span is a request in the same operation
    (request,) = by_type["RequestData"]
    assert request["data"]["baseData"]["name"] == "notifications process"
    assert request["data"]["baseData"]["properties"]["postbus.dead_letter_reason"] == "RecipientRejected"
    assert request["tags"]["ai.operation.id"] == line["tags"]["ai.operation.id"]
    assert request["tags"]["ai.operation.id"] == "0af7651916cd43dd8448eb211c80319c"
    assert request["tags"]["ai.operation.parentId"] == "b7ad6b7169203331"
    # And the postbus metrics with their dimensions
    metrics = ingestion.metrics()
    assert metrics["postbus.messages.processed"] == {
        "outcome": "dead_lettered",
        "type": "order.confirmation",
        "tenant": "contoso",
    }
    assert metrics["postbus.deadletters"] == {"reason": "RecipientRejected"}
    assert "jane.doe" not in json.dumps(received)
