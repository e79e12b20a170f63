"""Connection strings and access keys: checked offline, at start, exactly as the Azure SDKs read them.

A value the SDKs would refuse later -- after the worker reported ready, once per message -- is
refused here with one line that names the variable and never echoes the secret::

    servicebus_namespace("Endpoint=sb://pb.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=...")
    # -> "pb.servicebus.windows.net"
    acs_parts("endpoint=https://acs1.communication.azure.com/;accesskey=...")
    # -> ("https://acs1.communication.azure.com", "...")

Service Bus strings go through the SDK's own ``azure.servicebus.parse_connection_string`` (which
the publisher uses for the namespace) and ``ServiceBusClient.from_connection_string``, so nothing
is accepted that either refuses. ACS strings are split the
way the ACS SDK splits them (``endpoint=...;accesskey=...``, keys in any case) but keep an
``http://`` endpoint, which a local emulator needs; the key must decode as base64 the way the
SDK's HMAC policy decodes it (``base64.b64decode``), or every request would fail with
``binascii.Error``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Final
from urllib.parse import urlsplit

__all__ = [
    "SERVICEBUS_SHAPE",
    "acs_parts",
    "check_access_key",
    "servicebus_entity_path",
    "servicebus_namespace",
]

#: What a Service Bus connection string looks like, for error messages.
SERVICEBUS_SHAPE: Final = "Endpoint=sb://<namespace>/;SharedAccessKeyName=<policy>;SharedAccessKey=<key>"
_ACS_SHAPE: Final = "endpoint=https://<resource>.communication.azure.com/;accesskey=<key>"


def servicebus_namespace(value: str) -> str:
    """The fully qualified namespace of a Service Bus connection string; ``ValueError`` if the SDK refuses it.

    The message says what is wrong in the SDK's words and never contains the value.
    """
    from azure.servicebus import ServiceBusClient, parse_connection_string

    try:
        namespace = parse_connection_string(value).fully_qualified_namespace
        # The parser reads keys in their documented case only; the clients read them in any case, so
        # ``sharedaccesskey=`` beside a signature passes the one and fails the other. Ask both. Building
        # a client opens no connection.
        ServiceBusClient.from_connection_string(value)
    except (ValueError, TypeError, AttributeError) as exc:
        reason = str(exc).strip().rstrip(".") or "malformed"
        raise ValueError(
            f"not a Service Bus connection string ({reason}); expected {SERVICEBUS_SHAPE}"
        ) from None
    return namespace


def servicebus_entity_path(value: str) -> str | None:
    """The ``EntityPath`` of a connection string, read like the SDK's clients read it (key in any case)."""
    entity: str | None = None
    for item in value.strip().rstrip(";").split(";"):
        key, _, found = item.partition("=")
        if key.strip().lower() == "entitypath":
            entity = found
    return entity


def check_access_key(key: str) -> str:
    """``key`` if the ACS SDK can sign with it; ``ValueError`` (without the key) otherwise."""
    if not key.strip():
        raise ValueError("empty; copy a key from the ACS resource's Keys page")
    try:
        base64.b64decode(key)
    except (binascii.Error, ValueError):
        raise ValueError(
            "not valid base64, so no request could be signed; copy a key from the ACS resource's Keys page"
        ) from None
    return key


def acs_parts(value: str) -> tuple[str, str]:
    """``(endpoint, access key)`` of an ACS connection string; ``ValueError`` (without the key) if unusable.

    The endpoint keeps its scheme (``http://`` for a local emulator) and defaults to ``https://``,
    as the ACS SDK does; a trailing slash is dropped.
    """
    parts: dict[str, str] = {}
    for item in value.split(";"):
        key, _, found = item.partition("=")
        if key.strip():
            parts[key.strip().lower()] = found.strip()
    endpoint, access_key = parts.get("endpoint", ""), parts.get("accesskey", "")
    if not endpoint or not access_key:
        raise ValueError(f"expected {_ACS_SHAPE}")
    if not endpoint.lower().startswith(("http://", "https://")):
        endpoint = f"https://{endpoint}"
    if not urlsplit(endpoint).hostname:
        raise ValueError(f"the endpoint has no host name; expected {_ACS_SHAPE}")
    try:
        check_access_key(access_key)
    except ValueError as exc:
        raise ValueError(f"accesskey: {exc}") from None
    return endpoint.rstrip("/"), access_key
