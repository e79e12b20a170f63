"""Error responses shaped like the real ACS Email service.

Every rejection the emulator produces is an :class:`ApiError`. The server turns it into
``{"error": {"code", "message", "target"}}`` with the ``x-ms-error-code`` header, which is what
``azure.core.exceptions.HttpResponseError`` parses into ``e.error.code`` / ``e.message``.
"""

from __future__ import annotations

import json

from aiohttp import web

__all__ = ["ApiError", "error_response"]


class ApiError(Exception):
    """A request the emulator refuses, with the HTTP status and the service's error code.

    ``reason`` is the bucket the rejection is counted under in ``/_emulator/stats``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        target: str | None = None,
        reason: str = "other",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.reason = reason
        self.headers = dict(headers or {})


def error_response(err: ApiError, *, extra_headers: dict[str, str] | None = None) -> web.Response:
    """Render ``err`` as the service does: JSON ``error`` object plus ``x-ms-error-code``."""
    body = {"error": {"code": err.code, "message": err.message, "target": err.target}}
    headers = {"x-ms-error-code": err.code, **err.headers, **(extra_headers or {})}
    return web.Response(
        status=err.status, text=json.dumps(body), content_type="application/json", headers=headers
    )
