"""The worker's ACS calls, end to end, as Application Insights dependencies on the ACS host.

Producer -> emulated Service Bus -> worker -> emulated ACS, through the real SDKs, on in-memory
exporters; each ``acs send`` span is then converted with the Azure Monitor exporter's own (pure)
conversion function, which is what decides the dependency's type, target and result code.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.monitor.opentelemetry.exporter.export.trace._exporter import _convert_span_to_envelope

from postbus.emulators.acs_email import EmailEmulator
from postbus.events import parse_event
from postbus.producers.publisher import Publisher
from postbus.settings import Settings
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import eventually, running
from tests.unit.telemetry.capture import Captured, captured_telemetry

_renderer = TemplateRenderer()


def _event(event_id: str) -> Any:
    return parse_event(
        {
            "id": event_id,
            "type": "order.confirmation",
            "tenant": "contoso",
            "to": ["jane.doe@example.com"],
            "sender": "orders",
            "data": _renderer.sample_data("order.confirmation"),
        }
    )


@pytest.fixture
def captured(settings: Settings) -> Iterator[Captured]:
    with captured_telemetry(settings) as telemetry:
        yield telemetry


@pytest.fixture
async def traced_worker(settings: Settings, captured: Captured) -> AsyncIterator[Worker]:
    async with running(Worker(settings, telemetry=captured.telemetry)) as started:
        yield started


def _sends(captured: Captured) -> list[Any]:
    return captured.spans("acs send")


async def test_every_acs_call_is_an_http_dependency_with_its_status(
    traced_worker: Worker, publisher: Publisher, acs: EmailEmulator, captured: Captured
) -> None:
    # Given one event ACS throttles once before accepting it
    acs.faults.throttle_next(1, retry_after=1)
    # When the worker has sent it
    await publisher.publish(_event("dep-1"))
    sends = await eventually(
        lambda: [s for s in _sends(captured) if s.attributes.get("http.response.status_code") == 202]
    )
    # Then each ACS request is a dependency on the emulator's host and port, with ACS's status
    endpoint = urlsplit(acs.endpoint)
    throttled = [s for s in _sends(captured) if s.attributes.get("http.response.status_code") == 429]
    assert throttled, [dict(s.attributes) for s in _sends(captured)]
    for span, status, success in ((sends[0], "202", True), (throttled[0], "429", False)):
        envelope = _convert_span_to_envelope(span).data.base_data
        assert envelope.type == "HTTP"
        assert envelope.target == f"{endpoint.hostname}:{endpoint.port}"
        assert envelope.name == "POST /emails:send"
        assert envelope.data == f"{acs.endpoint}/emails:send"
        assert (envelope.result_code, envelope.success) == (status, success)
        assert envelope.properties["postbus.operation_id"] == span.attributes["postbus.operation_id"]
