"""The ACS Email data plane: ``POST /emails:send`` and ``GET /emails/operations/{id}``.

Order of checks for a send, chosen so every request "accrues against the quota" as the service
documents: authentication, api-version, injected latency, forced throttling, quota, injected 5xx,
body validation, ``Operation-Id`` idempotency, capture, then 202 (or a stall).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from datetime import UTC, datetime

from aiohttp import web

from postbus.emulators.acs_email.errors import ApiError, error_response
from postbus.emulators.acs_email.mailbox import CapturedAttachment, CapturedEmail
from postbus.emulators.acs_email.operations import Operation
from postbus.emulators.acs_email.quota import Bucket
from postbus.emulators.acs_email.state import EmulatorState
from postbus.emulators.acs_email.validation import (
    API_VERSIONS,
    EmailRequest,
    check_api_version,
    parse_email_request,
)
from postbus.logs import get_logger

__all__ = ["STATE_KEY", "add_data_plane_routes"]

log = get_logger(__name__)

STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("acs_email_state", EmulatorState)

_OPERATION_ID_RE = re.compile(r"^[A-Za-z0-9._~-]{1,128}$")
_SUPPORTED = ", ".join(API_VERSIONS)
_STATUS_TEXT = {
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}


def add_data_plane_routes(app: web.Application) -> None:
    app.router.add_post("/emails:send", _send)
    app.router.add_get("/emails/operations/{operation_id}", _status)


def _common_headers(request: web.Request) -> dict[str, str]:
    headers = {"x-ms-request-id": str(uuid.uuid4()), "api-supported-versions": _SUPPORTED}
    client_id = request.headers.get("x-ms-client-request-id")
    if client_id:
        headers["x-ms-client-request-id"] = client_id
    return headers


def _authenticate(state: EmulatorState, request: web.Request, body: bytes) -> str:
    state.verifier.verify(
        method=request.method, target=request.raw_path, host=request.host, headers=request.headers, body=body
    )
    return check_api_version(request.query.get("api-version"))


def _throttled(retry_after: int, bucket: Bucket) -> ApiError:
    """429 TooManyRequests; ``retry_after`` 0 (only from the fault knob) omits the header."""
    what = "send email" if bucket == "send" else "get email status"
    message = f"The {what} rate limit for this resource has been exceeded."
    if retry_after:
        message += f" Retry after {retry_after} seconds."
    return ApiError(
        429,
        "TooManyRequests",
        message,
        reason="quota",
        headers={"Retry-After": str(retry_after)} if retry_after else {},
    )


def _operation_location(request: web.Request, op_id: str, api_version: str) -> str:
    return f"{request.scheme}://{request.host}/emails/operations/{op_id}?api-version={api_version}"


def _operation_response(
    request: web.Request, op: Operation, now: float, *, status: int, api_version: str
) -> web.Response:
    headers = _common_headers(request)
    if status == 202:
        # The 202 body is never terminal (also for a replay): a terminal 202 makes the SDK skip
        # polling and return a Failed body without raising. The true status comes from the GET.
        body: dict[str, object] = {"id": op.id, "status": "Running"}
        headers["retry-after"] = str(op.retry_after(now))
        headers["Operation-Location"] = _operation_location(request, op.id, api_version)
        headers["Operation-Id"] = op.id
    else:
        body = op.to_json(now)
        if body["status"] == "Running":
            headers["retry-after"] = str(op.retry_after(now))
    return web.Response(
        status=status, text=json.dumps(body), content_type="application/json", headers=headers
    )


def _capture(op: Operation, email: EmailRequest, api_version: str) -> CapturedEmail:
    names = {a.address: a.display_name for a in (*email.recipients, *email.reply_to) if a.display_name}
    return CapturedEmail(
        operation_id=op.id,
        sender=email.sender,
        to=tuple(a.address for a in email.to),
        cc=tuple(a.address for a in email.cc),
        bcc=tuple(a.address for a in email.bcc),
        reply_to=tuple(a.address for a in email.reply_to),
        subject=email.subject,
        html=email.html,
        plain_text=email.plain_text,
        headers=email.headers,
        attachments=tuple(
            CapturedAttachment(a.name, a.content_type, a.content, a.content_id) for a in email.attachments
        ),
        received_at=datetime.now(UTC),
        api_version=api_version,
        display_names=names,
        outcome=op.outcome,
        error_code=op.error_code,
    )


async def _send(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    try:
        return await _accept(state, request)
    except ApiError as err:
        state.stats.rejected(err.reason)
        return error_response(err, extra_headers=_common_headers(request))
    finally:
        state.stats.latency("send", time.perf_counter() - started)


async def _accept(state: EmulatorState, request: web.Request) -> web.StreamResponse:
    body = await request.read()
    api_version = _authenticate(state, request, body)
    decision = state.faults.decide_send()
    if decision.delay_s:
        await asyncio.sleep(decision.delay_s)
    if decision.throttle_retry_after is not None:
        raise _throttled(decision.throttle_retry_after, "send")
    wait = state.quota.try_acquire("send")
    if wait is not None:
        raise _throttled(wait, "send")
    if decision.fail_status is not None:
        code = _STATUS_TEXT.get(decision.fail_status, "InternalServerError")
        raise ApiError(decision.fail_status, code, "Injected fault.", reason=f"fault:{decision.fail_status}")

    email = parse_email_request(body, api_version=api_version)
    op_id = request.headers.get("Operation-Id")
    if op_id is not None and not _OPERATION_ID_RE.match(op_id):
        raise ApiError(
            400,
            "BadRequest",
            "The Operation-Id header is not a valid id.",
            target="Operation-Id",
            reason="validation:BadRequest",
        )
    op, created = state.operations.create(
        op_id=op_id,
        body=body,
        recipients=[a.address for a in email.recipients],
        succeed_after=state.succeed_after,
        rules=state.failure_rules,
        conflict_status=state.conflict_status,
    )
    state.stats.accepted(replay=not created)
    if created:
        mail = _capture(op, email, api_version)
        state.mailbox.add(mail)
        if state.mailbox.directory is not None:
            await asyncio.to_thread(state.mailbox.write, mail)
        if state.reporter is not None:
            failed = op.error_code if op.outcome == "Failed" else None
            state.reporter.accepted(
                op.id,
                email.sender,
                mail.recipients,
                failed_code=failed,
                on_reported=state.mailbox.set_delivery_status,
            )
    if decision.stall and state.stopping is not None:
        log.info("acs_email.send_stalled", operation_id=op.id)
        await state.stopping.wait()
        # The client gave up long ago; drop the connection rather than answer.
        if request.transport is not None:
            request.transport.close()
        raise web.HTTPServiceUnavailable()
    return _operation_response(request, op, state.operations.now(), status=202, api_version=api_version)


async def _status(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE_KEY]
    started = time.perf_counter()
    try:
        api_version = _authenticate(state, request, await request.read())
        delay = state.faults.delay_s()
        if delay:
            await asyncio.sleep(delay)
        wait = state.quota.try_acquire("status")
        if wait is not None:
            raise _throttled(wait, "status")
        state.stats.status_read()
        op_id = request.match_info["operation_id"]
        op = state.operations.get(op_id)
        first = state.operations.first_read(op_id) if op is not None else False
        if op is None or (first and state.faults.status_404_first):
            raise ApiError(
                404, "NotFound", f"No email send operation with id '{op_id}' was found.", reason="not_found"
            )
        return _operation_response(request, op, state.operations.now(), status=200, api_version=api_version)
    except ApiError as err:
        state.stats.rejected(err.reason)
        return error_response(err, extra_headers=_common_headers(request))
    finally:
        state.stats.latency("status", time.perf_counter() - started)
