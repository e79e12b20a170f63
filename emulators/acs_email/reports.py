"""Delivery reports: after each accepted send, the Event Grid event ACS would publish.

In Azure, an email's fate after ``Succeeded`` is known only from Event Grid's
``Microsoft.Communication.EmailDeliveryReportReceived`` events, one per recipient. The emulator
produces them ``delay`` seconds after it accepts a send and hands them to its sinks:

- :class:`ServiceBusSink`: one event per message on a queue, sent through the real
  azure-servicebus SDK, the way an Event Grid subscription with a Service Bus queue endpoint
  delivers (Event Grid schema: the body is the event object; or CloudEvents 1.0);
- :class:`WebhookSink`: a POST of a one-event array to a URL, after Event Grid's subscription
  validation handshake (a ``Microsoft.EventGrid.SubscriptionValidationEvent`` that the endpoint
  must answer with ``{"validationResponse": <code>}``).

Outcomes are chosen by recipient so tests can pick them: the local part ``bounce``,
``suppressed``, ``spam``, ``quarantine`` or ``expire`` (optionally with a ``+tag``, at any
domain) gives that outcome; any other recipient is ``Delivered``, or drawn from a
:class:`DeliveryMix` such as ``delivered=0.97,bounced=0.02,suppressed=0.01`` for demos. An
operation that the emulator itself failed (a failure rule) reports ``Suppressed`` for a
suppression-list failure and ``Failed`` otherwise.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from postbus.logs import get_logger

__all__ = [
    "DELIVERY_EVENT_TYPE",
    "STATUSES",
    "DeliveryMix",
    "ReportSchema",
    "ReportSink",
    "Reporter",
    "ServiceBusSink",
    "WebhookSink",
    "delivery_event",
    "status_for",
    "worst_status",
]

log = get_logger("postbus.emulators.acs_email")

DELIVERY_EVENT_TYPE: Final = "Microsoft.Communication.EmailDeliveryReportReceived"
VALIDATION_EVENT_TYPE: Final = "Microsoft.EventGrid.SubscriptionValidationEvent"
#: Event Grid's schema, or CloudEvents 1.0 (both are what a subscription can be set to deliver).
ReportSchema = Literal["eventgrid", "cloudevents"]

#: Every status the emulator reports, with a status text in the shape receiving servers give.
STATUSES: Final[Mapping[str, str]] = {
    "Delivered": "250 2.6.0 Queued mail for delivery",
    "Bounced": "550 5.1.1 The email account that you tried to reach does not exist.",
    "Suppressed": "The recipient is on the suppression list of this sender.",
    "FilteredSpam": "550 5.7.1 Message rejected as spam by the recipient's content filter.",
    "Quarantined": "The message was quarantined by the recipient's mail server.",
    "Expired": "Delivery gave up after the retry period expired: 451 4.4.1 Connection timed out.",
    "Failed": "The email could not be sent.",
}
_BY_LOCAL_PART: Final = {
    "bounce": "Bounced",
    "suppressed": "Suppressed",
    "spam": "FilteredSpam",
    "quarantine": "Quarantined",
    "expire": "Expired",
}
# How bad each status is for the sender, for one word per email with several recipients.
_SEVERITY: Final = {
    "Delivered": 0,
    "Quarantined": 1,
    "FilteredSpam": 2,
    "Expired": 3,
    "Suppressed": 4,
    "Bounced": 5,
    "Failed": 6,
}
# Names a mix may use: the statuses, and the outcome words of the delivery record.
_MIX_NAMES: Final = {
    **{status.lower(): status for status in STATUSES},
    "filtered_spam": "FilteredSpam",
    "spam": "FilteredSpam",
}


@dataclass(frozen=True, slots=True)
class DeliveryMix:
    """Chances of each status for recipients whose local part picks none (they sum to 1)."""

    weights: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: str) -> DeliveryMix:
        """``delivered=0.97,bounced=0.02,suppressed=0.01``; the rest (if any) is ``delivered``."""
        weights: dict[str, float] = {}
        for part in (p.strip() for p in text.split(",") if p.strip()):
            name, eq, value = part.partition("=")
            status = _MIX_NAMES.get(name.strip().lower())
            if not eq or status is None:
                known = ", ".join(sorted({s.lower() for s in STATUSES}))
                raise ValueError(f"{part!r}: expected STATUS=SHARE with STATUS one of {known}")
            try:
                share = float(value)
            except ValueError:
                raise ValueError(f"{part!r}: the share must be a number between 0 and 1") from None
            if not 0 <= share <= 1:
                raise ValueError(f"{part!r}: the share must be a number between 0 and 1")
            weights[status] = weights.get(status, 0.0) + share
        total = sum(weights.values())
        if total > 1 + 1e-9:
            raise ValueError(f"the shares add up to {total:g}, more than 1")
        weights["Delivered"] = weights.get("Delivered", 0.0) + max(0.0, 1 - total)
        return cls(tuple(sorted(weights.items())))

    def draw(self, rng: random.Random) -> str:
        """One status, drawn by weight."""
        statuses = [status for status, _ in self.weights]
        shares = [share for _, share in self.weights]
        return rng.choices(statuses, weights=shares)[0]


def status_for(recipient: str, *, mix: DeliveryMix | None = None, rng: random.Random | None = None) -> str:
    """The status the emulator reports for ``recipient`` (see the module docstring)."""
    local = recipient.rpartition("@")[0].lower().split("+", 1)[0]
    chosen = _BY_LOCAL_PART.get(local)
    if chosen is not None:
        return chosen
    if mix is not None:
        return mix.draw(rng or random.Random())
    return "Delivered"


def worst_status(statuses: Sequence[str]) -> str:
    """The one status that stands for an email's recipients: the worst of them for the sender."""
    return max(statuses, key=lambda status: _SEVERITY.get(status, len(_SEVERITY)))


