"""What the API does, without HTTP: validate, check the client's policy, publish once, read status.

:class:`Ingest` holds the seams (publisher, record store, templates) and the per-process state
(idempotency keys, rate buckets); :mod:`postbus.producers.api.app` maps HTTP onto it. Every
refusal is a :class:`~postbus.producers.api.problems.Problem`; an event is either on the queue or
refused, never half-published.
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from postbus.errors import InvalidEvent, PostbusError
from postbus.events import NotificationEvent, parse_event
from postbus.producers.api.clients import Client, policy_violation
from postbus.producers.api.idempotency import IdempotencyStore, fingerprint
from postbus.producers.api.problems import Problem
from postbus.producers.api.ratelimit import RateLimiter
from postbus.producers.api.responses import (
    Accepted,
    BatchItem,
    BatchResult,
    Generation,
    Preview,
    PreviewRequest,
    Status,
    TemplateInfo,
    Templates,
)
from postbus.producers.api.templates import TemplateCatalog
from postbus.producers.outgoing import EventLike
from postbus.producers.publisher import PublishError
from postbus.records import DeliveryRecord, RecordError, RecordStore

__all__ = ["MAX_BATCH", "EventPublisher", "Ingest", "Limits"]

#: Most events in one batch request.
MAX_BATCH: Final = 500
_RETRY_AFTER: Final = {"Retry-After": "5"}
_REMEMBERED_IDS: Final = 100_000


class EventPublisher(Protocol):
    """What the API publishes with: ``Publisher`` (or ``FakePublisher`` in unit tests)."""

    async def publish_many(
        self, events: Iterable[EventLike], *, send_at: datetime | None = None
    ) -> list[str]:
        """Publish every event or raise; returns the message ids."""
        ...


@dataclass(frozen=True, slots=True)
class Limits:
    """Request limits: the whole body, one event's JSON, and whether ``data`` must render first."""

    max_body_bytes: int = 16 * 1024 * 1024
    max_event_bytes: int = 192 * 1024
    render_check: bool = True


def _location(event_id: str) -> str:
    return f"/v1/notifications/{event_id}"


def _invalid(exc: InvalidEvent, prefix: str = "") -> Problem:
    if str(exc).startswith("body is not valid JSON"):
        return Problem("malformed-json", f"{prefix}{exc}")
    return Problem("invalid-event", f"{prefix}{exc}", field=exc.field or None)


def _publish_failed(exc: PublishError) -> Problem:
    # The queue's problem, not the caller's: nothing of this event is on the queue.
    return Problem("unavailable", f"the event was not queued: {exc}", headers=_RETRY_AFTER)


def _generation(record: DeliveryRecord) -> Generation:
    return Generation(
        generation=record.generation,
        operation_id=record.operation_id,
        status=record.outcome.value,
        status_at=record.outcome_at,
        attempts=record.attempts,
        first_enqueued=record.first_enqueued,
        accepted_at=record.accepted_at,
        delivered_at=record.delivered_at,
        dead_letter_reason=record.dead_letter_reason,
        dead_letter_description=record.dead_letter_description,
        status_message=record.status_message,
        smtp_status=record.smtp_status,
        recipient_domains=list(record.recipient_domains),
    )


