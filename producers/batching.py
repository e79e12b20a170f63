"""What the async and sync publishers share: preparing a call, packing batches, reporting it (no I/O).

Every event is validated and encoded before anything is sent; the messages are then packed into
as few size-limited batches as the queue's limit allows, and all batches are built before the
first one goes out, so an oversized event fails the call with nothing sent. The packing is a
generator that asks its driver for an empty batch whenever it needs one, so the async and the
sync publisher run the same plan with their own SDK calls.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from postbus.attachments import AttachmentError, AttachmentStore, AttachmentStoreUnavailable, check_in
from postbus.bus import BusError, MessageSizeExceeded, servicebus_errors
from postbus.events import NotificationEvent
from postbus.lanes import Lane, choose_lane, default_lane
from postbus.logs import get_logger
from postbus.producers.checks import EventCheck
from postbus.producers.errors import PublishError, translate_error
from postbus.producers.outgoing import EventLike, Prepared, PropertiesHook, Resolved, encode_all, resolve
from postbus.telemetry import PublishTrace, current_telemetry

if TYPE_CHECKING:
    from azure.servicebus import ServiceBusMessageBatch

__all__ = [
    "BATCH_HEADROOM_BYTES",
    "MAX_BATCH_MESSAGES",
    "PROPERTIES_ALLOWANCE_BYTES",
    "Batch",
    "LanePolicy",
    "PublisherCore",
]

_log = get_logger("postbus.producers.publisher")

#: Bytes kept free in every batch. The SDK sizes a batch before it copies the first message's id
#: (and partition key) onto the batch envelope, so a batch filled to the link limit goes out a few
#: dozen bytes over it and the broker rejects it with message-size-exceeded (seen on the emulator:
#: 262166 > 262144). Ids stop at 128 characters, so 512 bytes covers the envelope with room to spare.
BATCH_HEADROOM_BYTES: Final = 512
#: Service Bus refuses batches of more than 4500 messages whatever their size (Azure/azure-service-bus#397).
MAX_BATCH_MESSAGES: Final = 4500
#: Bytes of a message's limit kept for what is not the JSON body (application properties with the
#: trace context, AMQP sections) when deciding whether an event's attachments must be claim-checked.
PROPERTIES_ALLOWANCE_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class LanePolicy:
    """Where a publisher's events go: the queue of each lane, and whether it may raise an event's lane.

    ``queues`` maps each lane the deployment runs to its queue (a lane missing from it goes to the
    publisher's own queue); ``templates_dir`` is the catalogue that adds default lanes.
    """

    queues: Mapping[Lane, str]
    may_raise: bool = False
    templates_dir: Path | None = None

    def lane_of(self, event: NotificationEvent, *, may_raise: bool | None = None) -> Lane:
        """The lane of ``event`` (``may_raise`` overrides the policy's, e.g. per API client)."""
        allowed = self.may_raise if may_raise is None else may_raise
        default = default_lane(event.type, templates_dir=self.templates_dir)
        return choose_lane(event, default=default, may_raise=allowed)


class Batch:
    """A ``ServiceBusMessageBatch`` with the ids of what went into it."""

    __slots__ = ("batch", "labels", "message_ids")

    def __init__(self, batch: ServiceBusMessageBatch) -> None:
        self.batch = batch
        self.labels: list[str] = []
        self.message_ids: list[str] = []

    def add(self, item: Prepared) -> bool:
        if len(self.message_ids) >= MAX_BATCH_MESSAGES:
            return False
        try:
            with servicebus_errors("add a message to the batch"):
                self.batch.add_message(item.message)
        except MessageSizeExceeded:
            return False
        self.labels.append(item.label)
        self.message_ids.append(item.message_id)
        return True


class _Progress:
    """What one publish call has done so far (for its log line, spans and errors)."""

    __slots__ = ("batches", "sent", "started")

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.batches: list[Batch] = []
        self.sent: list[str] = []


#: A packing plan: asks for an empty batch (``yield``) whenever it needs one; returns the full batches.
_Packing = Generator[None, "ServiceBusMessageBatch", list[Batch]]


class PublisherCore:
    """State and bookkeeping shared by the async and sync publishers (no I/O here)."""

    def __init__(
        self,
        *,
        queue: str,
        namespace: str,
        properties_hook: PropertiesHook | None,
        max_batch_bytes: int | None,
        lanes: LanePolicy | None = None,
        attachments: AttachmentStore | None = None,
        inline_max_bytes: int = 64 * 1024,
        check: EventCheck | None = None,
    ) -> None:
        self.queue = queue
        #: Where attachments that do not travel in the message go (``None``: every event travels whole).
        self.attachments = attachments
        self.inline_max_bytes = inline_max_bytes
        self._check = check
        self.namespace = namespace
        #: Which queue each lane's events go to; without one, every event goes to ``queue``.
        self.lanes = lanes or LanePolicy(queues={Lane.NORMAL: queue})
        self._properties_hook = properties_hook
        self._max_batch_bytes = max_batch_bytes
        self._batch_limit: int | None = None
        #: Batches sent over this publisher's lifetime (for benchmarks and tests).
        self.batches_sent = 0
        #: Messages sent over this publisher's lifetime.
        self.messages_sent = 0

    def _resolve(
        self, events: Iterable[EventLike], send_at: datetime | None, may_raise_lanes: bool | None = None
    ) -> list[Resolved]:
        """Validate, check and choose each event's lane, once, before anything is uploaded or sent."""
        policy = self.lanes
        return resolve(
            events,
            send_at=send_at,
            check=self._check,
            lane_of=lambda event: policy.lane_of(event, may_raise=may_raise_lanes),
        )

    def _encode(self, resolved: Sequence[Resolved]) -> tuple[list[Prepared], PublishTrace]:
        # One producer span per event; its context travels in the message's application properties.
        spans = current_telemetry().publishing(self.queue)
        try:
            prepared = encode_all(resolved, properties_hook=spans.hook(self._properties_hook))
        except BaseException as exc:
            spans.finish((), exc)
            raise
        return prepared, spans

    def _needs_claim_check(self, resolved: Sequence[Resolved], *, store: object | None) -> bool:
        if store is None:
            return False
        return any(a.content_base64 for item in resolved for a in item.event.attachments)

    async def _check_in_all(self, store: AttachmentStore, resolved: Sequence[Resolved]) -> list[Resolved]:
        """Move attachments to ``store`` where needed (every event was validated, none is sent yet)."""
        started = time.perf_counter()
        checked: list[Resolved] = []
        moved = uploaded = moved_bytes = 0
        for item in resolved:
            try:
                claim = await check_in(
                    item.event, store, inline_max_bytes=self.inline_max_bytes, body_budget=self._body_budget()
                )
            except AttachmentError as exc:
                raise self._attachment_failed(item.event.id, exc) from exc
            checked.append(dataclasses.replace(item, event=claim.event))
            moved, uploaded, moved_bytes = (
                moved + claim.moved,
                uploaded + claim.uploaded,
                moved_bytes + claim.moved_bytes,
            )
        if moved:
            _log.info(
                "attachments stored",
                store=store.location,
                attachments=moved,
                uploaded=uploaded,
                bytes=moved_bytes,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
        return checked

    def _body_budget(self) -> int:
        assert self._batch_limit is not None
        return max(1024, self._batch_limit - PROPERTIES_ALLOWANCE_BYTES)

    def _attachment_failed(self, event_id: str, exc: AttachmentError) -> PublishError:
        return PublishError(
            f"event {event_id!r}: {exc}; nothing was sent",
            retryable=isinstance(exc, AttachmentStoreUnavailable),
        )

    def _learn_limit(self, link_limit: int) -> int:
        """The batch size to ask for: what the caller set, at most the link's limit less the headroom."""
        ceiling = max(1024, link_limit - BATCH_HEADROOM_BYTES)
        self._batch_limit = min(self._max_batch_bytes, ceiling) if self._max_batch_bytes else ceiling
        return self._batch_limit

    def _by_queue(self, prepared: Sequence[Prepared]) -> list[tuple[str, list[Prepared]]]:
        """``prepared`` split by the queue of each message's lane, in lane order, each in call order."""
        groups: dict[str, list[Prepared]] = {}
        for item in sorted(prepared, key=lambda item: item.lane.rank):
            groups.setdefault(self.lanes.queues.get(item.lane, self.queue), []).append(item)
        return list(groups.items())

    def _packing(self, prepared: Sequence[Prepared], queue: str | None = None) -> _Packing:
        """Pack ``prepared`` into as few batches as the limit allows; an oversized event fails the call."""
        batches: list[Batch] = []
        current = Batch((yield))
        for item in prepared:
            if current.add(item):
                continue
            if not current.labels:
                raise self._too_large(item, current.batch.max_size_in_bytes, queue)
            batches.append(current)
            current = Batch((yield))
            if not current.add(item):
                raise self._too_large(item, current.batch.max_size_in_bytes, queue)
        if current.labels:
            batches.append(current)
        return batches

    def _too_large(self, item: Prepared, limit: int, queue: str | None = None) -> PublishError:
        return PublishError(
            f"event {item.label!r} is larger than the {limit}-byte message limit of queue {queue or self.queue!r}; "
            "nothing was sent"
        )

    @contextmanager
    def _calling(
        self, labels: Sequence[str], sent: Sequence[str], queue: str | None = None
    ) -> Iterator[None]:
        """One Service Bus call on behalf of ``labels``; its failure becomes a :class:`PublishError`."""
        queue = queue or self.queue
        try:
            with servicebus_errors(f"send to queue {queue!r}"):
                yield
        except BusError as exc:
            raise translate_error(
                exc, queue=queue, namespace=self.namespace, labels=labels, published=sent
            ) from exc

    @contextmanager
    def _reporting(self, prepared: Sequence[Prepared], spans: PublishTrace | None) -> Iterator[_Progress]:
        """Log the call's line and end its spans, whether it succeeded or not."""
        progress = _Progress()
        try:
            yield progress
        except PublishError as error:
            self._logged(progress, prepared, error)
            if spans is not None:
                spans.finish(progress.sent, error)
            raise
        self._logged(progress, prepared)
        if spans is not None:
            spans.finish(progress.sent)

    def _record(self, progress: _Progress, batch: Batch) -> None:
        progress.sent.extend(batch.message_ids)
        self.batches_sent += 1
        self.messages_sent += len(batch.message_ids)

    def _logged(
        self, progress: _Progress, prepared: Sequence[Prepared], error: PublishError | None = None
    ) -> None:
        fields: dict[str, Any] = {
            "queue": self.queue,
            "count": len(prepared),
            "scheduled": sum(1 for item in prepared if item.scheduled),
            "batches": len(progress.batches),
            "duration_ms": round((time.perf_counter() - progress.started) * 1000, 1),
        }
        if error is None:
            _log.info("publish", **fields)
        else:
            _log.warning("publish_failed", **fields, published=len(progress.sent), error=str(error))
