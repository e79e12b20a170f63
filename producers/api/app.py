"""The HTTP face of :class:`~postbus.producers.api.ingest.Ingest`: FastAPI routes, auth, problems, logs.

::

    app = create_app(ingest, authenticator)        # then: uvicorn.run(app, ...)

Request bodies are read here, not by FastAPI's validation, so the limits (size, content type)
apply before parsing, and the event is validated by the contract's own :func:`parse_event` with
its messages. The OpenAPI document still describes every body: the contract's JSON Schema is
added to it. One log line per request names the client, route, status and duration; never a
key, a token or a full address.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Final

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from postbus import __version__
from postbus.events import MAX_ID_LENGTH, TOKENS, NotificationEvent
from postbus.logs import get_logger
from postbus.producers.api.auth import Authenticator
from postbus.producers.api.clients import Client
from postbus.producers.api.ingest import MAX_BATCH, Ingest
from postbus.producers.api.problems import PROBLEM_JSON, Problem, ProblemBody
from postbus.producers.api.responses import (
    Accepted,
    BatchResult,
    Health,
    Preview,
    PreviewRequest,
    Status,
    Templates,
)

__all__ = ["create_app"]

_log = get_logger(__name__)
_JSON_TYPES: Final = ("application/json",)
_REF: Final = "#/components/schemas/{model}"
_KEY_HEADER = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key from the client registry."
)
_BEARER = HTTPBearer(auto_error=False, description="A Microsoft Entra ID access token for this API.")


def _problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {
            "model": ProblemBody,
            "content": {PROBLEM_JSON: {"schema": {"$ref": _REF.format(model="ProblemBody")}}},
            "description": "A problem details object (RFC 9457) naming the field.",
        }
        for status in statuses
    }


def _body(schema_ref: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": {"$ref": _REF.format(model=schema_ref)}}},
        }
    }


def _problem_response(problem: Problem, instance: str) -> JSONResponse:
    return JSONResponse(
        problem.document(instance),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=problem.headers,
    )


async def _read_body(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type not in _JSON_TYPES:
        raise Problem(
            "unsupported-media-type",
            f"Content-Type must be application/json, not {content_type or 'missing'!r}",
            field="Content-Type",
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem("too-large", f"the body is {declared} bytes; at most {limit} are accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem("too-large", f"the body is over {limit} bytes; at most {limit} are accepted")
        chunks.append(chunk)
    return b"".join(chunks)


def _schemas() -> dict[str, Any]:
    """The contract's JSON Schema (and the batch request's), for the OpenAPI components."""
    _, top = models_json_schema(
        [(NotificationEvent, "validation"), (PreviewRequest, "validation")],
        by_alias=True,
        ref_template=_REF,
    )
    defs: dict[str, Any] = top.get("$defs", {})
    event = defs.get("NotificationEvent", {})
    for name, (pattern, what) in TOKENS.items():
        prop = event.get("properties", {}).get(name)
        if prop is not None:
            # The contract's own token rules, so generated and hand-written clients see them.
            prop.update(pattern=f"^{pattern.pattern}$", maxLength=MAX_ID_LENGTH, description=what)
    address = defs.get("Address")
    if address is not None:
        address.get("properties", {}).get("address", {})["format"] = "email"
        # The contract also takes an address as one string, "Jane Doe <jane@example.com>".
        defs["Address"] = {
            "anyOf": [
                {
                    "type": "string",
                    "format": "email",
                    "description": "jane@example.com or Jane Doe <jane@example.com>",
                },
                address,
            ]
        }
    defs["BatchRequest"] = {
        "type": "object",
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_BATCH,
                "items": {"$ref": _REF.format(model="NotificationEvent")},
            }
        },
        "required": ["events"],
        "additionalProperties": False,
    }
    return defs


async def _client_of(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    api_key: Annotated[str | None, Depends(_KEY_HEADER)],
) -> Client:
    """The registered client the request's credentials prove (a dependency of every /v1 route)."""
    authenticator: Authenticator = request.app.state.authenticator
    authorization = (
        f"{bearer.scheme} {bearer.credentials}"
        if bearer is not None
        else request.headers.get("authorization")
    )
    client = await authenticator.client(authorization=authorization, api_key=api_key)
    request.state.client = client.name
    return client


Caller = Annotated[Client, Depends(_client_of)]


