"""Fault knobs and the mailbox's .eml/.json output."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from postbus.emulators.acs_email.faults import Faults
from postbus.emulators.acs_email.mailbox import CapturedAttachment, CapturedEmail, Mailbox, to_eml


def _mail(**overrides: object) -> CapturedEmail:
    fields: dict[str, object] = {
        "operation_id": "3f2504e0-4f89-41d3-9a0c-0305e82c3301",
        "sender": "DoNotReply@contoso.test",
        "to": ("ann@contoso.test",),
        "cc": ("bob@contoso.test",),
        "bcc": ("eve@contoso.test",),
        "reply_to": ("help@contoso.test",),
        "subject": "Order 42 — confirmed",
        "html": "<p>Thanks <img src='cid:logo'></p>",
        "plain_text": "Thanks",
        "headers": {"x-priority": "1"},
        "attachments": (
            CapturedAttachment("invoice.pdf", "application/pdf", b"%PDF-1.4 fake"),
            CapturedAttachment("logo.png", "image/png", b"\x89PNG", content_id="logo"),
        ),
        "received_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "api_version": "2025-09-01",
        "display_names": {"ann@contoso.test": "Ann Example"},
    }
    fields.update(overrides)
    return CapturedEmail(**fields)  # type: ignore[arg-type]


def test_eml_parses_back_with_alternative_bodies_and_attachments() -> None:
    parsed = email.message_from_bytes(to_eml(_mail()), policy=email.policy.default)
    assert parsed["Subject"] == "Order 42 — confirmed"
    assert parsed["To"] == "Ann Example <ann@contoso.test>"
    assert parsed["Cc"] == "bob@contoso.test"
    assert parsed["Reply-To"] == "help@contoso.test"
    assert parsed["X-ACS-Operation-Id"] == "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
    assert parsed["x-priority"] == "1"
    assert parsed.get_content_type() == "multipart/mixed"
    assert parsed.get_body(preferencelist=("plain",)).get_content().strip() == "Thanks"  # type: ignore[union-attr]
    assert "cid:logo" in parsed.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    parts = {p.get_filename(): p for p in parsed.iter_attachments()}
    assert parts["invoice.pdf"].get_content() == b"%PDF-1.4 fake"
    assert parts["logo.png"]["Content-ID"] == "<logo>"
    alternative = next(p for p in parsed.walk() if p.get_content_type() == "multipart/alternative")
    assert [p.get_content_type() for p in alternative.iter_parts()] == ["text/plain", "text/html"]


def test_html_only_and_empty_bodies_render() -> None:
    html_only = email.message_from_bytes(
        to_eml(_mail(plain_text=None, attachments=())), policy=email.policy.default
    )
    assert html_only.get_content_type() == "text/html"
    empty = email.message_from_bytes(to_eml(_mail(plain_text=None, html=None)), policy=email.policy.default)
    assert empty.get_content_type() == "multipart/mixed"


def test_directory_output_writes_eml_and_json(tmp_path: Path) -> None:
    box = Mailbox(tmp_path / "mail")
    mail = _mail()
    box.write(mail)
    [eml] = list((tmp_path / "mail").glob("*.eml"))
    [meta] = list((tmp_path / "mail").glob("*.json"))
    assert eml.stem == meta.stem
    assert json.loads(meta.read_text())["operationId"] == mail.operation_id
    assert email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)["Subject"] == mail.subject


def test_messages_filter_by_recipient_subject_and_since() -> None:
    box = Mailbox()
    early = _mail(operation_id="a", received_at=datetime(2026, 1, 1, tzinfo=UTC))
    late = _mail(operation_id="b", subject="Reminder", to=("zed@contoso.test",))
    box.add(early)
    box.add(late)
    assert [m.operation_id for m in box.messages(recipient="EVE@contoso.test")] == ["a", "b"]
    assert [m.operation_id for m in box.messages(recipient="zed@contoso.test")] == ["b"]
    assert [m.operation_id for m in box.messages(subject="Remind")] == ["b"]
    since = datetime(2026, 1, 2, tzinfo=UTC)
    assert [m.operation_id for m in box.messages(since=since)] == ["b"]
    assert [m.operation_id for m in box.messages(since=since.timestamp())] == ["b"]
    assert box.get("a") is early
    box.clear()
    assert box.messages() == []


def test_captured_email_is_frozen() -> None:
    mail = _mail()
    with pytest.raises(AttributeError):
        mail.subject = "changed"  # type: ignore[misc]


def test_throttle_then_fail_then_stall_are_drawn_in_that_order() -> None:
    faults = Faults()
    faults.stall_next(1)
    faults.throttle_next(1, retry_after=3)
    assert faults.decide_send().throttle_retry_after == 3
    faults.fail_rate = 1.0
    faults.fail_statuses = (502,)
    assert faults.decide_send().fail_status == 502
    faults.fail_rate = 0.0
    assert faults.decide_send().stall
    assert faults.decide_send() == faults.decide_send()


def test_latency_is_fixed_plus_jitter() -> None:
    faults = Faults(latency_ms=100, jitter_ms=20)
    delays = [faults.delay_s() for _ in range(200)]
    assert all(0.1 <= d <= 0.12 for d in delays)
    assert Faults().delay_s() == 0.0


@pytest.mark.parametrize(
    "changes",
    [
        {"fail_rate": 2},
        {"latency_ms": -1},
        {"fail_statuses": [404]},
        {"bogus": 1},
        {"status_404_first": "yes"},
    ],
)
def test_bad_fault_values_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies by knob
        Faults().update(changes)


def test_update_applies_every_knob() -> None:
    faults = Faults()
    faults.update(
        {
            "fail_rate": 0.5,
            "latency_ms": 5,
            "jitter_ms": 1,
            "status_404_first": True,
            "stall_next": 2,
            "throttle_next": 1,
        }
    )
    state = faults.to_dict()
    assert state["fail_rate"] == 0.5
    assert state["stall_pending"] == 2
    assert state["throttle_pending"] == 1
    assert state["status_404_first"] is True
    faults.reset()
    assert faults.to_dict()["stall_pending"] == 0


def test_fail_next_fails_exactly_that_many_sends_then_none() -> None:
    faults = Faults()
    faults.fail_next(2, status=502)
    decisions = [faults.decide_send().fail_status for _ in range(4)]
    assert decisions == [502, 502, None, None]
    assert faults.to_dict()["fail_pending"] == 0
    with pytest.raises(ValueError, match="500, 502 or 503"):
        faults.fail_next(1, status=404)
