"""The claim check's rules with the in-memory store: what moves, what stays, and how the worker reacts."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from postbus.attachments import MemoryAttachmentStore, check_in
from postbus.attachments.location import (
    ContainerLocation,
    DirectoryLocation,
    check_attachment_credentials,
    parse_attachment_store_url,
)
from postbus.bus import Delivery
from postbus.errors import InvalidEvent, SettingsError
from postbus.events import encode, parse_event
from postbus.reasons import DeadLetterReason, RetryReason
from postbus.settings import Settings, load_settings
from postbus.worker.mailer import FakeMailer
from postbus.worker.outcome import DeadLetter, RetryLater, Sent
from postbus.worker.pipeline import Pipeline
from postbus.worker.rendering import TemplateRenderer

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
_renderer = TemplateRenderer()


def _event(*sizes: int, event_id: str = "rl-1") -> Any:
    return parse_event(
        {
            "id": event_id,
            "type": "return.label",
            "to": ["jane@example.com"],
            "sender": "returns",
            "data": _renderer.sample_data("return.label"),
            "attachments": [
                {
                    "name": f"f{i}.pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(bytes([i]) * size).decode(),
                }
                for i, size in enumerate(sizes)
            ],
        }
    )


async def test_small_attachments_stay_inline_when_the_event_fits() -> None:
    store = MemoryAttachmentStore()
    claim = await check_in(_event(10_000, 20_000), store, inline_max_bytes=64 * 1024, body_budget=250_000)
    assert claim.moved == 0
    assert store.uploads == 0
    assert claim.event == _event(10_000, 20_000)


async def test_the_largest_inline_attachments_move_until_the_event_fits_the_queue() -> None:
    # Three attachments under the threshold, 3 x 60 KB = 240 KB of base64: over a 200 KB budget
    store = MemoryAttachmentStore()
    event = _event(45_000, 60_000, 50_000)
    claim = await check_in(event, store, inline_max_bytes=64 * 1024, body_budget=200_000)
    moved = [a.content_ref is not None for a in claim.event.attachments]
    assert moved == [False, True, False]
    assert len(claim.event.to_json()) <= 200_000
    claim = await check_in(event, store, inline_max_bytes=64 * 1024, body_budget=100_000)
    assert [a.content_ref is not None for a in claim.event.attachments] == [False, True, True]
    assert len(claim.event.to_json()) <= 100_000


async def test_an_attachment_over_the_threshold_always_moves() -> None:
    store = MemoryAttachmentStore()
    claim = await check_in(_event(70_000), store, inline_max_bytes=64 * 1024, body_budget=10_000_000)
    (attachment,) = claim.event.attachments
    assert attachment.content_ref is not None
    assert attachment.content_ref.sha256 == hashlib.sha256(bytes([0]) * 70_000).hexdigest()
    assert claim.uploaded == 1


def test_a_reference_must_name_its_own_content() -> None:
    digest = "a" * 64
    base = {"id": "x", "type": "return.label", "to": ["j@example.com"], "sender": "returns"}
    with pytest.raises(InvalidEvent, match=r"attachments\.0\.content_ref: .*key must be 'sha256/<sha256>'"):
        parse_event(
            base
            | {
                "attachments": [
                    {
                        "name": "a.pdf",
                        "content_type": "application/pdf",
                        "content_ref": {"key": "../../etc/passwd", "size": 1, "sha256": digest},
                    }
                ]
            }
        )
    with pytest.raises(InvalidEvent, match="exactly one of content_base64 and content_ref"):
        parse_event(base | {"attachments": [{"name": "a.pdf", "content_type": "application/pdf"}]})


def test_a_reference_counts_its_base64_size_against_the_acs_limit() -> None:
    digest = "b" * 64
    ref = {"key": f"sha256/{digest}", "size": 8_000_000, "sha256": digest}
    base = {"id": "x", "type": "return.label", "to": ["j@example.com"], "sender": "returns"}
    with pytest.raises(InvalidEvent, match="10666668 bytes of base64, ACS accepts at most 10485760"):
        parse_event(
            base | {"attachments": [{"name": "a.pdf", "content_type": "application/pdf", "content_ref": ref}]}
        )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("file:.postbus/attachments", DirectoryLocation),
        ("file:///srv/postbus/attachments", DirectoryLocation),
        ("https://contoso.blob.core.windows.net/claim-checks", ContainerLocation),
        ("http://127.0.0.1:10000/devstoreaccount1/claims", ContainerLocation),
    ],
)
def test_store_urls(url: str, expected: type) -> None:
    assert isinstance(parse_attachment_store_url(url), expected)


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("file://host/dir", "names no host"),
        ("http://contoso.blob.core.windows.net/c1c", "plain http is only for a local emulator"),
        ("https://contoso.blob.core.windows.net/Bad_Name", "container name"),
        ("https://contoso.blob.core.windows.net/a/b", "the path must be /<container>"),
        ("s3://bucket", "is not an attachment store URL"),
    ],
)
def test_bad_store_urls_say_why(url: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        parse_attachment_store_url(url)


def test_a_connection_string_must_match_the_url_account() -> None:
    url = "https://contoso.blob.core.windows.net/claims"
    assert check_attachment_credentials(url, "AccountName=contoso;AccountKey=a2V5") is None
    problem = check_attachment_credentials(url, "AccountName=fabrikam;AccountKey=a2V5")
    assert problem is not None
    assert "'fabrikam'" in problem
    with pytest.raises(
        SettingsError, match="POSTBUS_ATTACHMENT_STORE_CONNECTION_STRING needs a blob container URL"
    ):
        load_settings(attachment_store_connection_string="AccountName=contoso;AccountKey=a2V5")


class _Gate:
    async def acquire(self) -> None:
        return None

    def on_accepted(self) -> None:
        return None

    def on_throttled(self, retry_after: float) -> None:
        return None

    def set_replicas(self, count: int | None) -> None:
        pass

    @property
    def rate(self) -> float:
        return 1.0

    @property
    def paused_until(self) -> float:
        return 0.0


@pytest.fixture
def settings() -> Settings:
    return load_settings(senders={"returns": "returns@shop.example.com"}, retry_backoff_base_seconds=2.0)


async def _process(settings: Settings, store: MemoryAttachmentStore, event: Any) -> tuple[Any, FakeMailer]:
    mailer = FakeMailer()
    pipeline = Pipeline(
        settings=settings, renderer=_renderer, mailer=mailer, gate=_Gate(), now=lambda: NOW, attachments=store
    )
    wire = encode(event, attempt=0, first_enqueued=NOW - timedelta(minutes=1))
    delivery = Delivery(
        body=wire.body,
        content_type=wire.content_type,
        application_properties=wire.application_properties,
        message_id=wire.message_id,
        delivery_count=0,
    )
    processed = await pipeline.process(delivery)
    # The canonical line reports the fetch time for events that had claim-checked attachments.
    assert (processed.attachments is not None) == any(a.content_ref for a in event.attachments)
    return processed.outcome, mailer


async def test_the_worker_sends_the_fetched_bytes(settings: Settings) -> None:
    store = MemoryAttachmentStore()
    claim = await check_in(_event(70_000), store, inline_max_bytes=1024, body_budget=250_000)
    outcome, mailer = await _process(settings, store, claim.event)
    assert isinstance(outcome, Sent)
    ((_, payload),) = mailer.sent
    assert base64.b64decode(payload["attachments"][0]["contentInBase64"]) == bytes([0]) * 70_000


async def test_an_unreachable_store_is_a_delayed_retry_not_a_dead_letter(settings: Settings) -> None:
    store = MemoryAttachmentStore()
    claim = await check_in(_event(70_000), store, inline_max_bytes=1024, body_budget=250_000)
    store.unavailable = True
    outcome, mailer = await _process(settings, store, claim.event)
    assert isinstance(outcome, RetryLater)
    assert outcome.reason is RetryReason.TRANSIENT
    assert "unavailable" in outcome.error
    assert mailer.sent == []


async def test_a_shorter_blob_is_dead_lettered_with_both_sizes(settings: Settings) -> None:
    store = MemoryAttachmentStore()
    claim = await check_in(_event(70_000), store, inline_max_bytes=1024, body_budget=250_000)
    (key,) = store.blobs
    store.blobs[key] = (b"truncated", "application/pdf", NOW)
    outcome, mailer = await _process(settings, store, claim.event)
    assert isinstance(outcome, DeadLetter)
    assert outcome.reason is DeadLetterReason.ATTACHMENT_UNAVAILABLE
    assert "is 9 bytes in memory:, the event says 70000" in outcome.description
    assert mailer.sent == []
