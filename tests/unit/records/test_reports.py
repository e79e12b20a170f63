"""Report parsing: both envelopes of both ACS email events into typed values, or a reason."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from postbus.records.errors import InvalidReport
from postbus.records.record import Outcome
from postbus.records.reports import (
    DeliveryReport,
    DeliveryStatus,
    EngagementReport,
    parse_report,
    parse_reports,
)

FIXTURES = Path(__file__).parent / "reports"
OPERATION = "2b9f3c6e-7a51-5d0a-9e3f-1c4b8d2a6f90"


def fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return loaded


def test_an_event_grid_delivery_report_becomes_a_typed_value() -> None:
    report = parse_report((FIXTURES / "eventgrid-delivered.json").read_bytes())
    assert isinstance(report, DeliveryReport)
    assert report.operation_id == OPERATION
    assert report.status is DeliveryStatus.DELIVERED  # "delivered" in the sample's lower case
    assert report.outcome is Outcome.DELIVERED
    assert report.recipient_domain == "fabrikam.com"
    # seven fractional digits, from deliveryAttemptTimeStamp (the Event Grid schema's spelling)
    assert report.attempted_at == datetime(2026, 3, 2, 9, 31, 12, 248026, tzinfo=UTC)
    assert report.event_time == datetime(2026, 3, 2, 9, 31, 12, 547800, tzinfo=UTC)
    assert report.status_message == "No error."
    assert (report.smtp_code, report.smtp_status, report.mail_server) == (None, None, None)
    assert report.envelope == "eventgrid"
    assert report.report_id == "4f1d4a0e-0b5b-4f3e-9d6c-8a2f1c3e5b71"


def test_a_cloudevents_delivery_report_parses_the_same_way() -> None:
    report = parse_report((FIXTURES / "cloudevents-delivered.json").read_text())
    assert isinstance(report, DeliveryReport)
    assert report.envelope == "cloudevents"
    assert report.operation_id == OPERATION  # upper-case GUID made canonical
    assert report.attempted_at == datetime(2026, 3, 2, 9, 31, 12, 248026, tzinfo=UTC)
    assert report.mail_server == "mx1.fabrikam.com"
    assert report.internet_message_id == "<a1b2c3d4e5f6@contoso.com>"


def test_a_bounce_keeps_the_smtp_detail_but_never_the_address() -> None:
    report = parse_report(fixture("eventgrid-bounced.json"))
    assert isinstance(report, DeliveryReport)
    assert report.outcome is Outcome.BOUNCED
    assert (report.smtp_code, report.smtp_status) == (550, "5.1.1")
    assert report.status_message is not None
    assert "no.such.user" not in report.status_message
    assert report.status_message.startswith("550 5.1.1 <n***@fabrikam.com>: Recipient address rejected")
    write = report.as_write(at=datetime(2026, 3, 2, 9, 33, tzinfo=UTC))
    assert "no.such.user" not in repr(write)
    assert write.recipient_domains == ("fabrikam.com",)
    assert (write.outcome, write.smtp_code, write.delivered_at) == (Outcome.BOUNCED, 550, None)


def test_a_documentation_sample_in_a_one_element_array_is_accepted() -> None:
    report = parse_report(fixture("docs-array-suppressed.json"))
    assert isinstance(report, DeliveryReport)
    assert report.outcome is Outcome.SUPPRESSED


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        ("Delivered", Outcome.DELIVERED),
        ("Bounced", Outcome.BOUNCED),
        ("Suppressed", Outcome.SUPPRESSED),
        ("Quarantined", Outcome.QUARANTINED),
        ("FilteredSpam", Outcome.FILTERED_SPAM),
        ("filteredspam", Outcome.FILTERED_SPAM),
        ("Expired", Outcome.EXPIRED),
        ("Failed", Outcome.FAILED),
        ("Expanded", Outcome.SENT),
    ],
)
def test_every_status_maps_to_an_outcome(status: str, outcome: Outcome) -> None:
    for name in ("eventgrid-delivered.json", "cloudevents-delivered.json"):
        document = fixture(name)
        document["data"]["status"] = status
        report = parse_report(document)
        assert isinstance(report, DeliveryReport)
        assert report.outcome is outcome
        write = report.as_write()
        assert write.outcome is outcome
        assert (write.delivered_at is not None) == (outcome is Outcome.DELIVERED)


def test_engagement_reports_record_the_first_open_and_click() -> None:
    view = parse_report(fixture("eventgrid-engagement-view.json"))
    click = parse_report(fixture("cloudevents-engagement-click.json"))
    assert isinstance(view, EngagementReport)
    assert isinstance(click, EngagementReport)
    assert (view.engagement, view.envelope, view.context) == ("view", "eventgrid", None)
    assert (click.engagement, click.envelope) == ("click", "cloudevents")
    assert click.context == "https://shop.contoso.com/orders/1001"
    assert view.as_write().opened_at == datetime(2026, 3, 2, 10, 2, 22, 745555, tzinfo=UTC)
    assert click.as_write().clicked_at == datetime(2026, 3, 2, 10, 5, 1, 120000, tzinfo=UTC)
    assert click.as_write().outcome is Outcome.SENT


def test_missing_attempt_time_falls_back_to_the_event_time() -> None:
    document = fixture("eventgrid-delivered.json")
    del document["data"]["deliveryAttemptTimeStamp"]
    report = parse_report(document)
    assert isinstance(report, DeliveryReport)
    assert report.attempted_at == report.event_time


def _without(name: str, *path: str) -> dict[str, Any]:
    document = fixture(name)
    target = document
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return document


def _with(name: str, value: Any, *path: str) -> dict[str, Any]:
    document = copy.deepcopy(fixture(name))
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b"{not json", "MalformedReport", "body is not valid JSON"),
        (b"\xff\xfe", "MalformedReport", "body is not valid JSON"),
        ("[]", "MalformedReport", "expected one event, got an array of 0"),
        ('"text"', "MalformedReport", "an event must be a JSON object, not str"),
        ({"id": "x", "data": {}}, "MalformedReport", "neither an Event Grid event"),
        (
            _without("eventgrid-delivered.json", "data", "messageId"),
            "MalformedReport",
            "data.messageId: Field required",
        ),
        (
            _without("eventgrid-delivered.json", "data", "recipient"),
            "MalformedReport",
            "data.recipient: Field required",
        ),
        (_without("eventgrid-delivered.json", "eventTime"), "MalformedReport", "eventTime: Field required"),
        (_without("cloudevents-delivered.json", "data"), "MalformedReport", "data: Field required"),
        (
            _with("cloudevents-delivered.json", "0.3", "specversion"),
            "MalformedReport",
            "specversion: Input should be '1.0'",
        ),
        (
            _with("eventgrid-delivered.json", "yesterday", "eventTime"),
            "MalformedReport",
            "eventTime: Input should be a valid datetime",
        ),
        (
            _with("eventgrid-delivered.json", "Opened", "data", "status"),
            "UnknownStatus",
            "unknown delivery status 'Opened'",
        ),
        (
            _with("eventgrid-engagement-view.json", "forward", "data", "engagementType"),
            "UnknownStatus",
            "unknown engagement 'forward'",
        ),
        (
            fixture("eventgrid-subscription-validation.json"),
            "UnsupportedEventType",
            "'Microsoft.EventGrid.SubscriptionValidationEvent' is not an ACS email report",
        ),
        (
            _with("cloudevents-delivered.json", "Microsoft.Communication.SMSDeliveryReportReceived", "type"),
            "UnsupportedEventType",
            "SMSDeliveryReportReceived",
        ),
    ],
)
def test_invalid_or_unknown_events_raise_with_a_reason(body: Any, reason: str, message: str) -> None:
    with pytest.raises(InvalidReport) as caught:
        parse_report(body)
    assert caught.value.reason == reason
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_cloudevent_without_any_time_is_invalid() -> None:
    document = _without("cloudevents-delivered.json", "time")
    del document["data"]["deliveryAttemptTimestamp"]
    with pytest.raises(InvalidReport, match="the event has no time"):
        parse_report(document)


def test_a_batch_parses_every_event_or_names_the_bad_one() -> None:
    batch = [fixture("eventgrid-delivered.json"), fixture("cloudevents-engagement-click.json")]
    assert [type(r) for r in parse_reports(json.dumps(batch))] == [DeliveryReport, EngagementReport]
    batch.append(fixture("eventgrid-subscription-validation.json"))
    with pytest.raises(InvalidReport, match=r"^event 2: ") as caught:
        parse_reports(batch)
    assert caught.value.reason == "UnsupportedEventType"


def test_naive_times_are_read_as_utc() -> None:
    report = parse_report(
        _with("eventgrid-delivered.json", "2026-03-02T09:31:12", "data", "deliveryAttemptTimeStamp")
    )
    assert isinstance(report, DeliveryReport)
    assert report.attempted_at == datetime(2026, 3, 2, 9, 31, 12, tzinfo=UTC)
