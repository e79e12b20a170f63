"""An HTTP server with the ACS Email data-plane API, for tests, the demo and benchmarks.

The unmodified ``azure-communication-email`` SDK talks to it over real HTTP: HMAC auth, request
validation, quotas with 429 + ``Retry-After``, fault injection and a captured mailbox.

Example::

    from postbus.emulators.acs_email import EmailEmulator

    async with EmailEmulator(quota="azure-default") as acs:
        client = EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key))
        client.begin_send(message).result()
        [mail] = acs.mailbox.messages()
"""

from __future__ import annotations

from postbus.emulators.acs_email.embedded import EmailEmulator
from postbus.emulators.acs_email.faults import Faults
from postbus.emulators.acs_email.mailbox import CapturedAttachment, CapturedEmail, Mailbox
from postbus.emulators.acs_email.operations import FailureRule
from postbus.emulators.acs_email.quota import QuotaConfig

__all__ = [
    "CapturedAttachment",
    "CapturedEmail",
    "EmailEmulator",
    "FailureRule",
    "Faults",
    "Mailbox",
    "QuotaConfig",
]
