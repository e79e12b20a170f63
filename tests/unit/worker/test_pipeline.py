"""The pipeline turns each failure class into the right outcome value (fakes for our own seams)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid5

import pytest

from postbus.bus import Delivery
from postbus.events import PROP_ATTEMPT, PROP_THROTTLED, encode, parse_event
from postbus.settings import Settings, load_settings
from postbus.worker.errors import (
    AmbiguousSend,
    RecipientRejected,
    SystemicError,
    ThrottledError,
    TransientError,
    UnknownTemplate,
)
from postbus.worker.mailer import EVENT_ID_HEADER, FakeMailer, OperationStatus, operation_id_for
from postbus.worker.outcome import AlreadySent, DeadLetter, RetryLater, Sent, Systemic
from postbus.worker.pipeline import Pipeline
from postbus.worker.rendering import TemplateRenderer

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class RecordingGate:
    """A send gate that never waits and records what the pipeline told it."""

    def __init__(self) -> None:
        self.acquired = 0
        self.accepted = 0
        self.throttled: list[float] = []

    async def acquire(self) -> None:
        self.acquired += 1

    def on_accepted(self) -> None:
        self.accepted += 1

    def on_throttled(self, retry_after: float) -> None:
        self.throttled.append(retry_after)

    def set_replicas(self, count: int | None) -> None:
        pass

    @property
    def rate(self) -> float:
        return 1.0

    @property
    def paused_until(self) -> float:
        return 0.0


class FailingRenderer:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def render(self, event_type: str, *, locale: str, data: Any, tenant: str = "") -> Any:
        raise self.error


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        senders={"orders": "orders@shop.example.com"},
        retry_max_attempts=3,
        retry_quick_attempts=1,
        retry_backoff_base_seconds=2.0,
        retry_backoff_cap_seconds=60.0,
    )


@pytest.fixture
def renderer() -> TemplateRenderer:
    return TemplateRenderer()


def _event(renderer: TemplateRenderer, **overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "order-1001",
        "type": "order.confirmation",
        "tenant": "contoso",
        "to": ["Jane Doe <jane@example.com>"],
        "cc": ["ops@example.com"],
        "sender": "orders",
        "data": renderer.sample_data("order.confirmation"),
    }
    document.update(overrides)
    return document


def _delivery(
    document: dict[str, Any], *, attempt: int = 0, delivery_count: int = 0, **props: Any
) -> Delivery:
    wire = encode(parse_event(document), attempt=attempt, first_enqueued=NOW - timedelta(minutes=1))
    return Delivery(
        body=wire.body,
        content_type=wire.content_type,
        application_properties={**wire.application_properties, **props},
        message_id=wire.message_id,
        delivery_count=delivery_count,
    )


def _pipeline(
    settings: Settings, renderer: Any, mailer: FakeMailer, gate: RecordingGate | None = None
) -> Pipeline:
    return Pipeline(
        settings=settings, renderer=renderer, mailer=mailer, gate=gate or RecordingGate(), now=lambda: NOW
    )


async def test_a_valid_event_is_rendered_and_sent_with_a_stable_operation_id(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer, gate = FakeMailer(), RecordingGate()
    processed = await _pipeline(settings, renderer, mailer, gate).process(_delivery(_event(renderer)))
    expected_op = str(uuid5(settings.operation_namespace, "order-1001"))
    assert processed.outcome == Sent(expected_op)
    ((operation_id, payload),) = mailer.sent
    assert (
        operation_id == expected_op == operation_id_for("order-1001", namespace=settings.operation_namespace)
    )
    assert payload["senderAddress"] == "orders@shop.example.com"
    assert payload["recipients"]["to"] == [{"address": "jane@example.com", "displayName": "Jane Doe"}]
    assert payload["recipients"]["cc"] == [{"address": "ops@example.com"}]
    assert payload["content"]["subject"]
    assert "<html" in payload["content"]["html"].lower()
    assert payload["content"]["plainText"]
    assert payload["headers"][EVENT_ID_HEADER] == "order-1001"
    assert (gate.acquired, gate.accepted) == (1, 1)


@pytest.mark.parametrize(
    ("body", "content_type", "fragment"),
    [
        (b"{oops", "application/json", "body is not valid JSON"),
        (
            json.dumps({"id": "x", "type": "order.confirmation", "to": [], "sender": "orders"}).encode(),
            "application/json",
            "to:",
        ),
        (b"{}", "text/plain", "content_type"),
    ],
)
async def test_undecodable_messages_are_dead_lettered_as_invalid(
    settings: Settings, renderer: TemplateRenderer, body: bytes, content_type: str, fragment: str
) -> None:
    mailer = FakeMailer()
    delivery = Delivery(
        body=body, content_type=content_type, application_properties={}, message_id="m", delivery_count=0
    )
    processed = await _pipeline(settings, renderer, mailer).process(delivery)
    assert isinstance(processed.outcome, DeadLetter)
    assert processed.outcome.reason == "InvalidEvent"
    assert fragment in processed.outcome.description
    assert mailer.sent == []


async def test_expired_events_are_dead_lettered(settings: Settings, renderer: TemplateRenderer) -> None:
    document = _event(renderer, not_after=(NOW - timedelta(seconds=1)).isoformat())
    processed = await _pipeline(settings, renderer, FakeMailer()).process(_delivery(document))
    assert isinstance(processed.outcome, DeadLetter)
    assert processed.outcome.reason == "Expired"


async def test_unknown_sender_alias_is_dead_lettered(settings: Settings, renderer: TemplateRenderer) -> None:
    processed = await _pipeline(settings, renderer, FakeMailer()).process(
        _delivery(_event(renderer, sender="billing"))
    )
    assert processed.outcome == DeadLetter(
        "SenderNotAllowed", "sender alias 'billing' is not allowed (known: orders)"
    )


async def test_template_failures_keep_their_reason(settings: Settings, renderer: TemplateRenderer) -> None:
    failing = FailingRenderer(UnknownTemplate("no template for 'gift.card'"))
    processed = await _pipeline(settings, failing, FakeMailer()).process(_delivery(_event(renderer)))
    assert processed.outcome == DeadLetter("UnknownTemplate", "no template for 'gift.card'")


async def test_throttling_pauses_the_gate_and_retries_without_spending_attempts(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer, gate = FakeMailer(failures=[ThrottledError("429", retry_after=2.0)]), RecordingGate()
    processed = await _pipeline(settings, renderer, mailer, gate).process(_delivery(_event(renderer)))
    assert isinstance(processed.outcome, Sent)
    assert gate.throttled == [2.0]
    assert gate.acquired == 2


async def test_long_throttling_schedules_a_copy_that_spends_no_attempt(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer(failures=[ThrottledError("429", retry_after=40.0)])
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer)))
    assert processed.outcome == RetryLater(40.0, "Throttled", "429", spend_attempt=False)


async def test_transient_failures_become_a_delayed_retry_within_the_backoff(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer(failures=[TransientError("reset"), TransientError("reset again")])
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer), attempt=1))
    assert isinstance(processed.outcome, RetryLater)
    assert processed.outcome.reason == "Transient"
    assert processed.outcome.spend_attempt
    assert 0 <= processed.outcome.delay <= 2.0 * 2**1
    assert mailer.sent == []


async def test_ambiguous_sends_are_retried_with_the_same_operation_id(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer(failures=[AmbiguousSend("timeout after send")])
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer)))
    assert isinstance(processed.outcome, Sent)
    assert mailer.operation_ids() == [processed.outcome.operation_id]


async def test_exhausted_budget_dead_letters_with_the_last_error(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer(failures=[TransientError("503 again"), TransientError("503 again")])
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer), attempt=2))
    assert isinstance(processed.outcome, DeadLetter)
    assert processed.outcome.reason == "RetriesExhausted"
    assert "503 again" in processed.outcome.description


async def test_throttled_retries_do_not_count_against_the_budget(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer(failures=[TransientError("503"), TransientError("503")])
    # attempt 2 of which 2 were throttling: one real attempt spent, so another retry is allowed
    delivery = _delivery(_event(renderer), attempt=2, **{PROP_THROTTLED: 2})
    processed = await _pipeline(settings, renderer, mailer).process(delivery)
    assert isinstance(processed.outcome, RetryLater)


async def test_systemic_failures_are_not_dead_lettered(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer(failures=[SystemicError("401 Denied")])
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer)))
    assert processed.outcome == Systemic("401 Denied")


async def test_rejected_recipients_are_dead_lettered(settings: Settings, renderer: TemplateRenderer) -> None:
    mailer = FakeMailer(failures=[RecipientRejected("400 InvalidEmailAddress")])
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer)))
    assert processed.outcome == DeadLetter("RecipientRejected", "400 InvalidEmailAddress")


async def test_a_redelivered_message_already_accepted_by_acs_is_not_sent_again(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer()
    operation_id = operation_id_for("order-1001", namespace=settings.operation_namespace)
    mailer.known[operation_id] = OperationStatus.RUNNING
    processed = await _pipeline(settings, renderer, mailer).process(
        _delivery(_event(renderer), delivery_count=1)
    )
    assert processed.outcome == AlreadySent(operation_id)
    assert mailer.sent == []


@pytest.mark.parametrize("known", [True, False])
async def test_a_redelivered_message_past_its_deadline_is_already_sent_if_acs_has_it(
    settings: Settings, renderer: TemplateRenderer, known: bool
) -> None:
    # Given a send that went out just before not_after, and a crash before the message was completed
    mailer = FakeMailer()
    operation_id = operation_id_for("order-1001", namespace=settings.operation_namespace)
    if known:
        mailer.known[operation_id] = OperationStatus.SUCCEEDED
    late = _event(renderer, not_after=(NOW - timedelta(seconds=30)).isoformat())
    # When the redelivery comes after the deadline
    processed = await _pipeline(settings, renderer, mailer).process(_delivery(late, delivery_count=1))
    # Then the email that went out is reported sent, not dead-lettered Expired; one that did not is
    assert mailer.sent == []
    if known:
        assert processed.outcome == AlreadySent(operation_id)
        assert processed.operation_id == operation_id
    else:
        assert isinstance(processed.outcome, DeadLetter)
        assert processed.outcome.reason == "Expired"


async def test_a_first_delivery_does_not_spend_status_quota(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    class CountingMailer(FakeMailer):
        lookups = 0

        async def lookup(self, operation_id: str) -> OperationStatus | None:
            CountingMailer.lookups += 1
            return await super().lookup(operation_id)

    mailer = CountingMailer()
    await _pipeline(settings, renderer, mailer).process(_delivery(_event(renderer)))
    assert CountingMailer.lookups == 0


async def test_replay_generations_get_their_own_operation_id(
    settings: Settings, renderer: TemplateRenderer
) -> None:
    mailer = FakeMailer()
    processed = await _pipeline(settings, renderer, mailer).process(
        _delivery(_event(renderer), **{"postbus-replay": 1})
    )
    assert processed.operation_id == operation_id_for(
        "order-1001", namespace=settings.operation_namespace, generation=1
    )
    assert processed.operation_id != operation_id_for("order-1001", namespace=settings.operation_namespace)
    assert PROP_ATTEMPT in processed.decoded.application_properties  # type: ignore[union-attr]
