"""``$cbs`` put-token and the ``$management`` request/response operations the SDK uses.

Requests and responses go through ``proton.Message`` (low volume, many AMQP types); responses
carry ``correlation-id`` = the request's message-id with its AMQP type kept (the SDK sends uuids
and ignores a response whose id does not compare equal).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from proton import Array, Data, Message, symbol, timestamp

from postbus.emulators.servicebus.codec import CodecError, encode_delivery, parse_message
from postbus.emulators.servicebus.queue import (
    LockLostError,
    MessageNotFoundError,
    MessageQueue,
    MessageState,
    QueueFullError,
    StoredMessage,
)

__all__ = ["cbs_response", "encode_stored", "management_response"]

_LOCK_LOST = "com.microsoft:message-lock-lost"
_Handler = Callable[[MessageQueue, dict[str, Any]], Message]


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


def encode_stored(msg: StoredMessage, *, locked: bool) -> bytes:
    """A stored message as a receiver (or a peek) sees it."""
    state = msg.visible_state
    return encode_delivery(
        body=msg.body,
        annotations=msg.annotations,
        seq=msg.seq,
        enqueued_ms=_ms(msg.enqueued_at),
        delivery_count=msg.delivery_count,
        ttl_ms=None if msg.ttl is None else _ms(msg.ttl),
        locked_until_ms=_ms(msg.locked_until) if locked else None,
        state=int(state),
        dead_letter_source=msg.dead_letter_source,
        dead_letter_reason=msg.dead_letter_reason,
        dead_letter_description=msg.dead_letter_description,
    )


def cbs_response(request: Message) -> Message:
    """Accept every token: the emulator does not authenticate (any SharedAccessKey works)."""
    return Message(
        correlation_id=request.id,
        properties={"status-code": 202, "status-description": "Accepted"},
    )


def _reply(status: int, description: str, body: Any = None, condition: str | None = None) -> Message:
    props: dict[str, Any] = {"statusCode": status, "statusDescription": description}
    if condition is not None:
        props["errorCondition"] = symbol(condition)
    return Message(properties=props, body=body)


def _items(value: Any) -> list[Any]:
    if isinstance(value, Array):
        return list(value.elements)
    if isinstance(value, Iterable) and not isinstance(value, str | bytes):
        return list(value)
    return [] if value is None else [value]


def _tokens(body: dict[str, Any]) -> list[uuid.UUID]:
    out = []
    for token in _items(body.get("lock-tokens")):
        out.append(token if isinstance(token, uuid.UUID) else uuid.UUID(str(token)))
    return out


def _renew_lock(entity: MessageQueue, body: dict[str, Any]) -> Message:
    expirations = [timestamp(_ms(entity.renew_lock(token))) for token in _tokens(body)]
    return _reply(200, "OK", {"expirations": Array(None, Data.TIMESTAMP, *expirations)})


def _peek(entity: MessageQueue, body: dict[str, Any]) -> Message:
    start = int(body.get("from-sequence-number") or 1)
    count = int(body.get("message-count") or 1)
    found = entity.peek(start, count)
    if not found:
        return _reply(204, "No messages")
    messages = [{"message": encode_stored(m, locked=m.state is MessageState.LOCKED)} for m in found]
    return _reply(200, "OK", {"messages": messages})


def _schedule(entity: MessageQueue, body: dict[str, Any]) -> Message:
    seqs: list[int] = []
    for item in _items(body.get("messages")):
        parsed = parse_message(bytes(item["message"]))
        when = parsed.scheduled_enqueue_ms
        # Duplicate detection is not applied here: the SDK expects one sequence number per message.
        seq = entity.enqueue(
            parsed.body,
            ttl=None if parsed.ttl_ms is None else parsed.ttl_ms / 1000,
            scheduled_at=None if when is None else when / 1000,
            annotations=parsed.annotations,
        )
        assert seq is not None  # no message id -> never a duplicate
        seqs.append(seq)
    return _reply(200, "OK", {"sequence-numbers": Array(None, Data.LONG, *seqs)})


def _cancel(entity: MessageQueue, body: dict[str, Any]) -> Message:
    entity.cancel_scheduled([int(s) for s in _items(body.get("sequence-numbers"))])
    return _reply(200, "OK")


def _receive_by_sequence(entity: MessageQueue, body: dict[str, Any]) -> Message:
    seqs = [int(s) for s in _items(body.get("sequence-numbers"))]
    receive_and_delete = int(body.get("receiver-settle-mode", 1) or 0) == 0
    found = entity.receive_deferred(seqs, receive_and_delete=receive_and_delete)
    messages = [
        {
            "lock-token": m.lock_token or uuid.uuid4(),
            "message": encode_stored(m, locked=not receive_and_delete),
        }
        for m in found
    ]
    return _reply(200, "OK", {"messages": messages})


def _update_disposition(entity: MessageQueue, body: dict[str, Any]) -> Message:
    status = str(body.get("disposition-status", "")).lower()
    for token in _tokens(body):
        if status == "completed":
            entity.complete(token)
        elif status == "abandoned":
            entity.abandon(token)
        elif status in ("defered", "deferred"):  # the SDK spells it "defered"
            entity.defer(token)
        elif status == "suspended":
            entity.dead_letter(
                token,
                body.get("deadletter-reason") or None,
                body.get("deadletter-description") or None,
            )
        else:
            return _reply(
                400, f"unknown disposition-status {status!r}", condition="com.microsoft:argument-error"
            )
    return _reply(200, "OK")


_OPERATIONS: dict[str, _Handler] = {
    "com.microsoft:renew-lock": _renew_lock,
    "com.microsoft:peek-message": _peek,
    "com.microsoft:schedule-message": _schedule,
    "com.microsoft:cancel-scheduled-message": _cancel,
    "com.microsoft:receive-by-sequence-number": _receive_by_sequence,
    "com.microsoft:update-disposition": _update_disposition,
}


def management_response(entity: MessageQueue, request: Message) -> Message:
    """Run one ``$management`` request against ``entity``; failures become status + errorCondition."""
    properties: dict[str, Any] = dict(request.properties or {})
    operation = str(properties.get("operation", ""))
    handler = _OPERATIONS.get(operation)
    raw_body: Any = request.body if isinstance(request.body, dict) else {}
    body = {str(k): v for k, v in raw_body.items()}
    try:
        if handler is None:
            response = _reply(
                501, f"operation {operation!r} is not supported", condition="amqp:not-implemented"
            )
        else:
            response = handler(entity, body)
    except LockLostError as exc:
        response = _reply(410, str(exc), condition=_LOCK_LOST)
    except MessageNotFoundError as exc:
        response = _reply(404, str(exc), condition="com.microsoft:message-not-found")
    except QueueFullError as exc:
        response = _reply(403, str(exc), condition="amqp:resource-limit-exceeded")
    except (CodecError, KeyError, TypeError, ValueError) as exc:
        response = _reply(400, f"bad request: {exc}", condition="com.microsoft:argument-error")
    response.correlation_id = request.id
    return response
