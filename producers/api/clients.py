"""The client registry: who may call the ingest API, and what each caller may send.

It is JSON, given as ``POSTBUS_API_CLIENTS`` (the document itself, or the path of a file that
holds it; in Azure a Container App secret that references Key Vault)::

    {"clients": [{
        "name": "shop",
        "entra_app_ids": ["11111111-2222-3333-4444-555555555555"],
        "api_keys": ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
        "types": ["order.confirmation", "return.label"],
        "senders": ["orders", "returns"],
        "tenants": ["shop"],
        "recipient_domains": null,
        "max_recipients": 10,
        "rate_limit": {"per_second": 20, "burst": 100}
    }]}

API keys are stored only as ``sha256:<hex>`` of the key (keys are random, 32 bytes or more, so a
plain hash is enough; ``postbus api new-key`` makes one). A client may list several keys, so a new
key can be handed out before the old one is removed. ``entra_app_ids`` are the application (client)
ids that Entra puts in a token's ``azp`` or ``appid`` claim: the vendor's app registration, or
the client id of its managed identity.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from postbus.errors import SettingsError
from postbus.events import NotificationEvent, valid_token

__all__ = [
    "KEY_PREFIX",
    "Client",
    "ClientRegistry",
    "RateLimit",
    "hash_key",
    "load_registry",
    "new_key",
    "policy_violation",
]

#: How a stored key hash starts.
KEY_PREFIX: Final = "sha256:"
_HASH_RE: Final = re.compile(r"sha256:[0-9a-f]{64}")
_GUID_RE: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DOMAIN_RE: Final = re.compile(
    r"(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+"
)
_SETTING: Final = "POSTBUS_API_CLIENTS"


def hash_key(key: str) -> str:
    """The stored form of an API key: ``sha256:<hex>``."""
    return KEY_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh API key (``pb_`` + 43 URL-safe characters) and its hash for the registry."""
    key = "pb_" + secrets.token_urlsafe(32)
    return key, hash_key(key)


