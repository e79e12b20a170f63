"""The notification event contract: the event itself (:mod:`.schema`) and its queue form (:mod:`.wire`).

A producer builds a :class:`NotificationEvent`, :func:`encode` turns it into a :class:`WireMessage`
and :func:`decode` reads it back; the Service Bus adapter (:mod:`postbus.bus`) converts wire
messages to and from the SDK's types::

    event = parse_event({"id": "order-1001", "type": "order.confirmation",
                         "to": ["Jane Doe <jane@example.com>"], "sender": "orders"})
    wire = encode(event)                      # WireMessage, message_id == "order-1001"
    assert decode(wire.body, content_type=wire.content_type,
                  application_properties=wire.application_properties).event == event
"""

from __future__ import annotations

from postbus.events.schema import (
    MAX_ID_LENGTH,
    MAX_RECIPIENTS,
    MAX_REQUEST_BYTES,
    RESERVED_HEADERS,
    SCHEMA,
    TOKENS,
    Address,
    Attachment,
    AttachmentRef,
    NotificationEvent,
    base64_length,
    parse_event,
    valid_token,
)
from postbus.events.wire import (
    CONTENT_TYPE,
    MAX_LAST_ERROR,
    PROP_ATTEMPT,
    PROP_FIRST_ENQUEUED,
    PROP_GENERATION,
    PROP_LAST_ERROR,
    PROP_SCHEMA,
    PROP_THROTTLED,
    DecodedMessage,
    EventIdentity,
    WireMessage,
    decode,
    encode,
    identify,
    replay_message_id,
    replay_wire,
    retry_message_id,
    retry_wire,
)

__all__ = [
    "CONTENT_TYPE",
    "MAX_ID_LENGTH",
    "MAX_LAST_ERROR",
    "MAX_RECIPIENTS",
    "MAX_REQUEST_BYTES",
    "PROP_ATTEMPT",
    "PROP_FIRST_ENQUEUED",
    "PROP_GENERATION",
    "PROP_LAST_ERROR",
    "PROP_SCHEMA",
    "PROP_THROTTLED",
    "RESERVED_HEADERS",
    "SCHEMA",
    "TOKENS",
    "Address",
    "Attachment",
    "AttachmentRef",
    "DecodedMessage",
    "EventIdentity",
    "NotificationEvent",
    "WireMessage",
    "base64_length",
    "decode",
    "encode",
    "identify",
    "parse_event",
    "replay_message_id",
    "replay_wire",
    "retry_message_id",
    "retry_wire",
    "valid_token",
]
