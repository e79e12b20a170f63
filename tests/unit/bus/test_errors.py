"""The adapter's one translation: every SDK exception becomes the most specific class of the tree."""

from __future__ import annotations

import pytest
from azure.core.exceptions import AzureError, ClientAuthenticationError, ResourceNotFoundError
from azure.identity import CredentialUnavailableError
from azure.servicebus import exceptions as sb

from postbus.bus import (
    AccessDenied,
    AuthenticationFailed,
    BusBusy,
    BusError,
    BusRefused,
    BusTimeout,
    BusUnavailable,
    ConnectionLost,
    LockLost,
    MessageSizeExceeded,
    QueueDisabled,
    QueueNotFound,
    QuotaExceeded,
    servicebus_errors,
)
from postbus.bus.errors import translate
from postbus.errors import PostbusError


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        (sb.MessageLockLostError(message="lock lost"), LockLost),
        (sb.SessionLockLostError(message="session lost"), LockLost),
        (sb.MessageAlreadySettled(action="complete"), LockLost),  # a ValueError, not a ServiceBusError
        (sb.MessageSizeExceededError(message="too big"), MessageSizeExceeded),  # also a ValueError
        (sb.MessagingEntityNotFoundError(message="gone"), QueueNotFound),
        (ResourceNotFoundError("no queue"), QueueNotFound),  # what the management client raises
        (sb.MessagingEntityDisabledError(message="off"), QueueDisabled),
        (sb.ServiceBusAuthorizationError(message="no Listen right"), AccessDenied),
        (sb.ServiceBusAuthenticationError(message="bad SAS"), AuthenticationFailed),
        (ClientAuthenticationError("token refused"), AuthenticationFailed),
        (CredentialUnavailableError("no managed identity"), AuthenticationFailed),
        (sb.ServiceBusQuotaExceededError(message="full"), QuotaExceeded),
        (sb.ServiceBusServerBusyError(message="busy"), BusBusy),
        (sb.OperationTimeoutError(message="slow"), BusTimeout),
        (TimeoutError(), BusTimeout),
        (sb.ServiceBusConnectionError(message="reset"), ConnectionLost),
        (sb.ServiceBusCommunicationError(message="dns"), ConnectionLost),
        (ValueError("The handler has already been shutdown."), ConnectionLost),
        (ConnectionResetError("peer reset"), ConnectionLost),
        (sb.ServiceBusError(message="odd"), BusUnavailable),
        (AzureError("odder"), BusUnavailable),
    ],
)
def test_each_sdk_exception_maps_to_the_most_specific_class(
    raised: Exception, expected: type[BusError]
) -> None:
    with pytest.raises(expected) as caught, servicebus_errors("complete the message"):
        raise raised
    assert type(caught.value) is expected
    assert caught.value.__cause__ is raised
    assert str(caught.value).startswith("could not complete the message")


def test_the_tree_is_keyed_on_what_the_caller_does_next() -> None:
    assert issubclass(ConnectionLost, BusUnavailable)
    assert issubclass(BusTimeout, BusUnavailable)
    assert issubclass(QuotaExceeded, BusBusy)
    assert issubclass(BusBusy, BusUnavailable)
    assert all(issubclass(cls, BusRefused) for cls in (QueueNotFound, QueueDisabled, AccessDenied))
    assert issubclass(BusError, PostbusError)  # the CLI prints it as one line


def test_the_message_is_one_redacted_line() -> None:
    raised = sb.ServiceBusConnectionError(
        message="refused Endpoint=sb://x/;SharedAccessKey=s3cret-value\nsecond line"
    )
    error = translate(raised, "receive from queue 'notifications'")
    assert "\n" not in str(error)
    assert "s3cret-value" not in str(error)
    assert error.detail.startswith("refused")
    assert str(translate(TimeoutError(), "renew the lock")) == "could not renew the lock: no answer in time"


def test_our_own_errors_pass_through_unchanged() -> None:
    ours = LockLost("complete the message", "already settled")
    with pytest.raises(LockLost) as caught, servicebus_errors("something else"):
        raise ours
    assert caught.value is ours


def test_other_exceptions_are_not_the_adapters_business() -> None:
    with pytest.raises(KeyError), servicebus_errors("complete the message"):
        raise KeyError("a bug of ours")