def _install_problem_handlers(app: FastAPI) -> None:
    """Every refusal, including FastAPI's own, as problem+json."""

    @app.exception_handler(Problem)
    async def problem_handler(request: Request, exc: Problem) -> JSONResponse:
        request.state.problem = exc.kind
        return _problem_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = ".".join(str(p) for p in first.get("loc", ())[1:])
        problem = Problem(
            "invalid-request", f"{field}: {first.get('msg')}" if field else str(first.get("msg")), field=field
        )
        request.state.problem = problem.kind
        return _problem_response(problem, request.url.path)

    @app.exception_handler(Exception)
    async def bug_handler(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's doing: the traceback goes to the log, the caller gets no detail of it.
        _log.error(
            "api request failed", route=getattr(request.scope.get("route"), "path", None), exc_info=exc
        )
        problem = Problem("internal", "the request failed inside the API; it was logged")
        request.state.problem = problem.kind
        return _problem_response(problem, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        body = {
            "type": "about:blank",
            "title": str(exc.detail),
            "status": exc.status_code,
            "detail": str(exc.detail),
            "instance": request.url.path,
        }
        return JSONResponse(body, status_code=exc.status_code, media_type=PROBLEM_JSON, headers=exc.headers)


class _RequestLog:
    """One line per request: method, route template, status, client, problem kind, duration.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task group and a memory stream per
    request, which showed in the benchmark. The route is the template (``/v1/notifications/{event_id}``),
    so event ids stay out of the log; a request no route matched is ``unmatched``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            state = scope.get("state") or {}
            _log.info(
                "api request",
                method=scope["method"],
                route=getattr(scope.get("route"), "path", "unmatched"),
                status=status,
                client=state.get("client"),
                problem=state.get("problem"),
                duration_ms=round((time.perf_counter() - started) * 1000, 2),
            )


def create_app(
    ingest: Ingest, authenticator: Authenticator, *, ready: Callable[[], Awaitable[str | None]] | None = None
) -> FastAPI:
    """The ingest API over ``ingest``; ``ready()`` returns why the app is not ready, or ``None``."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Postbus ingest API",
        version=__version__,
        description="Queue notification events for Postbus, check what became of them, and preview templates.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry layer is off: the Azure Monitor distro's FastAPI instrumentation already
        # records each request (the `requests` table the API alerts read), and FastAPI's would add a second
        # server span per request, spans per dependency, and log records with validation input in them.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    limit = ingest.limits.max_body_bytes

    app.state.authenticator = authenticator

    _install_problem_handlers(app)
    app.add_middleware(_RequestLog)

    @app.post(
        "/v1/notifications",
        status_code=202,
        response_model=Accepted,
        responses=_problem_responses(400, 401, 403, 409, 413, 415, 422, 429, 503),
        openapi_extra=_body("NotificationEvent"),
        summary="Queue one notification event",
        tags=["notifications"],
    )
    async def post_notification(request: Request, response: Response, client: Caller) -> Accepted:
        """Queue one event. A retry with the same ``Idempotency-Key`` (or, without one, the same event
        id) returns the first answer and queues nothing; the same key with another body is 409."""
        body = await _read_body(request, limit)
        key = request.headers.get("idempotency-key")
        if key is not None and not 1 <= len(key) <= 255:
            raise Problem(
                "invalid-request", "Idempotency-Key must be 1 to 255 characters", field="Idempotency-Key"
            )
        accepted, replayed = await ingest.accept(client, body, idempotency_key=key)
        response.headers["Location"] = accepted.location
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
        return accepted

    @app.post(
        "/v1/notifications/batch",
        response_model=BatchResult,
        responses=_problem_responses(400, 401, 403, 413, 415, 422, 429, 503),
        openapi_extra=_body("BatchRequest"),
        summary=f"Queue up to {MAX_BATCH} events, with a result per item",
        tags=["notifications"],
    )
    async def post_batch(request: Request, client: Caller) -> BatchResult:
        """Queue every valid item; invalid ones are rejected with a problem each, the rest still go."""
        body = await _read_body(request, limit)
        return await ingest.accept_batch(client, body)

    @app.get(
        "/v1/notifications/{event_id}",
        response_model=Status,
        responses=_problem_responses(401, 403, 404, 422, 429, 503),
        summary="What became of an event",
        tags=["notifications"],
    )
    async def get_notification(event_id: str, client: Caller) -> Status:
        """The delivery record's story of the event, if it was sent for one of this client's tenants."""
        return await ingest.status(client, event_id)

    @app.get(
        "/v1/templates",
        response_model=Templates,
        responses=_problem_responses(401, 403, 404, 429),
        summary="What this client may send",
        tags=["templates"],
    )
    async def get_templates(client: Caller) -> Templates:
        """The notification types this client may send, their locales, sender aliases and sample data."""
        return ingest.list_templates(client)

    @app.post(
        "/v1/templates/{event_type}/preview",
        response_model=Preview,
        responses=_problem_responses(400, 401, 403, 404, 413, 415, 422, 429),
        openapi_extra=_body("PreviewRequest"),
        summary="Render a template without sending",
        tags=["templates"],
    )
    async def post_preview(event_type: str, request: Request, client: Caller) -> Preview:
        """Render ``event_type`` with the given ``data`` and ``locale``; nothing is queued or sent."""
        body = await _read_body(request, limit)
        return ingest.preview(client, event_type, body)

    @app.get(
        "/healthz",
        response_model=Health,
        response_model_exclude_none=True,
        tags=["health"],
        summary="Liveness",
    )
    async def healthz() -> Health:
        """The process serves requests."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Not ready, and why."}},
        tags=["health"],
        summary="Readiness",
    )
    async def readyz() -> JSONResponse:
        """Ready to take traffic (the queue's sender is open)."""
        reason = await ready() if ready is not None else None
        health = Health(status="ok") if reason is None else Health(status="not ready", detail=reason)
        return JSONResponse(health.model_dump(exclude_none=True), status_code=200 if reason is None else 503)

    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = original_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(_schemas())
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
