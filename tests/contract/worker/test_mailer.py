"""The ACS adapter against the ACS emulator through the real SDK: each answer maps to one failure class."""

from __future__ import annotations

from typing import Any

import pytest
from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential

from postbus.emulators.acs_email import EmailEmulator
from postbus.settings import load_settings
from postbus.worker.errors import (
    AmbiguousSend,
    RecipientRejected,
    SystemicError,
    ThrottledError,
    TransientError,
)
from postbus.worker.mailer import AcsMailer, OperationStatus, SendResult, parse_connection_string

OPERATION = "9b2f5a8e-6c1d-4e2f-8a3b-1c2d3e4f5a6b"


def _payload(subject: str = "Your order") -> dict[str, Any]:
    return {
        "senderAddress": "orders@shop.example.com",
        "content": {"subject": subject, "html": "<p>Thanks</p>", "plainText": "Thanks"},
        "recipients": {"to": [{"address": "jane@example.com", "displayName": "Jane"}]},
    }


def _mailer(acs: EmailEmulator, **overrides: Any) -> AcsMailer:
    options: dict[str, Any] = {"acs_endpoint": acs.endpoint, "acs_access_key": acs.access_key}
    options.update(overrides)
    return AcsMailer.from_settings(load_settings(**options))


async def test_a_send_is_accepted_and_can_be_looked_up(acs: EmailEmulator) -> None:
    mailer = _mailer(acs)
    try:
        assert await mailer.lookup(OPERATION) is None
        assert await mailer.send(_payload(), operation_id=OPERATION) is SendResult.ACCEPTED
        assert await mailer.lookup(OPERATION) in (OperationStatus.RUNNING, OperationStatus.SUCCEEDED)
    finally:
        await mailer.close()
    (mail,) = acs.mailbox.messages()
    assert mail.operation_id == OPERATION


async def test_resending_the_same_operation_stores_one_email(acs: EmailEmulator) -> None:
    mailer = _mailer(acs)
    try:
        assert await mailer.send(_payload(), operation_id=OPERATION) is SendResult.ACCEPTED
        assert await mailer.send(_payload(), operation_id=OPERATION) is SendResult.ACCEPTED
        assert await mailer.send(_payload("changed"), operation_id=OPERATION) is SendResult.DUPLICATE
    finally:
        await mailer.close()
    assert len(acs.mailbox.messages()) == 1


async def test_throttling_carries_retry_after(acs: EmailEmulator) -> None:
    acs.faults.throttle_next(1, retry_after=7)
    mailer = _mailer(acs)
    try:
        with pytest.raises(ThrottledError) as caught:
            await mailer.send(_payload(), operation_id=OPERATION)
    finally:
        await mailer.close()
    assert caught.value.retry_after == 7
    assert acs.mailbox.messages() == []


@pytest.mark.parametrize(
    ("status", "error"), [(500, AmbiguousSend), (503, AmbiguousSend), (502, AmbiguousSend)]
)
async def test_server_errors_are_ambiguous(acs: EmailEmulator, status: int, error: type[Exception]) -> None:
    acs.faults.fail_rate = 1.0
    acs.faults.fail_statuses = (status,)
    mailer = _mailer(acs)
    try:
        with pytest.raises(error):
            await mailer.send(_payload(), operation_id=OPERATION)
    finally:
        await mailer.close()


async def test_a_stalled_response_is_ambiguous_and_the_email_was_stored(acs: EmailEmulator) -> None:
    acs.faults.stall_next(1)
    mailer = _mailer(acs, send_timeout_seconds=0.5)
    try:
        with pytest.raises(AmbiguousSend):
            await mailer.send(_payload(), operation_id=OPERATION)
        # the resend with the same operation id is recognised, not stored twice
        assert await mailer.send(_payload(), operation_id=OPERATION) is SendResult.ACCEPTED
    finally:
        await mailer.close()
    assert len(acs.mailbox.messages()) == 1


async def test_a_wrong_key_is_systemic(acs: EmailEmulator) -> None:
    mailer = _mailer(acs, acs_access_key="d3Jvbmcta2V5LXdyb25nLWtleQ==")
    try:
        with pytest.raises(SystemicError, match="401"):
            await mailer.send(_payload(), operation_id=OPERATION)
    finally:
        await mailer.close()


async def test_invalid_recipients_are_rejected(acs: EmailEmulator) -> None:
    payload = _payload()
    payload["recipients"] = {"to": [{"address": "not an address"}]}
    mailer = _mailer(acs)
    try:
        with pytest.raises(RecipientRejected):
            await mailer.send(payload, operation_id=OPERATION)
    finally:
        await mailer.close()


async def test_a_refused_recipient_whose_address_names_a_domain_is_not_systemic(acs: EmailEmulator) -> None:
    # ACS answers 400 InvalidEmailAddress naming the recipient; "domain" in it must not open the breaker.
    payload = _payload()
    payload["recipients"] = {"to": [{"address": "domain admin@sender-domain.example"}]}
    mailer = _mailer(acs)
    try:
        with pytest.raises(RecipientRejected, match="InvalidEmailAddress"):
            await mailer.send(payload, operation_id=OPERATION)
    finally:
        await mailer.close()


async def test_a_refused_sender_is_systemic(acs: EmailEmulator) -> None:
    payload = _payload()
    payload["senderAddress"] = "Orders <orders@shop.example.com>"
    mailer = _mailer(acs)
    try:
        with pytest.raises(SystemicError, match="sender"):
            await mailer.send(payload, operation_id=OPERATION)
    finally:
        await mailer.close()


async def test_an_api_version_the_service_does_not_serve_is_systemic(acs: EmailEmulator) -> None:
    client = EmailClient(
        acs.endpoint, AzureKeyCredential(acs.access_key), api_version="2099-01-01", retry_total=0
    )
    mailer = AcsMailer(client, timeout=5)
    try:
        with pytest.raises(SystemicError, match="UnsupportedApiVersion"):
            await mailer.send(_payload(), operation_id=OPERATION)
    finally:
        await mailer.close()


async def test_an_unreachable_endpoint_is_transient() -> None:
    mailer = AcsMailer.from_settings(load_settings(acs_endpoint="http://127.0.0.1:9", acs_access_key="a2V5"))
    try:
        with pytest.raises(TransientError):
            await mailer.send(_payload(), operation_id=OPERATION)
    finally:
        await mailer.close()


def test_connection_strings_keep_the_scheme() -> None:
    assert parse_connection_string("endpoint=http://127.0.0.1:8025/;accesskey=a2V5") == (
        "http://127.0.0.1:8025",
        "a2V5",
    )
    assert parse_connection_string("Endpoint=contoso.communication.azure.com;AccessKey=a2V5")[0] == (
        "https://contoso.communication.azure.com"
    )
