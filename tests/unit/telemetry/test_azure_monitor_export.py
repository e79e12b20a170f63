"""Through the real Azure Monitor distro to a stand-in ingestion endpoint on 127.0.0.1.

A fresh interpreter configures telemetry with a connection string whose ingestion endpoint is a
small HTTP server in this test, records one dead-lettered message (consumer span, metrics and the
canonical line), and shuts down, which flushes. The test then reads the Application Insights
envelopes that arrived: one ``message processed`` line with its fields as ``customDimensions``
(redacted), one request for the consumer span, and the ``postbus`` metrics.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

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


class _Ingestion(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        text = body.decode()
        items = (
            json.loads(text)
            if text.startswith("[")
            else [json.loads(line) for line in text.splitlines() if line]
        )
        self.received.extend(items)
        answer = json.dumps({"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def ingestion() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Ingestion", (_Ingestion,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_the_canonical_line_span_and_metrics_arrive_as_application_insights_telemetry(
    ingestion: tuple[str, list[dict[str, Any]]],
) -> None:
    endpoint, received = ingestion
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("POSTBUS_", "APPLICATIONINSIGHTS_", "OTEL_"))
    }
    env |= {
        "APPLICATIONINSIGHTS_CONNECTION_STRING": (
            f"InstrumentationKey=00000000-0000-4000-8000-000000000000;IngestionEndpoint={endpoint};"
            f"LiveEndpoint={endpoint}"
        ),
        "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
        "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "otel",
        # The distro's default sampler admits ~5 new traces/s, measured from process start: a process
        # this short would keep almost none.
        "OTEL_TRACES_SAMPLER": "always_on",
        "POSTBUS_SERVICE_NAME": "postbus-worker",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    by_type: dict[str, list[dict[str, Any]]] = {}
    for item in received:
        by_type.setdefault(item["data"]["baseType"], []).append(item)
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
    metrics = {
        metric["name"]: item["data"]["baseData"].get("properties", {})
        for item in by_type["MetricData"]
        for metric in item["data"]["baseData"]["metrics"]
    }
    assert metrics["postbus.messages.processed"] == {
        "outcome": "dead_lettered",
        "type": "order.confirmation",
        "tenant": "contoso",
    }
    assert metrics["postbus.deadletters"] == {"reason": "RecipientRejected"}
    assert "jane.doe" not in json.dumps(received)
