"""The Service Bus adapter: the one place Postbus talks to ``azure.servicebus``.

The worker, the operations commands and the publisher all go through it: a
:class:`ServiceBusConnection` (the client built from the settings, with the credential it owns),
:class:`QueueLinks` (receive, peek, settle, send, schedule and renew on one queue), the
:class:`MessageSource` seam the worker loop consumes (:class:`ServiceBusSource`, and
:class:`InMemoryBroker` for unit tests), the SDK-free :class:`Delivery`, and the error tree of
:mod:`postbus.bus.errors` with :func:`servicebus_errors`, the single translation of the SDK's
exceptions. No client, link or credential exists until a connection is first used.
"""

from __future__ import annotations

from postbus.bus.connection import QueueDepth, QueueSettings, ServiceBusConnection, SyncServiceBusConnection
from postbus.bus.errors import (
    AccessDenied,
    AuthenticationFailed,
    BusBusy,
    BusError,
    BusRefused,
    BusTimeout,
    BusUnavailable,
    ConnectionLost,
    LockLost,
    MessageSizeExceeded,
    QueueDisabled,
    QueueNotFound,
    QuotaExceeded,
    servicebus_errors,
)
from postbus.bus.links import QueueLinks
from postbus.bus.memory import InMemoryBroker
from postbus.bus.messages import Delivery, delivery_from, to_servicebus_message
from postbus.bus.sdk_logs import route_sdk_logs
from postbus.bus.source import Links, MessageSource, ServiceBusSource, SettlementPort

__all__ = [
    "AccessDenied",
    "AuthenticationFailed",
    "BusBusy",
    "BusError",
    "BusRefused",
    "BusTimeout",
    "BusUnavailable",
    "ConnectionLost",
    "Delivery",
    "InMemoryBroker",
    "Links",
    "LockLost",
    "MessageSizeExceeded",
    "MessageSource",
    "QueueDepth",
    "QueueDisabled",
    "QueueLinks",
    "QueueNotFound",
    "QueueSettings",
    "QuotaExceeded",
    "ServiceBusConnection",
    "ServiceBusSource",
    "SettlementPort",
    "SyncServiceBusConnection",
    "delivery_from",
    "route_sdk_logs",
    "servicebus_errors",
    "to_servicebus_message",
]