class RateLimit(BaseModel):
    """A token bucket: ``per_second`` events on average, up to ``burst`` at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_second: Annotated[float, Field(gt=0)]
    burst: Annotated[int, Field(ge=1)]


class Client(BaseModel):
    """One caller of the API and its policy. Empty ``recipient_domains`` (``null``) allows any domain."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    entra_app_ids: tuple[str, ...] = ()
    api_keys: tuple[str, ...] = ()
    types: Annotated[tuple[str, ...], Field(min_length=1)]
    senders: Annotated[tuple[str, ...], Field(min_length=1)]
    tenants: Annotated[tuple[str, ...], Field(min_length=1)]
    recipient_domains: tuple[str, ...] | None = None
    max_recipients: Annotated[int, Field(ge=1, le=50)] = 50
    rate_limit: RateLimit = RateLimit(per_second=50, burst=500)

    @field_validator("entra_app_ids")
    @classmethod
    def _guids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for app_id in value:
            if not _GUID_RE.fullmatch(app_id):
                raise ValueError(f"{app_id!r} is not an application (client) id (a GUID)")
        return tuple(app_id.lower() for app_id in value)

    @field_validator("api_keys")
    @classmethod
    def _hashes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for stored in value:
            if not _HASH_RE.fullmatch(stored):
                # Never echo the value: it may be a key pasted by mistake.
                raise ValueError("each api_keys entry must be sha256:<64 hex digits> (postbus api new-key)")
        return value

    @field_validator("recipient_domains")
    @classmethod
    def _domains(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        lowered = tuple(domain.lower() for domain in value)
        for domain in lowered:
            if not _DOMAIN_RE.fullmatch(domain):
                raise ValueError(f"{domain!r} is not a domain (or *.domain)")
        return lowered

    @model_validator(mode="after")
    def _tokens(self) -> Client:
        for field, values in (("type", self.types), ("sender", self.senders), ("tenant", self.tenants)):
            for value in values:
                if not valid_token(field, value):
                    raise ValueError(f"{value!r} is not a valid {field}")
        if not self.entra_app_ids and not self.api_keys:
            raise ValueError(f"client {self.name!r} needs entra_app_ids or api_keys")
        return self

    def allows_domain(self, domain: str) -> bool:
        """Whether a recipient at ``domain`` is allowed (``*.example.com`` covers subdomains)."""
        if self.recipient_domains is None:
            return True
        domain = domain.lower()
        for allowed in self.recipient_domains:
            if allowed.startswith("*."):
                if domain.endswith(allowed[1:]):
                    return True
            elif domain == allowed:
                return True
        return False


class ClientRegistry(BaseModel):
    """Every client, looked up by key hash or by Entra application id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    clients: tuple[Client, ...]

    @model_validator(mode="after")
    def _unique(self) -> ClientRegistry:
        seen: dict[str, str] = {}
        names: set[str] = set()
        for client in self.clients:
            if client.name in names:
                raise ValueError(f"client name {client.name!r} appears twice")
            names.add(client.name)
            for credential in (*client.api_keys, *client.entra_app_ids):
                if credential in seen:
                    raise ValueError(
                        f"clients {seen[credential]!r} and {client.name!r} share a key or application id"
                    )
                seen[credential] = client.name
        return self

    def by_key(self, key: str) -> Client | None:
        """The client holding API key ``key`` (compared by hash)."""
        return self._by_credential().get(hash_key(key))

    def by_app_id(self, app_id: str) -> Client | None:
        """The client registered for Entra application id ``app_id``."""
        return self._by_credential().get(app_id.lower())

    def _by_credential(self) -> Mapping[str, Client]:
        table: dict[str, Client] | None = self.__dict__.get("_table")
        if table is None:
            table = {c: client for client in self.clients for c in (*client.api_keys, *client.entra_app_ids)}
            object.__setattr__(self, "_table", table)  # a cache on a frozen model
        return table

    @property
    def uses_entra(self) -> bool:
        """Whether any client signs in with Entra ID."""
        return any(client.entra_app_ids for client in self.clients)


def _describe(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    location = ".".join(str(part) for part in item["loc"])
    message = item["msg"].removeprefix("Value error, ")
    if item["type"] == "extra_forbidden":
        message = "unknown field"
    return f"{location}: {message}" if location else message


def load_registry(value: str) -> ClientRegistry:
    """Read the registry from JSON text or a file path; one-line :class:`SettingsError` if it is wrong."""
    text = value.strip()
    where = _SETTING
    if not text.startswith("{"):
        path = Path(text).expanduser()
        where = f"{_SETTING} ({path})"
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise SettingsError(f"{_SETTING}: cannot read {path}: {reason}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{where}: not valid JSON: {exc.msg} (line {exc.lineno})") from None
    try:
        return ClientRegistry.model_validate(document)
    except ValidationError as exc:
        raise SettingsError(f"{where}: {_describe(exc)}") from None


def policy_violation(client: Client, event: NotificationEvent) -> tuple[str, str] | None:
    """``(field, message)`` for the first thing ``event`` may not do for ``client``, or ``None``."""
    if event.type not in client.types:
        return "type", f"type {event.type!r} is not allowed for client {client.name!r}"
    if event.sender not in client.senders:
        return "sender", f"sender {event.sender!r} is not allowed for client {client.name!r}"
    if event.tenant not in client.tenants:
        return "tenant", f"tenant {event.tenant!r} is not allowed for client {client.name!r}"
    recipients = event.recipients()
    if len(recipients) > client.max_recipients:
        return "to", (
            f"to/cc/bcc: {len(recipients)} recipients, client {client.name!r} may send to at most "
            f"{client.max_recipients}"
        )
    for name, addresses in (("to", event.to), ("cc", event.cc), ("bcc", event.bcc)):
        for index, address in enumerate(addresses):
            domain = address.address.rpartition("@")[2]
            if not client.allows_domain(domain):
                return f"{name}.{index}.address", (
                    f"{name}.{index}.address: domain {domain!r} is not allowed for client {client.name!r}"
                )
    return None