def delivery_event(
    *,
    operation_id: str,
    sender: str,
    recipient: str,
    status: str,
    at: datetime,
    schema: ReportSchema = "eventgrid",
    source: str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/emulator"
    "/providers/Microsoft.Communication/CommunicationServices/acs-emulator",
) -> dict[str, Any]:
    """The ``EmailDeliveryReportReceived`` event of one recipient, in ``schema``."""
    data: dict[str, Any] = {
        "sender": sender,
        "recipient": recipient,
        "messageId": operation_id,
        "internetMessageId": f"<{uuid.uuid4()}@emulator.azurecomm.net>",
        "status": status,
        "deliveryStatusDetails": {
            "statusMessage": STATUSES.get(status, ""),
            "recipientMailServerHostName": f"mx.{recipient.rpartition('@')[2].lower()}",
        },
        "deliveryAttemptTimeStamp": at.isoformat(),
    }
    event_id = str(uuid.uuid4())
    subject = f"sender/{sender}/message/{operation_id}"
    if schema == "cloudevents":
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": DELIVERY_EVENT_TYPE,
            "subject": subject,
            "time": at.isoformat(),
            "datacontenttype": "application/json",
            "data": data,
        }
    return {
        "id": event_id,
        "topic": source,
        "subject": subject,
        "eventType": DELIVERY_EVENT_TYPE,
        "eventTime": at.isoformat(),
        "data": data,
        "dataVersion": "1.0",
        "metadataVersion": "1",
    }


