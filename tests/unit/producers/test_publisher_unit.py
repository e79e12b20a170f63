"""Publisher without a broker: settings, the one error translation, the shipped fake."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.servicebus import exceptions as sb

from postbus.errors import InvalidEvent, PostbusError, SettingsError
from postbus.producers.fake import FakePublisher
from postbus.producers.publisher import Publisher, PublishError, SyncPublisher, translate_error
from postbus.settings import load_settings

EMULATOR = (
    "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)


def doc(event_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "id": event_id,
        "type": "order.confirmation",
        "to": ["a@example.com"],
        "sender": "orders",
    } | overrides


@pytest.mark.parametrize("cls", [Publisher, SyncPublisher])
def test_without_service_bus_settings_there_is_one_line_naming_the_variables(cls: Any) -> None:
    with pytest.raises(SettingsError) as caught:
        cls.from_settings(load_settings())
    assert str(caught.value) == (
        "POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE must be set for publishing"
    )
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("cls", [Publisher, SyncPublisher])
def test_a_malformed_connection_string_is_a_settings_error_that_does_not_echo_it(cls: Any) -> None:
    with pytest.raises(SettingsError) as caught:
        cls.from_settings(load_settings(servicebus_connection_string="SharedAccessKey=secret-value"))
    assert "secret-value" not in str(caught.value)
    assert str(caught.value).startswith("POSTBUS_SERVICEBUS_CONNECTION_STRING:")


@pytest.mark.parametrize("cls", [Publisher, SyncPublisher])
def test_the_namespace_comes_from_the_connection_string_or_the_setting(cls: Any) -> None:
    publisher = cls.from_settings(load_settings(servicebus_connection_string=EMULATOR, queue="orders"))
    assert (publisher.namespace, publisher.queue) == ("127.0.0.1:5673", "orders")
    publisher = cls.from_settings(load_settings(servicebus_namespace="pb.servicebus.windows.net"))
    assert publisher.namespace == "pb.servicebus.windows.net"


async def test_an_invalid_event_fails_before_any_connection_is_made() -> None:
    # The connection string points at a closed port: reaching the network would fail differently.
    publisher = Publisher.from_settings(load_settings(servicebus_connection_string=EMULATOR))
    with pytest.raises(InvalidEvent, match=r"events\[1\]: to.0.address"):
        await publisher.publish_many([doc("a"), doc("b", to=["nope"])])
    assert publisher.messages_sent == 0
    await publisher.close()


@pytest.mark.parametrize(
    ("error", "message", "retryable"),
    [
        (sb.MessagingEntityNotFoundError(message="gone"), "queue 'q' does not exist in ns.test", False),
        (
            sb.MessageSizeExceededError(message="too big"),
            "event 'order-1' is too large for queue 'q' in ns.test: too big",
            False,
        ),
        (
            sb.ServiceBusAuthorizationError(message="denied"),
            "not authorized to send to queue 'q' in ns.test: denied",
            False,
        ),
        (
            sb.ServiceBusAuthenticationError(message="bad token"),
            "could not authenticate to ns.test: bad token",
            True,
        ),
        (
            ClientAuthenticationError("no credential"),
            "could not authenticate to ns.test: no credential",
            True,
        ),
        (
            sb.ServiceBusQuotaExceededError(message="full"),
            "queue 'q' in ns.test is full (quota exceeded): full",
            True,
        ),
        (
            sb.ServiceBusServerBusyError(message="busy"),
            "Service Bus is busy (queue 'q' in ns.test); try again later",
            True,
        ),
        (sb.OperationTimeoutError(message="slow"), "timed out sending to queue 'q' in ns.test: slow", True),
        (
            sb.ServiceBusConnectionError(message="refused\nmore"),
            "cannot reach Service Bus at ns.test: refused",
            True,
        ),
        (sb.MessagingEntityDisabledError(message="off"), "queue 'q' in ns.test is disabled", False),
        (sb.ServiceBusError(message="odd"), "Service Bus error sending to queue 'q' in ns.test: odd", True),
    ],
)
def test_azure_errors_become_one_line_publish_errors(error: Exception, message: str, retryable: bool) -> None:
    translated = translate_error(error, queue="q", namespace="ns.test", labels=["order-1"], published=["x"])
    assert isinstance(translated, PostbusError)
    assert (str(translated), translated.retryable, translated.published) == (message, retryable, ("x",))


def test_a_size_error_on_a_batch_names_its_first_event() -> None:
    translated = translate_error(
        sb.MessageSizeExceededError(message="x"), queue="q", namespace="n", labels=["a", "b"]
    )
    assert str(translated).startswith("a batch of 2 events starting with 'a' is too large")


async def test_the_fake_validates_records_and_fails_on_request() -> None:
    fake = FakePublisher(fail_after=3)
    async with fake:
        assert await fake.publish_many([doc("a"), doc("b")]) == ["a", "b"]
        with pytest.raises(InvalidEvent):
            await fake.publish_many([doc("c", sender="Bad Alias")])
        with pytest.raises(PublishError) as caught:
            await fake.publish_many([doc("c"), doc("d")])
    assert caught.value.published == ("c",)
    assert caught.value.retryable
    assert [item.message_id for item in fake.sent] == ["a", "b", "c"]
    assert fake.closed
