"""Settings refuse exactly the connection strings and keys the real Azure SDKs would fail on later.

The Service Bus check is offline (building a client and a sender opens no connection). The ACS key
check signs a real request through the SDK's HMAC policy against the ACS emulator: a key the
settings accept gets an HTTP answer; a key they refuse makes the SDK raise before sending.
"""

from __future__ import annotations

import binascii
from typing import Any

import pytest
from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import HttpResponseError
from azure.servicebus import ServiceBusClient, parse_connection_string
from hypothesis import event, given
from hypothesis import strategies as st

from postbus.emulators.acs_email import EmailEmulator
from postbus.errors import SettingsError
from postbus.settings import load_settings

# Each part is present or not, spelt right or in another case, with a good or a bad value, so
# that about half the strings are ones the SDK accepts.
_PARTS: list[list[str | None]] = [
    [
        None,
        "Endpoint=sb://pb.servicebus.windows.net/",
        "Endpoint=sb://127.0.0.1:5672",
        "Endpoint=garbage",
        "endpoint=sb://pb.servicebus.windows.net/",
        "Endpoint=https://pb.servicebus.windows.net",
        "Endpoint=",
    ],
    [None, "SharedAccessKeyName=send", "SharedAccessKeyName=", "sharedaccesskeyname=send"],
    [None, "SharedAccessKey=c2VjcmV0", "SharedAccessKey=", "sharedaccesskey=c2VjcmV0"],
    [None, "SharedAccessSignature=SharedAccessSignature sr=pb&sig=abc&se=1900000000&skn=send"],
    [None, "EntityPath=notifications", "EntityPath=orders", "entitypath=orders", "EntityPath="],
    [None, "UseDevelopmentEmulator=true", "UseDevelopmentEmulator=True"],
    [None, "junk", " ", "a=b=c"],
]


@st.composite
def connection_strings(draw: st.DrawFn) -> str:
    parts = [part for choices in _PARTS if (part := draw(st.sampled_from(choices))) is not None]
    return ";".join(draw(st.permutations(parts))) + draw(st.sampled_from(["", ";"]))


def _settings_accept(value: str, queue: str) -> bool:
    try:
        load_settings(None, servicebus_connection_string=value, queue=queue)
    except SettingsError:
        return False
    return True


def _client_accepts(value: str, queue: str) -> bool:
    try:
        client = ServiceBusClient.from_connection_string(value)
        client.get_queue_sender(queue)
    except (ValueError, TypeError, AttributeError):
        return False
    return True


def _parser_accepts(value: str) -> str | None:
    """The queue the SDK's parser would allow (its EntityPath, or ours), or None if it refuses."""
    try:
        return parse_connection_string(value).entity_path or "notifications"
    except ValueError:
        return None


@given(connection_strings())
def test_a_service_bus_string_the_settings_accept_is_one_the_sdk_client_accepts(value: str) -> None:
    for queue in ("notifications", "orders"):
        if _settings_accept(value, queue):
            event("accepted")
            assert _client_accepts(value, queue), value


@given(connection_strings())
def test_a_service_bus_string_the_sdk_parser_accepts_is_accepted_for_its_queue(value: str) -> None:
    queue = _parser_accepts(value)
    if queue is not None and _client_accepts(value, queue):
        assert _settings_accept(value, queue), value


@pytest.mark.parametrize("key", ["c2VjcmV0", "c2VjcmV0x", "c2Vj cmV0", "c2VjcmV0!", "a", "abc", "YQ", "=="])
async def test_an_access_key_is_refused_exactly_when_the_sdk_cannot_sign_with_it(
    acs: EmailEmulator, key: str
) -> None:
    try:
        load_settings(None, acs_endpoint=acs.endpoint, acs_access_key=key)
        accepted = True
    except SettingsError:
        accepted = False
    payload: dict[str, Any] = {
        "senderAddress": "orders@shop.example.com",
        "content": {"subject": "s", "plainText": "t"},
        "recipients": {"to": [{"address": "jane@example.com"}]},
    }
    async with EmailClient(acs.endpoint, AzureKeyCredential(key), retry_total=0) as client:
        try:
            await client.begin_send(payload)
            status = 202
        except binascii.Error:
            status = None  # the HMAC policy could not decode the key: nothing was sent
        except HttpResponseError as exc:
            status = exc.status_code
    # Signed and sent: the emulator accepts its own key and refuses any other with 401.
    assert status in (None, 202, 401)
    assert accepted == (status is not None)
