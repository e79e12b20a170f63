"""Spans and metrics of the Telemetry object: context propagation, attributes, status, redaction."""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from postbus.events import parse_event
from postbus.telemetry import (
    PROP_DIAGNOSTIC_ID,
    PROP_TRACEPARENT,
    SLO_SECONDS,
)
from tests.unit.telemetry.capture import captured_telemetry

EVENT = parse_event(
    {
        "id": "order-1",
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["Jane Doe <jane@example.com>"],
        "sender": "orders",
        "data": {},
    }
)


def test_the_consumer_span_is_parented_to_the_producer_span_whose_context_the_message_carries() -> None:
    with captured_telemetry() as captured:
        telemetry = captured.telemetry
        # Given an event published with the telemetry's properties hook
        publishing = telemetry.publishing("notifications")
        properties = publishing.properties(EVENT)
        publishing.finish({EVENT.id})
        # When a worker processes the message carrying those properties
        with telemetry.processing(
            queue="notifications", properties=properties, message_id=EVENT.id, delivery_count=0
        ) as processing:
            with telemetry.acs_send(operation_id="op-1") as call:
                call.result = "accepted"
            processing.finish(outcome="sent", event_id=EVENT.id, event_type=EVENT.type, tenant=EVENT.tenant)
    # Then producer, consumer and ACS spans form one trace, nested as the pipeline ran
    (producer,) = captured.spans("notifications publish")
    (consumer,) = captured.spans("notifications process")
    (send,) = captured.spans("acs send")
    assert properties[PROP_DIAGNOSTIC_ID] == properties[PROP_TRACEPARENT]
    assert properties[PROP_TRACEPARENT].split("-")[2] == format(producer.context.span_id, "016x")
    assert producer.kind is SpanKind.PRODUCER
    assert consumer.kind is SpanKind.CONSUMER
    assert send.kind is SpanKind.CLIENT
    assert {span.context.trace_id for span in (producer, consumer, send)} == {producer.context.trace_id}
    assert consumer.parent is not None
    assert consumer.parent.span_id == producer.context.span_id
    assert consumer.parent.is_remote
    assert send.parent is not None
    assert send.parent.span_id == consumer.context.span_id
    assert dict(producer.attributes or {}) == {
        "messaging.system": "servicebus",
        "messaging.destination.name": "notifications",
        "messaging.operation.type": "create",
        "messaging.operation.name": "publish",
        "messaging.message.id": "order-1",
        "postbus.event_id": "order-1",
        "postbus.type": "order.confirmation",
        "postbus.tenant": "contoso",
    }


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str-keys", "bytes-keys"])
def test_trace_context_is_read_from_str_or_bytes_application_properties(as_bytes: bool) -> None:
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    properties: dict[object, object] = (
        {b"traceparent": traceparent.encode(), b"tracestate": b"congo=t61rcWkgMzE"}
        if as_bytes
        else {"traceparent": traceparent, "tracestate": "congo=t61rcWkgMzE"}
    )
    with (
        captured_telemetry() as captured,
        captured.telemetry.processing(
            queue="notifications", properties=properties, message_id="m", delivery_count=2
        ),
    ):
        pass
    (consumer,) = captured.spans("notifications process")
    assert format(consumer.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert consumer.parent is not None
    assert format(consumer.parent.span_id, "016x") == "b7ad6b7169203331"
    assert consumer.context.trace_state.get("congo") == "t61rcWkgMzE"
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.servicebus.message.delivery_count"] == 2


def test_a_message_without_trace_context_starts_a_new_trace() -> None:
    with (
        captured_telemetry() as captured,
        captured.telemetry.processing(
            queue="notifications", properties={"postbus-attempt": 0}, message_id="m", delivery_count=0
        ),
    ):
        pass
    (consumer,) = captured.spans()
    assert consumer.parent is None


def test_a_dead_letter_marks_the_span_failed_and_counts_by_reason() -> None:
    with (
        captured_telemetry() as captured,
        captured.telemetry.processing(
            queue="notifications", properties={}, message_id="o-9", delivery_count=0
        ) as processing,
    ):
        processing.finish(
            outcome="dead_lettered",
            event_id="o-9",
            event_type="order.confirmation",
            tenant="contoso",
            attempt=0,
            reason="SenderNotAllowed",
        )
    (consumer,) = captured.spans()
    assert consumer.status.status_code is StatusCode.ERROR
    assert consumer.attributes is not None
    assert consumer.attributes["postbus.outcome"] == "dead_lettered"
    assert consumer.attributes["postbus.dead_letter_reason"] == "SenderNotAllowed"
    assert consumer.attributes["error.type"] == "SenderNotAllowed"
    (deadletter,) = captured.metric("postbus.deadletters")
    assert deadletter.attributes == {"reason": "SenderNotAllowed"}
    (processed,) = captured.metric("postbus.messages.processed")
    assert processed.attributes == {
        "outcome": "dead_lettered",
        "type": "order.confirmation",
        "tenant": "contoso",
    }
    (inflight,) = captured.metric("postbus.inflight")
    assert inflight.value == 0


def test_exceptions_are_recorded_on_the_span_with_secrets_and_addresses_redacted() -> None:
    with (
        captured_telemetry() as captured,
        pytest.raises(RuntimeError),
        captured.telemetry.acs_send(operation_id="op-2"),
    ):
        raise RuntimeError("refused jane.doe@example.com with accesskey=c2VjcmV0 and Bearer abc.def")
    (send,) = captured.spans("acs send")
    assert send.status.status_code is StatusCode.ERROR
    (event,) = send.events
    assert event.name == "exception"
    assert event.attributes is not None
    message = str(event.attributes["exception.message"])
    assert "c2VjcmV0" not in message
    assert "abc.def" not in message
    assert "jane.doe" not in message
    assert "j***@example.com" in message
    assert "exception.stacktrace" not in event.attributes
    (duration,) = captured.metric("postbus.acs.send.duration")
    assert duration.attributes == {"result": "RuntimeError"}


def test_a_cancelled_message_ends_its_span_and_leaves_nothing_in_flight() -> None:
    with (
        captured_telemetry() as captured,
        pytest.raises(asyncio.CancelledError),
        captured.telemetry.processing(queue="q", properties={}, message_id="m", delivery_count=0),
    ):
        raise asyncio.CancelledError
    (consumer,) = captured.spans("q process")
    assert consumer.attributes is not None
    assert consumer.attributes["postbus.outcome"] == "cancelled"
    (inflight,) = captured.metric("postbus.inflight")
    assert inflight.value == 0


def test_end_to_end_latency_says_whether_it_met_the_slo() -> None:
    now = datetime.now(UTC)
    with captured_telemetry() as captured:
        captured.telemetry.record_accepted(now - timedelta(seconds=10), event_type="t", tenant="a")
        captured.telemetry.record_accepted(
            now - timedelta(seconds=SLO_SECONDS + 60), event_type="t", tenant="a"
        )
        captured.telemetry.record_accepted(
            None, event_type="t", tenant="a"
        )  # no first-enqueued: not measured
    points = {point.attributes["slo_met"]: point for point in captured.metric("postbus.e2e.latency")}
    assert points["true"].value == 1
    assert 10_000 <= (points["true"].sum or 0) < 60_000
    assert points["false"].value == 1
    assert (points["false"].sum or 0) >= (SLO_SECONDS + 60) * 1000
    assert points["true"].attributes == {"type": "t", "tenant": "a", "slo_met": "true"}


def test_gauges_observe_a_watched_worker_until_it_stops() -> None:
    with captured_telemetry() as captured:
        unwatch = captured.telemetry.watch(send_rate=lambda: 2.5, breaker_state=lambda: 2)
        first = captured.metrics()
        unwatch()
        captured.telemetry.watch(send_rate=lambda: math.inf, breaker_state=lambda: 0)
        second = captured.metrics()
    gauges = ("postbus.send.rate", "postbus.breaker.state")
    assert [(p.name, p.value) for p in first if p.name in gauges] == [
        ("postbus.send.rate", 2.5),
        ("postbus.breaker.state", 2),
    ]
    # An unlimited gate (no quota configured) has no rate to chart.
    assert [(p.name, p.value) for p in second if p.name in gauges] == [("postbus.breaker.state", 0)]


def test_a_failed_publish_ends_the_unsent_spans_as_errors_and_counts_only_what_was_sent() -> None:
    second = EVENT.model_copy(update={"id": "order-2"})
    with captured_telemetry() as captured:
        publishing = captured.telemetry.publishing("notifications")
        publishing.properties(EVENT)
        publishing.properties(second)
        publishing.finish({"order-1"}, RuntimeError("queue full"))
    spans = {span.attributes["postbus.event_id"]: span for span in captured.spans() if span.attributes}
    assert spans["order-1"].status.status_code is StatusCode.UNSET
    assert spans["order-2"].status.status_code is StatusCode.ERROR
    (published,) = captured.metric("postbus.events.published")
    assert (published.value, published.attributes) == (1, {"type": "order.confirmation", "tenant": "contoso"})


def test_a_caller_hook_is_merged_with_the_trace_context() -> None:
    with captured_telemetry() as captured:
        publishing = captured.telemetry.publishing("notifications")
        merged = publishing.hook(lambda event: {"origin": "checkout"})(EVENT)
        publishing.finish({EVENT.id})
    assert merged["origin"] == "checkout"
    assert PROP_TRACEPARENT in merged