class ReportSink(Protocol):
    """Where reports go. ``deliver`` raises on failure; the reporter counts and logs it."""

    async def start(self) -> None:
        """Connect (and, for a webhook, validate the subscription)."""
        ...

    async def deliver(self, event: Mapping[str, Any]) -> None:
        """Deliver one event."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


class ServiceBusSink:
    """Sends each event as one Service Bus message, as an Event Grid subscription does.

    Sends are serialised on one sender (the SDK's sender is not safe for concurrent use while it
    opens); a sender that failed is replaced, and a delivery is tried up to three times, as Event
    Grid retries a delivery.
    """

    TRIES: Final = 3

    def __init__(self, connection_string: str, queue: str = "email-events") -> None:
        self.queue = queue
        self._connection_string = connection_string
        self._client: Any = None
        self._sender: Any = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        from azure.servicebus.aio import ServiceBusClient

        self._client = ServiceBusClient.from_connection_string(self._connection_string)

    async def deliver(self, event: Mapping[str, Any]) -> None:
        from azure.servicebus import ServiceBusMessage

        if self._client is None:
            raise RuntimeError("the Service Bus sink is not started")
        message = ServiceBusMessage(
            json.dumps(event),
            content_type="application/json",
            message_id=str(event["id"]),
            # What Event Grid stamps on the messages it delivers to a queue.
            application_properties={
                "aeg-event-type": "Notification",
                "aeg-subscription-name": "EMAIL-EVENTS",
                "aeg-delivery-count": "0",
            },
        )
        async with self._lock:
            for attempt in range(self.TRIES):
                if self._sender is None:
                    self._sender = self._client.get_queue_sender(self.queue)
                try:
                    await self._sender.send_messages(message)
                    return
                except Exception:
                    sender, self._sender = self._sender, None
                    await _quietly_close(sender)
                    if attempt + 1 == self.TRIES:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))

    async def close(self) -> None:
        async with self._lock:
            await _quietly_close(self._sender)
            await _quietly_close(self._client)
            self._sender = self._client = None


async def _quietly_close(closable: Any) -> None:
    if closable is None:
        return
    try:
        await closable.close()
    except Exception as exc:  # closing a broken handler: nothing left to save
        log.debug("acs_email.report_sink_close_failed", error=str(exc))


class WebhookSink:
    """POSTs each event (as a one-event array) to ``url`` after the validation handshake."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._session: Any = None

    async def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        code = str(uuid.uuid4())
        validation = [
            {
                "id": str(uuid.uuid4()),
                "topic": "emulator",
                "subject": "",
                "eventType": VALIDATION_EVENT_TYPE,
                "eventTime": datetime.now(UTC).isoformat(),
                "data": {"validationCode": code, "validationUrl": None},
                "dataVersion": "2",
                "metadataVersion": "1",
            }
        ]
        answer: Any = None
        problem = ""
        try:
            async with self._session.post(
                self.url, json=validation, headers={"aeg-event-type": "SubscriptionValidation"}
            ) as response:
                if response.status == 200:
                    answer = json.loads(await response.read() or b"null")
                else:
                    problem = f"; it answered {response.status}"
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            problem = f"; {exc or type(exc).__name__}"
        if not isinstance(answer, dict) or answer.get("validationResponse") != code:
            await self.close()
            raise ValueError(
                f"webhook {self.url} did not validate the subscription "
                f"(it must answer 200 with the validationCode as validationResponse){problem}"
            )

    async def deliver(self, event: Mapping[str, Any]) -> None:
        if self._session is None:
            raise RuntimeError("the webhook sink is not started")
        async with self._session.post(
            self.url, json=[event], headers={"aeg-event-type": "Notification"}
        ) as response:
            if response.status >= 300:
                raise ValueError(f"webhook {self.url} answered {response.status}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        self._session = None


@dataclass(frozen=True, slots=True)
class _Send:
    operation_id: str
    sender: str
    recipients: tuple[str, ...]
    failed_code: str | None


class Reporter:
    """Schedules and delivers the reports of accepted sends (runs on the emulator's loop).

    Example::

        reporter = Reporter([ServiceBusSink(sb.connection_string)], delay=0.5)
        await reporter.start()
        reporter.accepted(operation_id, sender, recipients)   # from the send handler
        await reporter.close()                                # waits for nothing, drops the rest
    """

    def __init__(
        self,
        sinks: Sequence[ReportSink],
        *,
        delay: float = 0.0,
        mix: DeliveryMix | None = None,
        schema: ReportSchema = "eventgrid",
        seed: int | None = None,
    ) -> None:
        if delay < 0:
            raise ValueError("the report delay must be >= 0")
        self.sinks = tuple(sinks)
        self.delay = delay
        self.mix = mix
        self.schema: ReportSchema = schema
        self._rng = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        # Written on the emulator's loop, read from the embedding thread.
        self._lock = threading.Lock()
        self._delivered: dict[str, int] = {}
        self._statuses: dict[str, str] = {}
        #: Deliveries that a sink refused.
        self.failed = 0

    @property
    def delivered(self) -> dict[str, int]:
        """Reports handed to every sink, by status (a snapshot)."""
        with self._lock:
            return dict(self._delivered)

    def status_of(self, operation_id: str) -> str | None:
        """The status reported for an operation (the worst over its recipients), once reported."""
        with self._lock:
            return self._statuses.get(operation_id)

    async def start(self) -> None:
        """Start every sink (a webhook that fails its validation raises ``ValueError``)."""
        for sink in self.sinks:
            await sink.start()

    def accepted(
        self,
        operation_id: str,
        sender: str,
        recipients: Sequence[str],
        *,
        failed_code: str | None = None,
        on_reported: Callable[[str, str], None] | None = None,
    ) -> None:
        """Report on a send just accepted, after :attr:`delay`.

        ``on_reported(operation_id, status)`` is called once the reports went out, with the
        worst status over the recipients (the mailbox shows it beside the email).
        """
        send = _Send(operation_id, sender, tuple(recipients), failed_code)
        task = asyncio.get_running_loop().create_task(self._report(send, on_reported))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _status(self, send: _Send, recipient: str) -> str:
        if send.failed_code is not None:
            return "Suppressed" if "Suppressed" in send.failed_code else "Failed"
        return status_for(recipient, mix=self.mix, rng=self._rng)

    async def _report(self, send: _Send, on_reported: Callable[[str, str], None] | None) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        reported: list[str] = []
        for recipient in send.recipients:
            status = self._status(send, recipient)
            event = delivery_event(
                operation_id=send.operation_id,
                sender=send.sender,
                recipient=recipient,
                status=status,
                at=datetime.now(UTC),
                schema=self.schema,
            )
            for sink in self.sinks:
                try:
                    await sink.deliver(event)
                except Exception as exc:  # a sink's own error: counted, never the server's problem
                    self.failed += 1
                    log.warning("acs_email.report_failed", operation_id=send.operation_id, error=str(exc))
                else:
                    with self._lock:
                        self._delivered[status] = self._delivered.get(status, 0) + 1
                    reported.append(status)
        if not reported:
            return  # every sink refused: nothing was reported, so nothing to show
        overall = worst_status(reported)
        with self._lock:
            self._statuses[send.operation_id] = overall
        if on_reported is not None:
            on_reported(send.operation_id, overall)

    async def close(self) -> None:
        """Cancel reports still waiting and close the sinks."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for sink in self.sinks:
            await sink.close()
