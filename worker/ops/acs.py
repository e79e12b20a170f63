"""Read-only ACS Email calls for the operations commands: operation status with its error.

``worker.mailer.AcsMailer.lookup`` answers only "known or not"; support needs the terminal
status and ACS's error text, and the doctor needs to tell "credentials accepted" (404 for an
unknown operation) from "refused" (401). Status reads have their own ACS quota (60/min, 200/h on
custom domains), so callers pace them. ``azure.core`` exceptions are translated here, once::

    async with AcsStatusClient.from_settings(settings) as acs:
        info = await acs.lookup("8540c0de-899f-5cce-acb5-3ec493af3800")   # None when unknown
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Protocol, Self

from azure.communication.email.aio import EmailClient
from azure.core.exceptions import AzureError
from azure.core.rest import HttpRequest

from postbus.logs import redact
from postbus.settings import Settings
from postbus.worker.mailer import API_VERSION, email_client
from postbus.worker.ops.errors import OpsError

__all__ = ["AcsRefused", "AcsStatusClient", "OperationInfo", "OperationLookup"]

_TIMEOUT: Final = 15.0


class AcsRefused(OpsError):
    """ACS refused the credentials (401/403): the access key, connection string or role is wrong."""


@dataclass(frozen=True, slots=True)
class OperationInfo:
    """What ACS says about one send operation."""

    operation_id: str
    status: str  # NotStarted, Running, Succeeded, Failed, Canceled (as ACS spells it)
    error_code: str = ""
    error_message: str = ""

    @property
    def accepted(self) -> bool:
        """ACS took the email and has not given up on it (running or succeeded)."""
        return self.status.lower() in ("notstarted", "running", "succeeded")


class OperationLookup(Protocol):
    """Looks up ACS send operations (the seam for unit tests of the replay)."""

    async def lookup(self, operation_id: str) -> OperationInfo | None:
        """The operation, or ``None`` when ACS does not know it (404)."""
        ...


class AcsStatusClient:
    """:class:`OperationLookup` over the async ACS Email SDK (HMAC or Entra credentials)."""

    def __init__(self, client: EmailClient, *, credential: Any = None) -> None:
        self._client = client
        self._credential = credential

    @classmethod
    def from_settings(cls, settings: Settings, *, purpose: str = "ACS status lookups") -> AcsStatusClient:
        client, owned = email_client(settings, purpose=purpose, read_timeout=_TIMEOUT)
        return cls(client, credential=owned)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()
        if self._credential is not None:
            await self._credential.close()

    async def lookup(self, operation_id: str) -> OperationInfo | None:
        request = HttpRequest(
            "GET", f"/emails/operations/{operation_id}", params={"api-version": API_VERSION}
        )
        try:
            async with asyncio.timeout(_TIMEOUT + 5):
                response = await self._client.send_request(request)
                await response.read()
        except (AzureError, TimeoutError, OSError) as exc:
            raise OpsError(f"could not reach ACS: {type(exc).__name__}: {redact(str(exc))}") from exc
        status = response.status_code
        if status == 404:
            return None
        body = _json(response)
        raw_error = body.get("error")
        error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
        code, message = str(error.get("code", "")), str(error.get("message", ""))
        if status in (401, 403):
            raise AcsRefused(f"ACS refused the credentials ({status}): {code} {message}".strip())
        if status == 429:
            raise OpsError(
                f"ACS throttled the status read (429, Retry-After {response.headers.get('Retry-After')})"
            )
        if status != 200:
            raise OpsError(f"ACS answered {status} to a status read: {code} {message}".strip())
        return OperationInfo(operation_id, str(body.get("status", "")), code, message)


def _json(response: Any) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
