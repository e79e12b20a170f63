"""The ACS Email adapter: one async ``EmailClient`` per process, every exception translated here.

Every send carries ``operation_id`` (derived from the event id by the pipeline), so a resend of
the same event is recognised by ACS instead of producing a second email. Sends never poll
(``polling=False``): status reads have their own, smaller quota, and a 202 already means ACS took
the email. The SDK's own retries are off (``retry_total=0``): a 429 must pause the whole process,
not one sleeping coroutine, and the worker decides about resends itself.

This module is the only place that catches ``azure.core`` exceptions for ACS sends; what an error
answer means is the table in :mod:`worker.mailer.answers`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from azure.communication.email.aio import EmailClient
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.rest import HttpRequest

from postbus.settings import Settings
from postbus.worker.errors import AmbiguousSend, ProcessingError, TransientError
from postbus.worker.mailer.answers import AcsAnswer, classify, retry_after_seconds
from postbus.worker.mailer.base import OperationStatus, SendResult
from postbus.worker.mailer.client import API_VERSION, email_client

__all__ = ["AcsMailer", "answer_of", "translate"]


def answer_of(exc: HttpResponseError) -> AcsAnswer:
    """The status, code, target and message of an ACS error answer (the JSON body, else the header)."""
    error = exc.error
    headers = dict(getattr(exc.response, "headers", None) or {})
    code = (error.code if error is not None else None) or headers.get("x-ms-error-code", "")
    message = (error.message if error is not None else None) or str(exc.reason or "")
    target = (error.target if error is not None else None) or ""
    return AcsAnswer(
        status=int(exc.status_code or 0),
        code=code or "",
        target=target,
        message=message,
        retry_after=retry_after_seconds(headers),
    )


def translate(exc: BaseException) -> ProcessingError:
    """Map an SDK or transport failure to what the worker does next."""
    if isinstance(exc, HttpResponseError) and exc.status_code is not None:
        # ClientAuthenticationError (401) is one of these too: the table says what a 401 is.
        return classify(answer_of(exc))
    if isinstance(exc, ClientAuthenticationError):
        return classify(AcsAnswer(401, message=str(exc.message)))
    if isinstance(exc, ServiceResponseError | TimeoutError):
        # The request left; ACS may have accepted it.
        return AmbiguousSend(f"no answer from ACS after sending: {type(exc).__name__}: {exc}")
    if isinstance(exc, ServiceRequestError):
        return TransientError(f"could not reach ACS: {exc}")
    return TransientError(f"ACS call failed: {type(exc).__name__}: {exc}")


class AcsMailer:
    """:class:`Mailer` over the async ACS Email SDK (aiohttp transport).

    Example::

        mailer = AcsMailer.from_settings(settings)
        result = await mailer.send(payload, operation_id=str(uuid5(ns, event.id)))
        await mailer.close()
    """

    def __init__(self, client: EmailClient, *, timeout: float, credential: Any = None) -> None:
        self._client = client
        self._timeout = timeout
        self._credential = credential

    @classmethod
    def from_settings(cls, settings: Settings) -> AcsMailer:
        """Build the client from endpoint + key, connection string, or DefaultAzureCredential."""
        client, owned = email_client(
            settings, purpose="sending email", read_timeout=settings.send_timeout_seconds
        )
        return cls(client, timeout=settings.send_timeout_seconds, credential=owned)

    async def send(self, payload: Mapping[str, Any], *, operation_id: str) -> SendResult:
        try:
            async with asyncio.timeout(self._timeout + 5):
                await self._client.begin_send(dict(payload), operation_id=operation_id, polling=False)
        except (AzureError, TimeoutError, OSError) as exc:
            if isinstance(exc, HttpResponseError) and exc.status_code == 409:
                return SendResult.DUPLICATE
            raise translate(exc) from exc
        return SendResult.ACCEPTED

    async def lookup(self, operation_id: str) -> OperationStatus | None:
        request = HttpRequest(
            "GET", f"/emails/operations/{operation_id}", params={"api-version": API_VERSION}
        )
        try:
            async with asyncio.timeout(self._timeout + 5):
                response = await self._client.send_request(request)
                if response.status_code == 404:
                    return None
                response.raise_for_status()
                status = str(response.json().get("status", "")).lower()
        except (AzureError, TimeoutError, OSError) as exc:
            raise translate(exc) from exc
        if status == "succeeded":
            return OperationStatus.SUCCEEDED
        if status in ("failed", "canceled"):
            return OperationStatus.FAILED
        return OperationStatus.RUNNING

    async def close(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()
