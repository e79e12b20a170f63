"""Large attachments through the claim check, end to end, on both attachment store backends.

Producers publish through the real azure-servicebus SDK to the Service Bus emulator, the worker
sends through the real ACS SDK to the ACS Email emulator, and the attachment store is a local
directory or a container on Azurite's Blob service reached through azure-storage-blob.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient
from pydantic import SecretStr

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.errors import InvalidEvent
from postbus.events import parse_event
from postbus.lanes import LaneNotAllowed
from postbus.producers.publisher import Publisher, PublishError, SyncPublisher
from postbus.reasons import DeadLetterReason
from postbus.settings import Settings
from postbus.worker.mailer import EVENT_ID_HEADER
from postbus.worker.ops import AcsStatusClient, DeadLetterQueue, ReplayOptions, replay
from postbus.worker.rendering import TemplateRenderer
from postbus.worker.runner import Worker
from tests.azurite.server import Azurite
from tests.claimcheck_support import StoreBackend, key_of, make_backend, pdf_bytes
from tests.support import running

_data = TemplateRenderer().sample_data("return.label")
QUEUE = "notifications"


@pytest.fixture(scope="module")
def azurite_blob(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    with Azurite(tmp_path_factory.mktemp("azurite-blob"), service="blob") as server:
        yield server


@pytest.fixture(params=["local", "blob"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    azurite = request.getfixturevalue("azurite_blob") if request.param == "blob" else None
    return make_backend(request.param, tmp_path, azurite, f"claims{uuid.uuid4().hex[:12]}")


@pytest.fixture
def cc_settings(settings: Settings, backend: StoreBackend) -> Settings:
    return settings.model_copy(update=backend.settings_update())


@pytest.fixture
async def cc_publisher(cc_settings: Settings) -> AsyncIterator[Publisher]:
    async with Publisher.from_settings(cc_settings) as opened:
        yield opened


def _label(event_id: str, *files: tuple[str, bytes]) -> Any:
    return {
        "id": event_id,
        "type": "return.label",
        "to": ["jane@example.com"],
        "sender": "returns",
        "data": _data,
        "attachments": [
            {
                "name": name,
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(data).decode(),
            }
            for name, data in files
        ],
    }


async def _dead_letters(settings: Settings) -> dict[str, str]:
    assert settings.servicebus_connection_string is not None
    secret = settings.servicebus_connection_string.get_secret_value()
    async with (
        ServiceBusClient.from_connection_string(secret) as client,
        client.get_queue_receiver(QUEUE, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
    ):
        peeked = await receiver.peek_messages(max_message_count=50)
    return {str(m.message_id): f"{m.dead_letter_reason}: {m.dead_letter_error_description}" for m in peeked}


async def test_300_kb_and_7_mb_labels_arrive_byte_identical(
    cc_settings: Settings,
    cc_publisher: Publisher,
    backend: StoreBackend,
    acs: EmailEmulator,
    servicebus: ServiceBusEmulator,
) -> None:
    # Given a 300 KB and a 7 MB PDF (9.3 MB once base64-encoded, under ACS's 10 MB)
    small, large = pdf_bytes(300 * 1024, seed=1), pdf_bytes(7 * 1024 * 1024, seed=2)
    # When they are published (the queue takes 256 KB per message) and a worker runs
    await cc_publisher.publish_many(
        [_label("rl-300k", ("label.pdf", small)), _label("rl-7m", ("label.pdf", large))]
    )
    assert backend.keys() == sorted([key_of(small), key_of(large)])
    async with running(Worker(cc_settings)) as worker:
        mails = await acs.mailbox.wait_for(count=2, timeout=60)
        await servicebus.wait_until_empty(QUEUE, timeout=30)
    # Then each email carries its PDF byte for byte, and the blobs stay for retries and replays
    by_event = {m.headers[EVENT_ID_HEADER]: m for m in mails}
    assert [a.content for a in by_event["rl-300k"].attachments] == [small]
    assert [a.content for a in by_event["rl-7m"].attachments] == [large]
    assert by_event["rl-7m"].attachments[0].content_type == "application/pdf"
    assert worker.counts["sent"] == 2
    assert backend.keys() == sorted([key_of(small), key_of(large)])


async def test_a_tampered_and_a_deleted_blob_are_dead_lettered_attachment_unavailable(
    cc_settings: Settings,
    cc_publisher: Publisher,
    backend: StoreBackend,
    acs: EmailEmulator,
    servicebus: ServiceBusEmulator,
) -> None:
    tampered, deleted = pdf_bytes(100 * 1024, seed=3), pdf_bytes(120 * 1024, seed=4)
    await cc_publisher.publish_many(
        [_label("rl-tampered", ("a.pdf", tampered)), _label("rl-deleted", ("b.pdf", deleted))]
    )
    # When one blob is overwritten with other bytes of the same size and the other is deleted
    backend.overwrite(key_of(tampered), pdf_bytes(len(tampered), seed=99))
    backend.delete(key_of(deleted))
    async with running(Worker(cc_settings)) as worker:
        await servicebus.wait_for(QUEUE, lambda c: c.dead_lettered == 2, timeout=30)
    # Then neither is sent, and both are dead-lettered with the reason and what was wrong
    letters = await _dead_letters(cc_settings)
    assert letters["rl-tampered"].startswith(f"{DeadLetterReason.ATTACHMENT_UNAVAILABLE}: ")
    assert "does not match its SHA-256" in letters["rl-tampered"]
    assert letters["rl-deleted"].startswith(f"{DeadLetterReason.ATTACHMENT_UNAVAILABLE}: ")
    assert "is not in" in letters["rl-deleted"]
    assert len(acs.mailbox) == 0
    assert worker.counts["dead_lettered"] == 2


async def test_a_delayed_retry_finds_its_blob(
    cc_settings: Settings, cc_publisher: Publisher, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    label = pdf_bytes(300 * 1024, seed=5)
    # Given ACS fails the first send and its quick retries, so the worker schedules a copy
    acs.faults.fail_next(cc_settings.retry_quick_attempts + 1, status=503)
    await cc_publisher.publish(_label("rl-retry", ("label.pdf", label)))
    async with running(Worker(cc_settings)) as worker:
        (mail,) = await acs.mailbox.wait_for(count=1, timeout=60)
        await servicebus.wait_until_empty(QUEUE, timeout=30)
    # Then the scheduled copy fetched the same blob and sent it whole
    assert worker.counts["retry_scheduled"] == 1, worker.counts
    assert [a.content for a in mail.attachments] == [label]


async def test_a_dead_letter_replay_finds_its_restored_blob(
    cc_settings: Settings,
    cc_publisher: Publisher,
    backend: StoreBackend,
    acs: EmailEmulator,
    servicebus: ServiceBusEmulator,
) -> None:
    label = pdf_bytes(200 * 1024, seed=6)
    await cc_publisher.publish(_label("rl-replay", ("label.pdf", label)))
    backend.delete(key_of(label))
    async with running(Worker(cc_settings)):
        await servicebus.wait_for(QUEUE, lambda c: c.dead_lettered == 1, timeout=30)
        # When the file is put back (publishing it again restores the blob) and the dead letter replayed
        assert cc_publisher.attachments is not None
        await cc_publisher.attachments.put(key_of(label), label, content_type="application/pdf")
        async with (
            DeadLetterQueue(cc_settings, wait_time=0.3) as dlq,
            AcsStatusClient.from_settings(cc_settings) as status,
        ):
            summary = await replay(
                dlq, status, options=ReplayOptions(), namespace=cc_settings.operation_namespace
            )
        assert [item.action for item in summary.items] == ["replayed"]
        (mail,) = await acs.mailbox.wait_for(count=1, timeout=30)
        await servicebus.wait_until_empty(QUEUE, timeout=30)
    assert [a.content for a in mail.attachments] == [label]


async def test_the_same_event_published_twice_uploads_once(
    cc_publisher: Publisher, backend: StoreBackend
) -> None:
    label = pdf_bytes(300 * 1024, seed=7)
    store = cc_publisher.attachments
    assert store is not None
    await cc_publisher.publish(parse_event(_label("rl-twice", ("label.pdf", label))))
    await cc_publisher.publish(parse_event(_label("rl-twice", ("label.pdf", label))))
    await cc_publisher.publish(parse_event(_label("rl-twice-other-event", ("copy.pdf", label))))
    assert store.uploads == 1
    assert backend.keys() == [key_of(label)]


async def test_an_event_over_10_mb_is_refused_at_publish_and_nothing_is_uploaded(
    cc_publisher: Publisher, backend: StoreBackend
) -> None:
    # 8 MB of PDF is 10.7 MB of base64: over the 10 MiB ACS accepts in one request
    document = _label("rl-huge", ("a.pdf", pdf_bytes(8_000_000, seed=8)))
    with pytest.raises(InvalidEvent, match=r"attachments: \d+ bytes of base64, ACS accepts at most 10485760"):
        await cc_publisher.publish(document)
    # And neither does a type ACS does not send
    exe = _label("rl-exe", ("setup.pdf", pdf_bytes(300 * 1024, seed=9)))
    exe["attachments"][0]["content_type"] = "application/x-msdownload"
    with pytest.raises(InvalidEvent, match="not an attachment type ACS Email sends"):
        await cc_publisher.publish(exe)
    assert backend.keys() == []


async def test_the_sync_publisher_claim_checks_too(
    cc_settings: Settings, backend: StoreBackend, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    label = pdf_bytes(300 * 1024, seed=10)

    def publish() -> None:
        with SyncPublisher.from_settings(cc_settings) as publisher:
            publisher.publish(_label("rl-sync", ("label.pdf", label)))

    await asyncio.to_thread(publish)
    assert backend.keys() == [key_of(label)]
    async with running(Worker(cc_settings)):
        (mail,) = await acs.mailbox.wait_for(count=1, timeout=30)
        await servicebus.wait_until_empty(QUEUE, timeout=30)
    assert [a.content for a in mail.attachments] == [label]


async def test_postbus_publish_claim_checks_a_300_kb_label(
    cc_settings: Settings,
    backend: StoreBackend,
    servicebus: ServiceBusEmulator,
    acs: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # The report of the issue: `postbus publish` of a 300 KB label used to fail with "larger than the
    # 261632-byte message limit".
    from postbus.cli import main

    label = pdf_bytes(300 * 1024, seed=11)
    path = tmp_path / "att300k.json"
    path.write_text(json.dumps(_label("att300k", ("label.pdf", label))), encoding="utf-8")
    monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", servicebus.connection_string)
    monkeypatch.setenv("POSTBUS_ATTACHMENT_STORE_URL", backend.url)
    if backend.connection_string is not None:
        monkeypatch.setenv("POSTBUS_ATTACHMENT_STORE_CONNECTION_STRING", backend.connection_string)
    monkeypatch.setenv("POSTBUS_LOG_LEVEL", "warning")
    try:
        assert await asyncio.to_thread(main, ["publish", "--json", str(path)]) == 0
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if h.get_name() == "postbus"]:
            root.removeHandler(handler)
    assert capsys.readouterr().out.split() == ["att300k"]
    assert backend.keys() == [key_of(label)]
    async with running(Worker(cc_settings)):
        (mail,) = await acs.mailbox.wait_for(count=1, timeout=30)
    assert [a.content for a in mail.attachments] == [label]


async def test_an_unreachable_store_fails_the_publish_with_nothing_sent(
    settings: Settings, servicebus: ServiceBusEmulator
) -> None:
    from tests.azurite.server import ACCOUNT, KEY

    endpoint = f"http://127.0.0.1:1/{ACCOUNT}"
    broken = settings.model_copy(
        update={
            "attachment_store_url": f"{endpoint}/claims",
            "attachment_store_connection_string": SecretStr(
                f"AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={endpoint};"
            ),
        }
    )
    small = _label("rl-fits", ("tiny.pdf", pdf_bytes(10_000, seed=12)))
    large = _label("rl-unstored", ("label.pdf", pdf_bytes(300 * 1024, seed=13)))
    async with Publisher.from_settings(broken) as publisher:
        with pytest.raises(
            PublishError, match=r"^event 'rl-unstored': blob sha256/\w+ in http://127\.0\.0\.1:1/"
        ) as raised:
            await publisher.publish_many([small, large])
    assert raised.value.retryable
    assert str(raised.value).endswith("; nothing was sent")
    assert servicebus.counts(QUEUE).total == 0


async def test_a_lane_refusal_uploads_nothing_and_a_bulk_label_travels_claim_checked_on_its_lane(
    cc_settings: Settings, backend: StoreBackend, acs: EmailEmulator, servicebus: ServiceBusEmulator
) -> None:
    lanes = cc_settings.model_copy(update={"lanes": True})
    label = pdf_bytes(300 * 1024, seed=12)
    async with Publisher.from_settings(lanes) as publisher:
        # Given a call whose second label asks for a lane above its type's default
        raised = {**_label("rl-raised", ("b.pdf", pdf_bytes(300 * 1024, seed=13))), "lane": "critical"}
        # When it is published, the whole call is refused before any attachment is uploaded
        with pytest.raises(LaneNotAllowed, match=r"events\[1\]: .*'critical' is above"):
            await publisher.publish_many([_label("rl-fine", ("a.pdf", label)), raised])
        assert backend.keys() == []
        # And a label that asks for the bulk lane has its PDF moved and travels on the bulk queue
        await publisher.publish({**_label("rl-bulk", ("label.pdf", label)), "lane": "bulk"})
    assert backend.keys() == [key_of(label)]
    assert servicebus.counts(f"{QUEUE}-bulk").active == 1
    assert servicebus.counts(QUEUE).active == 0
    async with running(Worker(lanes)) as worker:
        (mail,) = await acs.mailbox.wait_for(count=1, timeout=30)
        await servicebus.wait_until_empty(f"{QUEUE}-bulk", timeout=30)
    assert [a.content for a in mail.attachments] == [label]
    assert {lane.value: n for lane, n in worker.sent_by_lane.items()} == {"bulk": 1}
