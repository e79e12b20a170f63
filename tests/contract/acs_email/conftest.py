"""Fixtures for the ACS Email emulator contract tests: the emulator on a free port and real SDK clients."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.communication.email import EmailClient
from azure.core.credentials import AzureKeyCredential

from postbus.emulators.acs_email import EmailEmulator

MESSAGE: dict[str, Any] = {
    "senderAddress": "DoNotReply@contoso.test",
    "recipients": {
        "to": [{"address": "ann@contoso.test", "displayName": "Ann Example"}],
        "cc": [{"address": "bob@contoso.test"}],
    },
    "content": {
        "subject": "Order 42 confirmed",
        "plainText": "Thanks for your order.",
        "html": "<p>Thanks</p>",
    },
}


@pytest.fixture
def message() -> dict[str, Any]:
    return copy.deepcopy(MESSAGE)


@pytest.fixture
def acs() -> Iterator[EmailEmulator]:
    with EmailEmulator() as emulator:
        yield emulator


@pytest.fixture
def make_client() -> Iterator[Callable[..., EmailClient]]:
    """Build sync SDK clients that are closed after the test (their pooled sockets would warn)."""
    made: list[EmailClient] = []

    def make(endpoint: str, credential: Any, **kwargs: Any) -> EmailClient:
        made.append(EmailClient(endpoint, credential, **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(acs: EmailEmulator, make_client: Callable[..., EmailClient]) -> EmailClient:
    # retry_total=0: a test must see the first 4xx/5xx, not sleep through the SDK's retries.
    return make_client(acs.endpoint, AzureKeyCredential(acs.access_key), retry_total=0)
