"""Fixtures for the operations commands: both emulators, settings for them, a mixed dead-letter queue.

Dead-lettered messages are produced with the real azure-servicebus SDK (publish, receive in
peek-lock, ``dead_letter_message`` with the worker's reasons), so they carry exactly what the
worker's own dead-letters carry. "Already sent" means ACS knows the operation id the worker would
have used, created with the real ACS SDK.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.servicebus import ServiceBusMessage, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from postbus.bus import to_servicebus_message
from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.events import PROP_GENERATION, NotificationEvent, WireMessage, encode, parse_event
from postbus.settings import DEFAULT_OPERATION_NAMESPACE, Settings, load_settings
from postbus.worker.mailer import operation_id_for
from postbus.worker.rendering import TemplateRenderer
from tests.support import SENDERS

QUEUE = "notifications"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
_samples = TemplateRenderer()


@pytest.fixture
def servicebus() -> Iterator[ServiceBusEmulator]:
    with ServiceBusEmulator(admin_port=0) as emulator:
        yield emulator


@pytest.fixture
def acs() -> Iterator[EmailEmulator]:
    with EmailEmulator() as emulator:
        yield emulator


def settings_for(servicebus: ServiceBusEmulator, acs: EmailEmulator, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "servicebus_connection_string": servicebus.connection_string,
        "acs_endpoint": acs.endpoint,
        "acs_access_key": acs.access_key,
        "senders": SENDERS,
        "quota_per_minute": 0,
        "quota_per_hour": 0,
        "health_port": 0,
        "retry_backoff_base_seconds": 0.2,
        "retry_backoff_cap_seconds": 1.0,
        "log_format": "json",
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(servicebus: ServiceBusEmulator, acs: EmailEmulator) -> Settings:
    return settings_for(servicebus, acs)


@pytest.fixture
def environ(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The same settings as environment variables, for CLI tests."""
    assert settings.servicebus_connection_string is not None
    assert settings.acs_access_key is not None
    monkeypatch.setenv(
        "POSTBUS_SERVICEBUS_CONNECTION_STRING", settings.servicebus_connection_string.get_secret_value()
    )
    monkeypatch.setenv("POSTBUS_ACS_ENDPOINT", settings.acs_endpoint or "")
    monkeypatch.setenv("POSTBUS_ACS_ACCESS_KEY", settings.acs_access_key.get_secret_value())
    monkeypatch.setenv(
        "POSTBUS_SENDERS", '{"orders": "orders@shop.example.com", "care": "care@clinic.example.org"}'
    )
    return settings


def make_event(
    event_id: str, *, type_: str = "order.confirmation", tenant: str = "contoso", **extra: Any
) -> NotificationEvent:
    sender = {"order.confirmation": "orders", "appointment.reminder": "care", "return.label": "returns"}
    document: dict[str, Any] = {
        "id": event_id,
        "type": type_,
        "tenant": tenant,
        "to": ["Jane Doe <jane.doe@example.com>"],
        "sender": sender.get(type_, "orders"),
        "data": _samples.sample_data(type_) if type_ in _samples.types() else {},
    }
    document.update(extra)
    return parse_event(document)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One message to put in the dead-letter queue."""

    wire: WireMessage | None  # None: an undecodable body
    reason: str
    description: str = "test"
    raw: bytes = b""
    message_id: str = ""


def failed(
    event: NotificationEvent, reason: str, *, attempt: int = 0, generation: int = 0, description: str = "test"
) -> DeadLetter:
    extra: dict[str, str | int] = {"traceparent": TRACEPARENT, "postbus-last-error": "boom"}
    if generation:
        extra[PROP_GENERATION] = generation
    wire = encode(event, attempt=attempt, extra_properties=extra)
    if generation:
        from dataclasses import replace

        wire = replace(wire, message_id=f"{event.id}#r{generation}" + (f"#{attempt}" if attempt else ""))
    return DeadLetter(wire, reason, description)


def garbage(message_id: str) -> DeadLetter:
    return DeadLetter(None, "InvalidEvent", "body is not valid JSON", raw=b"{not json", message_id=message_id)


async def fill_dead_letters(connection_string: str, items: Sequence[DeadLetter], queue: str = QUEUE) -> None:
    """Publish each item to ``queue``, then dead-letter it with its reason (real SDK, peek-lock)."""
    by_id: dict[str, DeadLetter] = {}
    messages: list[ServiceBusMessage] = []
    for item in items:
        if item.wire is not None:
            messages.append(to_servicebus_message(item.wire))
            by_id[item.wire.message_id] = item
        else:
            messages.append(
                ServiceBusMessage(item.raw, message_id=item.message_id, content_type="application/json")
            )
            by_id[item.message_id] = item
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        async with client.get_queue_sender(queue, keep_alive=0) as sender:
            await sender.send_messages(messages)
        async with client.get_queue_receiver(queue) as receiver:
            done = 0
            while done < len(items):
                batch = await receiver.receive_messages(max_message_count=len(items) - done, max_wait_time=1)
                for message in batch:
                    item = by_id[str(message.message_id)]
                    await receiver.dead_letter_message(
                        message, reason=item.reason, error_description=item.description
                    )
                    done += 1


async def publish_events(connection_string: str, events: Sequence[NotificationEvent]) -> None:
    """Put events on the queue as a producer does (real SDK), where no worker takes them."""
    client = ServiceBusClient.from_connection_string(connection_string)
    async with client, client.get_queue_sender(QUEUE) as sender:
        await sender.send_messages([to_servicebus_message(encode(event)) for event in events])


async def queue_state(connection_string: str) -> tuple[list[Any], list[Any]]:
    """Every message of the main queue and of its dead-letter queue, peeked (no locks)."""
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        main = await _peek_all(client, sub_queue=None)
        dead = await _peek_all(client, sub_queue=ServiceBusSubQueue.DEAD_LETTER)
    return main, dead


async def _peek_all(client: ServiceBusClient, *, sub_queue: ServiceBusSubQueue | None) -> list[Any]:
    out: list[Any] = []
    async with client.get_queue_receiver(QUEUE, sub_queue=sub_queue) as receiver:
        next_seq = 0
        while True:
            batch = await receiver.peek_messages(max_message_count=100, sequence_number=next_seq)
            if not batch:
                return out
            out.extend(batch)
            next_seq = max(int(m.sequence_number) for m in batch) + 1


def event_ids(messages: Sequence[Any]) -> list[str]:
    return sorted(str(m.message_id).split("#", 1)[0] for m in messages)


def mark_sent(
    acs: EmailEmulator, event: NotificationEvent, *, generation: int = 0, to: str | None = None
) -> str:
    """Make ACS know the operation the worker uses for ``event``'s generation (a real SDK send)."""
    operation_id = operation_id_for(event.id, namespace=DEFAULT_OPERATION_NAMESPACE, generation=generation)
    client = EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key))
    message = {
        "senderAddress": SENDERS["orders"],
        "content": {"subject": f"earlier send of {event.id}", "plainText": "hello"},
        "recipients": {"to": [{"address": to or event.to[0].address}]},
        "headers": {"X-Postbus-Event-Id": event.id},
    }
    client.begin_send(message, operation_id=operation_id, polling=False).result()
    client.close()
    return operation_id


def run(coro: Any) -> Any:
    """Run a coroutine from a sync (CLI) test."""
    return asyncio.run(coro)
