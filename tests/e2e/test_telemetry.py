"""Telemetry end to end: producer -> emulated Service Bus -> worker -> emulated ACS, on in-memory exporters.

The worker runs on the test's event loop with its own in-memory providers (the OpenTelemetry globals
are never set by tests), and everything crosses real sockets through the real Azure SDKs.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import parse_event
from postbus.logs import configure_logging
from postbus.producers.publisher import Publisher
from postbus.settings import Settings, load_settings
from postbus.worker.breaker import CircuitBreaker
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.support import SENDERS, eventually, running
from tests.unit.telemetry.capture import Captured, captured_telemetry

_renderer = TemplateRenderer()

#: Known secret values: none of them may show up in a log line, span attribute or span event.
SAS_KEY = "S4sKeyValueThatMustNotLeak0123456789abcdef="
ACS_KEY = "QUNTIGtleSB0aGF0IG11c3Qgbm90IGxlYWsgMDEyMzQ1Njc4OQ=="
APPINSIGHTS_KEY = "5f0b7c8e-1111-4222-8333-944455556666"
APPINSIGHTS = f"InstrumentationKey={APPINSIGHTS_KEY};IngestionEndpoint=http://127.0.0.1:9/"
RECIPIENT = "jane.doe@example.com"


def _event(event_id: str, **overrides: Any) -> Any:
    document: dict[str, Any] = {
        "id": event_id,
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": [f"Jane Doe <{RECIPIENT}>"],
        "sender": "orders",
        "locale": "en",
        "data": _renderer.sample_data("order.confirmation"),
    }
    document.update(overrides)
    return parse_event(document)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buffer)
    yield buffer
    logging.getLogger().handlers = [h for h in logging.getLogger().handlers if h.get_name() != "postbus"]


@pytest.fixture
async def servicebus() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator() as emulator:
        yield emulator


@pytest.fixture
async def acs(servicebus: ServiceBusEmulator) -> AsyncIterator[EmailEmulator]:
    # ACS reports every accepted send to email-events, so the report consumer's telemetry shows too.
    async with EmailEmulator(access_key=ACS_KEY, report_servicebus=servicebus.connection_string) as emulator:
        yield emulator


@pytest.fixture
def settings(servicebus: ServiceBusEmulator, acs: EmailEmulator) -> Settings:
    return load_settings(
        # The emulator accepts any key; this one is known so the test can look for it.
        servicebus_connection_string=servicebus.connection_string.replace("SAS_KEY_VALUE", SAS_KEY),
        acs_endpoint=acs.endpoint,
        acs_access_key=acs.access_key,
        applicationinsights_connection_string=APPINSIGHTS,
        senders=SENDERS,
        quota_per_minute=600,
        quota_per_hour=0,
        health_port=0,
        shutdown_grace_seconds=2,
        concurrency=4,
        prefetch=8,
        retry_quick_attempts=0,
        retry_backoff_base_seconds=0.2,
        retry_backoff_cap_seconds=0.5,
        log_format="json",
    )


@pytest.fixture
def captured(settings: Settings, log_stream: io.StringIO) -> Iterator[Captured]:
    with captured_telemetry(settings) as telemetry:
        yield telemetry


@pytest.fixture
async def worker(settings: Settings, captured: Captured) -> AsyncIterator[Worker]:
    async with running(Worker(settings, telemetry=captured.telemetry)) as started:
        yield started


@pytest.fixture
async def publisher(settings: Settings, captured: Captured) -> AsyncIterator[Publisher]:
    # No publish checks: an unknown sender must reach the worker to be dead-lettered there.
    async with Publisher.from_settings(settings, check=None) as opened:
        yield opened


def _processed(captured: Captured, event_id: str) -> list[Any]:
    return [
        span
        for span in captured.spans("notifications process")
        if span.attributes and span.attributes.get("postbus.event_id") == event_id
    ]


async def test_a_published_event_and_its_processing_form_one_trace(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, captured: Captured
) -> None:
    # Given an event published through the Publisher
    await publisher.publish(_event("order-1"))
    # When the worker has processed it
    (consumer,) = await eventually(lambda: _processed(captured, "order-1"))
    # Then producer -> consumer -> acs send is one trace (rendering has no span of its own)
    (producer,) = captured.spans("notifications publish")
    (send,) = captured.spans("acs send")
    assert not [span for span in captured.spans() if span.name.startswith("render ")]
    trace_id = producer.context.trace_id
    assert {consumer.context.trace_id, send.context.trace_id} == {trace_id}
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert send.parent is not None
    assert send.parent.span_id == consumer.context.span_id
    attributes = dict(consumer.attributes or {})
    assert attributes["messaging.system"] == "servicebus"
    assert attributes["messaging.destination.name"] == "notifications"
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["messaging.message.id"] == "order-1"
    assert attributes["messaging.servicebus.message.delivery_count"] == 0
    assert attributes["postbus.outcome"] == "sent"
    assert attributes["postbus.type"] == "order.confirmation"
    assert attributes["postbus.tenant"] == "contoso"
    assert attributes["postbus.attempt"] == 0
    assert attributes["postbus.recipient_domain"] == "example.com"
    assert attributes["postbus.operation_id"] == (send.attributes or {})["postbus.operation_id"]
    # And the canonical line was written inside the consumer span
    (line,) = [r for r in captured.log_records() if r.body == "message processed"]
    assert (line.trace_id, line.span_id) == (trace_id, consumer.context.span_id)


async def test_a_delayed_retry_stays_in_the_original_trace(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, captured: Captured
) -> None:
    # Given ACS failing every send until the first delayed retry is scheduled
    acs.faults.fail_statuses = (503,)
    acs.faults.fail_rate = 1.0
    await publisher.publish(_event("order-2"))
    await eventually(lambda: _processed(captured, "order-2"))
    acs.faults.fail_rate = 0.0
    # When the retry copy is processed
    spans = await eventually(lambda: (found := _processed(captured, "order-2")) and len(found) >= 2 and found)
    await acs.mailbox.wait_for(count=1, timeout=20)
    # Then both attempts are children of the producer span, in one trace
    (producer,) = captured.spans("notifications publish")
    first, retry = sorted(spans, key=lambda span: (span.attributes or {})["postbus.attempt"])
    assert (first.attributes or {})["postbus.outcome"] == "retry_scheduled"
    assert (first.attributes or {})["postbus.retry_reason"] == "Ambiguous"
    assert (retry.attributes or {})["postbus.attempt"] == 1
    assert (retry.attributes or {})["postbus.message_id"] == "order-2#1"
    assert (retry.attributes or {})["postbus.outcome"] in ("sent", "already_sent")
    for span in (first, retry):
        assert span.context.trace_id == producer.context.trace_id
        assert span.parent is not None
        assert span.parent.span_id == producer.context.span_id


async def test_every_metric_is_emitted_with_its_attributes(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, captured: Captured
) -> None:
    # Given a sent event, one that fails once, one from an unknown sender, and a throttled one
    # (last: after a 429 the gate paces this lone replica at its measured share of the quota)
    await publisher.publish(_event("m-sent"))
    await eventually(lambda: _processed(captured, "m-sent"))
    # exactly one failed send: toggling fail_rate raced the delayed retry coming back
    acs.faults.fail_next(1, status=503)
    await publisher.publish(_event("m-retry"))
    await eventually(lambda: _processed(captured, "m-retry"))
    await publisher.publish(_event("m-dead", sender="nobody"))
    await eventually(lambda: _processed(captured, "m-dead"))
    await eventually(lambda: len(_processed(captured, "m-retry")) >= 2)
    acs.faults.throttle_next(1, retry_after=1)
    await publisher.publish(_event("m-throttled", tenant="fabrikam"))
    await eventually(lambda: _processed(captured, "m-throttled"))
    # and ACS reported on each of the three emails it accepted
    await eventually(lambda: worker.report_counts["recorded"] >= 3)
    # Then every metric of the meter is there, with its attributes
    points = captured.metrics()
    by_name: dict[str, list[Any]] = {}
    for point in points:
        by_name.setdefault(point.name, []).append(point)
    assert set(by_name) == {
        "postbus.events.published",
        "postbus.messages.processed",
        "postbus.acs.send.duration",
        "postbus.e2e.latency",
        "postbus.retries.scheduled",
        "postbus.throttle.events",
        "postbus.send.rate",
        "postbus.deadletters",
        "postbus.inflight",
        "postbus.breaker.state",
        "postbus.records.writes",
        "postbus.reports.received",
        "postbus.delivery.latency",
    }
    # The delivery record got every send and the dead letter, and ACS's three delivery reports
    writes = {p.attributes["outcome"]: p.value for p in by_name["postbus.records.writes"]}
    assert writes == {"sent": 3, "dead_lettered": 1}
    reports = {
        (p.attributes["status"], p.attributes["tenant"]): p.value for p in by_name["postbus.reports.received"]
    }
    assert reports == {("Delivered", "contoso"): 2, ("Delivered", "fabrikam"): 1}
    delivery = by_name["postbus.delivery.latency"]
    assert {p.attributes["slo_met"] for p in delivery} == {"true"}
    assert sum(p.value for p in delivery) == 3
    published = {
        (p.attributes["type"], p.attributes["tenant"]): p.value for p in by_name["postbus.events.published"]
    }
    assert published == {("order.confirmation", "contoso"): 3, ("order.confirmation", "fabrikam"): 1}
    processed = {tuple(sorted(p.attributes.items())): p.value for p in by_name["postbus.messages.processed"]}
    assert processed[(("outcome", "sent"), ("tenant", "fabrikam"), ("type", "order.confirmation"))] == 1
    assert (
        processed[(("outcome", "retry_scheduled"), ("tenant", "contoso"), ("type", "order.confirmation"))]
        == 1
    )
    assert (
        processed[(("outcome", "dead_lettered"), ("tenant", "contoso"), ("type", "order.confirmation"))] == 1
    )
    results = {p.attributes["result"] for p in by_name["postbus.acs.send.duration"]}
    assert {"accepted", "ThrottledError", "AmbiguousSend"} <= results
    latency = by_name["postbus.e2e.latency"]
    assert {p.attributes["slo_met"] for p in latency} == {"true"}
    assert sum(p.value for p in latency) >= 2
    assert [p.attributes for p in by_name["postbus.retries.scheduled"]] == [{"reason": "Ambiguous"}]
    assert [(p.attributes, p.value) for p in by_name["postbus.throttle.events"]] == [({}, 1)]
    assert [p.attributes for p in by_name["postbus.deadletters"]] == [{"reason": "SenderNotAllowed"}]
    assert [p.value for p in by_name["postbus.inflight"]] == [0]
    assert [p.value for p in by_name["postbus.breaker.state"]] == [0]
    (rate,) = by_name["postbus.send.rate"]
    assert 0 < rate.value <= 10


_LEAKS = re.compile(r"(?i)(sig=(?!\*\*\*)[^&\s\"']+|SharedAccessKey=(?!\*\*\*)|accesskey=(?!\*\*\*))")


def _texts(captured: Captured, log_stream: io.StringIO) -> list[str]:
    texts = [log_stream.getvalue()]
    for record in captured.log_records():
        texts.append(json.dumps({"body": str(record.body), "attributes": dict(record.attributes or {})}))
    for span in captured.spans():
        texts.append(span.name)
        texts.append(json.dumps(dict(span.attributes or {})))
        texts.append(str(span.status.description or ""))
        for event in span.events:
            texts.append(json.dumps({"name": event.name, "attributes": dict(event.attributes or {})}))
        texts.append(json.dumps(dict(span.resource.attributes)))
    return texts


async def test_no_secret_and_no_full_recipient_address_reaches_a_log_line_span_or_event(
    worker: Worker,
    publisher: Publisher,
    acs: EmailEmulator,
    captured: Captured,
    settings: Settings,
    log_stream: io.StringIO,
) -> None:
    # Given the secrets are really in use (the SDKs authenticate with them)
    assert settings.servicebus_connection_string is not None
    assert SAS_KEY in settings.servicebus_connection_string.get_secret_value()
    # When events go through the success, throttle, failure and dead-letter paths
    await publisher.publish(_event("s-sent"))
    await eventually(lambda: _processed(captured, "s-sent"))
    acs.faults.fail_statuses = (503,)
    acs.faults.fail_rate = 1.0
    await publisher.publish(_event("s-failing"))
    await eventually(lambda: _processed(captured, "s-failing"))
    acs.faults.fail_rate = 0.0
    await publisher.publish(_event("s-dead", sender="nobody"))
    await eventually(lambda: _processed(captured, "s-dead"))
    # The delayed retry must be back first: the 429 is for the throttled event's send, and after
    # it the gate paces this lone replica at its measured share (one send in tens of seconds).
    await eventually(lambda: len(_processed(captured, "s-failing")) >= 2)
    acs.faults.throttle_next(1, retry_after=1)
    await publisher.publish(_event("s-throttled"))
    await eventually(lambda: _processed(captured, "s-throttled"))
    assert acs.mailbox.messages()
    # Then none of the secrets, no signature and no full recipient address was written anywhere
    texts = _texts(captured, log_stream)
    assert len(texts) > 10
    for text in texts:
        for secret in (SAS_KEY, ACS_KEY, APPINSIGHTS_KEY, APPINSIGHTS):
            assert secret not in text
        assert not _LEAKS.search(text), text
        assert RECIPIENT not in text
    assert "message processed" in log_stream.getvalue()


RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def _runbook_queries() -> str:
    return "\n".join(re.findall(r"```kusto\n(.*?)```", RUNBOOK.read_text(encoding="utf-8"), flags=re.S))


async def test_the_runbook_queries_only_names_the_pipeline_emits(
    worker: Worker, publisher: Publisher, acs: EmailEmulator, captured: Captured
) -> None:
    # Given a run with a sent event, a delayed retry, a dead-letter, a 429, and a breaker opening and closing
    await publisher.publish(_event("r-sent"))
    acs.faults.fail_statuses = (503,)
    await eventually(lambda: _processed(captured, "r-sent"))
    acs.faults.fail_rate = 1.0
    await publisher.publish(_event("r-retry"))
    await eventually(lambda: _processed(captured, "r-retry"))
    acs.faults.fail_rate = 0.0
    await publisher.publish(_event("r-dead", sender="nobody"))
    await eventually(lambda: _processed(captured, "r-dead"))
    await eventually(lambda: len(_processed(captured, "r-retry")) >= 2)
    acs.faults.throttle_next(1, retry_after=1)
    await publisher.publish(_event("r-throttled"))
    await eventually(lambda: _processed(captured, "r-throttled"))
    await eventually(lambda: worker.report_counts["recorded"] >= 3)
    now = [0.0]
    breaker = CircuitBreaker(cooldown=1.0, max_cooldown=2.0, clock=lambda: now[0])
    breaker.record_failure("ACS refused access (403)")
    now[0] = 5.0
    breaker.record_success()
    # When the names are collected from what was recorded
    records = captured.log_records()
    spans = captured.spans()
    metric_points = captured.metrics()
    bodies = {str(record.body) for record in records}
    dimensions = {key for record in records for key in (record.attributes or {})}
    dimensions |= {key for span in spans for key in (span.attributes or {})}
    dimensions |= {key for point in metric_points for key in point.attributes}
    metric_names = {point.name for point in metric_points}
    span_names = {span.name for span in spans}
    outcomes = {str((record.attributes or {}).get("outcome")) for record in records}
    # Then every name a runbook query reads is one of them
    queries = _runbook_queries()
    keys = set(re.findall(r"customDimensions\.(\w+)", queries))
    keys |= set(re.findall(r'customDimensions\["([^"]+)"\]', queries))
    assert keys, "no customDimensions in the runbook?"
    assert keys - dimensions == set()
    quoted_postbus = set(re.findall(r'"(postbus\.[\w.]+)"', queries)) - keys
    assert quoted_postbus, "no metric names in the runbook?"
    assert quoted_postbus - metric_names == set()
    messages = set(re.findall(r'message == "([^"]+)"', queries))
    for group in re.findall(r"message in \(([^)]*)\)", queries):
        messages |= set(re.findall(r'"([^"]+)"', group))
    assert messages - bodies == set()
    named = set(re.findall(r'name == "([^"]+)"', queries)) - quoted_postbus
    assert named - span_names == set()
    for prefix in re.findall(r'name startswith "([^"]+)"', queries):
        assert any(name.startswith(prefix) for name in span_names), prefix
    assert set(re.findall(r'customDimensions\.outcome\) == "(\w+)"', queries)) - outcomes == set()