class Ingest:
    """The ingest API's behaviour over its seams; one instance per process."""

    def __init__(
        self,
        *,
        publisher: EventPublisher,
        records: RecordStore | None = None,
        templates: TemplateCatalog | None = None,
        limits: Limits | None = None,
        idempotency: IdempotencyStore[Accepted] | None = None,
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self.publisher = publisher
        self.records = records
        self.templates = templates
        self.limits = limits or Limits()
        self.idempotency: IdempotencyStore[Accepted] = idempotency or IdempotencyStore()
        self.rate_limiter = rate_limiter or RateLimiter()
        self._accepted: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._background: set[asyncio.Future[None]] = set()

    # -- checks ------------------------------------------------------------------------------

    def _check(self, client: Client, event: NotificationEvent, encoded: bytes, prefix: str = "") -> None:
        violation = policy_violation(client, event)
        if violation is not None:
            field, message = violation
            raise Problem("forbidden", f"{prefix}{message}", field=field)
        if event.not_after is not None and event.not_after <= datetime.now(UTC):
            # The worker would only dead-letter it as Expired.
            raise Problem(
                "invalid-event",
                f"{prefix}not_after: {event.not_after.isoformat()} has passed",
                field="not_after",
            )
        # Attachment content does not count: the publisher moves what does not fit the queue to the
        # attachment store (the claim check), and the contract already holds it to ACS's 10 MB.
        inline = sum(len(a.content_base64 or "") for a in event.attachments)
        if len(encoded) - inline > self.limits.max_event_bytes:
            raise Problem(
                "too-large",
                f"{prefix}the event is {len(encoded) - inline} bytes as JSON without its attachments; at most "
                f"{self.limits.max_event_bytes} fit on the queue",
            )
        if self.templates is None:
            return
        if event.type not in self.templates.types():
            raise Problem("invalid-event", f"{prefix}type: no template for {event.type!r}", field="type")
        if self.limits.render_check:
            try:
                self.templates.render(event.type, locale=event.locale, data=event.data, tenant=event.tenant)
            except PostbusError as exc:
                raise Problem("template-error", f"{prefix}data: {exc}", field="data") from None

    def _remember(self, client: Client, event_id: str) -> None:
        self._accepted[(client.name, event_id)] = None
        self._accepted.move_to_end((client.name, event_id))
        while len(self._accepted) > _REMEMBERED_IDS:
            self._accepted.popitem(last=False)

    async def _publish(self, events: Sequence[NotificationEvent]) -> None:
        try:
            await self.publisher.publish_many(events)
        except PublishError as exc:
            raise _publish_failed(exc) from None
        except InvalidEvent as exc:
            # The publisher's lane policy refused the event's lane: the caller's to fix, like any field.
            raise _invalid(exc) from None

    # -- endpoints ---------------------------------------------------------------------------

    async def accept(
        self, client: Client, body: bytes, *, idempotency_key: str | None
    ) -> tuple[Accepted, bool]:
        """Publish the event in ``body`` once; returns the answer and whether it was a replay."""
        self.rate_limiter.take(client)
        try:
            event = parse_event(body)
        except InvalidEvent as exc:
            raise _invalid(exc) from None
        encoded = event.to_json()
        self._check(client, event, encoded)
        key = f"key:{idempotency_key}" if idempotency_key else f"id:{event.id}"

        async def publish() -> Accepted:
            await self._publish([event])
            self._remember(client, event.id)
            return Accepted(id=event.id, location=_location(event.id))

        return await self.idempotency.run(client.name, key, fingerprint(encoded), publish)

    def _batch_items(self, body: bytes) -> list[Any]:
        try:
            document = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise Problem("malformed-json", f"body is not valid JSON: {exc}") from None
        if not isinstance(document, dict) or set(document) != {"events"}:
            raise Problem("invalid-request", 'the body must be {"events": [event, ...]}', field="events")
        items = document["events"]
        if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
            raise Problem(
                "invalid-request", f"events: must be a list of 1 to {MAX_BATCH} events", field="events"
            )
        return items

    async def accept_batch(self, client: Client, body: bytes) -> BatchResult:
        """Publish the good items of a batch (in one go), and say per item what happened."""
        items = self._batch_items(body)
        self.rate_limiter.take(client, len(items))
        results: list[BatchItem | None] = [None] * len(items)
        fresh: list[tuple[int, NotificationEvent, str]] = []
        for index, item in enumerate(items):
            prefix = f"events[{index}]: "
            try:
                try:
                    event = parse_event(json.dumps(item))
                except InvalidEvent as exc:
                    raise _invalid(exc, prefix) from None
                encoded = event.to_json()
                self._check(client, event, encoded, prefix)
            except Problem as problem:
                results[index] = self._rejected(index, problem, item)
                continue
            fresh.append((index, event, fingerprint(encoded)))
        await self._publish_batch(client, fresh, results)
        done = [r for r in results if r is not None]
        accepted = sum(1 for r in done if r.status == "accepted")
        return BatchResult(accepted=accepted, rejected=len(done) - accepted, results=done)

    async def _publish_batch(
        self,
        client: Client,
        fresh: list[tuple[int, NotificationEvent, str]],
        results: list[BatchItem | None],
    ) -> None:
        # Claim every id first (a repeated id replays, in this batch or from an earlier request),
        # then publish every new event in one call.
        claims: list[tuple[int, NotificationEvent, asyncio.Future[Accepted]]] = []
        owned: list[tuple[NotificationEvent, asyncio.Future[Accepted]]] = []
        for index, event, digest in fresh:
            try:
                answer, first = self.idempotency.begin(client.name, f"id:{event.id}", digest)
            except Problem as problem:
                results[index] = self._rejected(index, problem, {"id": event.id})
                continue
            claims.append((index, event, answer))
            if first:
                owned.append((event, answer))
        if owned:
            # Held until done: the publish must finish even if this request goes away.
            publishing = self._publish([event for event, _ in owned])
            task: asyncio.Future[None] = asyncio.ensure_future(publishing)
            self._background.add(task)
            task.add_done_callback(self._background.discard)

            def settle(done: asyncio.Future[None]) -> None:
                error = None if done.cancelled() else done.exception()
                for event, answer in owned:
                    if done.cancelled() or error is not None:
                        outcome: Accepted | BaseException = error or asyncio.CancelledError()
                    else:
                        self._remember(client, event.id)
                        outcome = Accepted(id=event.id, location=_location(event.id))
                    self.idempotency.finish(client.name, f"id:{event.id}", answer, outcome)

            task.add_done_callback(settle)
        for index, event, answer in claims:
            try:
                accepted = await asyncio.shield(answer)
            except Problem as problem:
                results[index] = self._rejected(index, problem, {"id": event.id})
                continue
            results[index] = BatchItem(
                index=index, id=event.id, status="accepted", location=accepted.location
            )

    @staticmethod
    def _rejected(index: int, problem: Problem, item: Any) -> BatchItem:
        event_id = item.get("id") if isinstance(item, dict) else None
        return BatchItem(
            index=index,
            id=event_id if isinstance(event_id, str) else None,
            status="rejected",
            problem=problem.body(),
        )

    async def status(self, client: Client, event_id: str) -> Status:
        """The record's story of ``event_id``, if one of ``client``'s tenants sent it."""
        self.rate_limiter.take(client)
        records: list[DeliveryRecord] = []
        if self.records is not None:
            try:
                records = await self.records.by_event(event_id)
            except RecordError as exc:
                raise Problem(
                    "unavailable", f"the delivery record cannot be read: {exc}", headers=_RETRY_AFTER
                ) from None
        mine = [r for r in records if r.tenant in client.tenants]
        if mine:
            generations = [_generation(r) for r in mine]
            return Status(id=event_id, status=generations[-1].status, generations=generations)
        if (client.name, event_id) in self._accepted:
            return Status(id=event_id, status="queued", generations=[])
        # The same answer for "never sent" and "another client's": ids leak nothing.
        raise Problem("not-found", f"no notification {event_id!r} for client {client.name!r}", field="id")

    def _catalog(self) -> TemplateCatalog:
        if self.templates is None:
            raise Problem("not-found", "this API serves no templates")
        return self.templates

    def list_templates(self, client: Client) -> Templates:
        """The types this client may send that have templates, with locales and sample data."""
        self.rate_limiter.take(client)
        catalog = self._catalog()
        available = set(catalog.types())
        infos = []
        for event_type in client.types:
            if event_type not in available:
                continue
            try:
                sample = catalog.sample_data(event_type)
            except PostbusError:
                sample = {}
            infos.append(
                TemplateInfo(
                    type=event_type,
                    locales=catalog.locales(event_type),
                    senders=list(client.senders),
                    sample=sample,
                )
            )
        return Templates(client=client.name, tenants=list(client.tenants), templates=infos)

    def preview(self, client: Client, event_type: str, body: bytes) -> Preview:
        """Render ``event_type`` with the given data; nothing is sent."""
        self.rate_limiter.take(client)
        catalog = self._catalog()
        if event_type not in client.types:
            raise Problem(
                "forbidden", f"type {event_type!r} is not allowed for client {client.name!r}", field="type"
            )
        if event_type not in catalog.types():
            raise Problem("not-found", f"no template for {event_type!r}", field="type")
        try:
            request = PreviewRequest.model_validate_json(body or b"{}", strict=True)
        except ValueError as exc:
            raise _preview_problem(exc) from None
        tenant = request.tenant or client.tenants[0]
        if tenant not in client.tenants:
            raise Problem(
                "forbidden", f"tenant {tenant!r} is not allowed for client {client.name!r}", field="tenant"
            )
        try:
            rendered = catalog.render(event_type, locale=request.locale, data=request.data, tenant=tenant)
            locale = catalog.resolve_locale(event_type, request.locale)
        except PostbusError as exc:
            raise Problem("template-error", f"data: {exc}", field="data") from None
        return Preview(
            type=event_type, locale=locale, subject=rendered.subject, html=rendered.html, text=rendered.text
        )


def _preview_problem(exc: ValueError) -> Problem:
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return Problem("malformed-json", f"body is not valid JSON: {errors[0]['msg']}")
        first = errors[0]
        field = ".".join(str(p) for p in first["loc"])
        message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
        return Problem("invalid-request", f"{field}: {message}" if field else message, field=field or None)
    return Problem("invalid-request", str(exc))
