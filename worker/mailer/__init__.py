"""Sending email through ACS: the :class:`Mailer` seam, the ACS adapter, and its fake.

* :mod:`.base`: the :class:`Mailer` protocol and its answers (:class:`SendResult`, :class:`OperationStatus`);
* :mod:`.payload`: the ACS ``EmailMessage`` of an event and its idempotent operation id;
* :mod:`.answers`: the table that says what an ACS error answer means for the message;
* :mod:`.client`: the ``EmailClient`` built from the settings;
* :mod:`.acs`: :class:`AcsMailer`, the only place ACS SDK exceptions are caught;
* :mod:`.fake`: :class:`FakeMailer` for unit tests.
"""

from __future__ import annotations

from postbus.worker.mailer.acs import AcsMailer, translate
from postbus.worker.mailer.answers import ACS_ANSWERS, AcsAnswer, classify, retry_after_seconds
from postbus.worker.mailer.base import Mailer, OperationStatus, SendResult
from postbus.worker.mailer.client import API_VERSION, email_client, parse_connection_string
from postbus.worker.mailer.fake import FakeMailer
from postbus.worker.mailer.payload import EVENT_ID_HEADER, build_payload, operation_id_for, oversize

__all__ = [
    "ACS_ANSWERS",
    "API_VERSION",
    "EVENT_ID_HEADER",
    "AcsAnswer",
    "AcsMailer",
    "FakeMailer",
    "Mailer",
    "OperationStatus",
    "SendResult",
    "build_payload",
    "classify",
    "email_client",
    "operation_id_for",
    "oversize",
    "parse_connection_string",
    "retry_after_seconds",
    "translate",
]
