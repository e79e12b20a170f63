"""ARM-shaped management-plane responses for ``azure-mgmt-communication`` (read-only).

The data plane answers ``/emails:...``; this module answers the Azure Resource Manager paths that
``az communication email show``, ``... email domain list`` and ``... domain sender-username list``
call, so ``postbus doctor --azure`` can run the real management SDK against the emulator:

``GET /subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Communication/``
``emailServices/{name}``, ``.../domains``, ``.../domains/{domain}``,
``.../domains/{domain}/senderUsernames``, ``.../senderUsernames/{username}`` and
``communicationServices/{name}`` (with ``linkedDomains``).

ARM only speaks HTTPS with ``Authorization: Bearer`` (the SDK refuses to send a token over plain
HTTP), so start the emulator with TLS. What the resources look like is configurable without auth,
like the rest of the inspection API::

    PUT /_emulator/management   {"resource_group": "rg", "email_service": "mail",
                                 "communication_service": "acs",
                                 "domains": [{"name": "contoso.com", "sender_usernames": ["orders"],
                                              "verification": {"SPF": "VerificationFailed"}},
                                             {"name": "AzureManagedDomain",
                                              "domain_management": "AzureManaged"}]}
    GET /_emulator/management

A domain's verification states default to ``Verified``; ``linked_domains`` (domain names) defaults
to every domain. The subscription id is accepted as given unless ``subscription_id`` is set.

Like ACS, a domain's resource name and the domain its mail comes from are two things: a custom
domain is named after its DNS name, while the Azure-managed one is always named
``AzureManagedDomain`` and sends from ``<guid>.azurecomm.net`` (``mail_from_sender_domain``; by
default a GUID derived from the email service's name, so it is stable across restarts).
"""

from __future__ import annotations

import hmac
import json
import threading
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Final

from aiohttp import web

__all__ = [
    "MANAGEMENT_KEY",
    "VERIFICATION_KINDS",
    "ManagedDomain",
    "ManagementConfig",
    "ManagementState",
    "add_management_routes",
]

#: The verification records ARM reports per domain, in ``az`` order.
VERIFICATION_KINDS: Final = ("Domain", "SPF", "DKIM", "DKIM2", "DMARC")
_VERIFICATION_VALUES: Final = frozenset(
    {"NotStarted", "VerificationRequested", "VerificationInProgress", "VerificationFailed", "Verified"}
)
_PROVIDER: Final = "Microsoft.Communication"
_ANY: Final = "*"
_AZURE_MANAGED: Final = "AzureManaged"
_MANAGEMENT_KINDS: Final = frozenset({_AZURE_MANAGED, "CustomerManaged", "CustomerManagedInExchangeOnline"})


@dataclass(frozen=True, slots=True)
class ManagedDomain:
    """One ``Microsoft.Communication/emailServices/domains`` resource."""

    name: str
    domain_management: str = "CustomerManaged"
    verification: dict[str, str] = field(default_factory=dict)
    sender_usernames: tuple[str, ...] = ("DoNotReply",)
    #: The domain mail comes from; ``None``: the name (custom) or a derived ``<guid>.azurecomm.net``.
    mail_from_sender_domain: str | None = None

    def state(self, kind: str) -> str:
        return self.verification.get(kind, "Verified")

    def sender_domain(self, email_service: str) -> str:
        """``fromSenderDomain``/``mailFromSenderDomain`` as ARM reports them for this domain."""
        if self.mail_from_sender_domain:
            return self.mail_from_sender_domain
        if self.domain_management == _AZURE_MANAGED:
            return f"{uuid.uuid5(uuid.NAMESPACE_DNS, f'{email_service}/{self.name}')}.azurecomm.net"
        return self.name


@dataclass(frozen=True, slots=True)
class ManagementConfig:
    """The resources the emulator serves; replace it whole through ``PUT /_emulator/management``."""

    resource_group: str = "postbus-rg"
    email_service: str = "postbus-email"
    communication_service: str = "postbus-acs"
    data_location: str = "United States"
    location: str = "global"
    subscription_id: str = _ANY
    domains: tuple[ManagedDomain, ...] = (ManagedDomain("contoso.example.com"),)
    linked_domains: tuple[str, ...] | None = None
    #: ``"*"`` accepts any bearer token; any other value must match exactly.
    bearer_token: str = _ANY

    @classmethod
    def from_dict(cls, document: Any) -> ManagementConfig:
        """Validate a JSON document (unknown keys and bad states raise ``ValueError``)."""
        if not isinstance(document, dict):
            raise ValueError("expected a JSON object")
        known = {f for f in cls.__dataclass_fields__ if f != "domains"} | {"domains"}
        unknown = set(document) - known
        if unknown:
            raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for key, value in document.items():
            if key == "domains":
                values[key] = tuple(_domain(item) for item in value)
            elif key == "linked_domains":
                values[key] = None if value is None else tuple(str(item) for item in value)
            else:
                if not isinstance(value, str) or not value:
                    raise ValueError(f"{key}: expected a non-empty string")
                values[key] = value
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        document = asdict(self)
        document["domains"] = [asdict(domain) for domain in self.domains]
        return document

    def domain(self, name: str) -> ManagedDomain | None:
        return next((d for d in self.domains if d.name.lower() == name.lower()), None)


def _domain(item: Any) -> ManagedDomain:
    if isinstance(item, str):
        return ManagedDomain(item)
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise ValueError("domains: each item needs a name")
    verification = dict(item.get("verification") or {})
    for kind, state in verification.items():
        if kind not in VERIFICATION_KINDS or state not in _VERIFICATION_VALUES:
            raise ValueError(f"domains: {kind}={state} is not a known verification record and state")
    usernames = tuple(str(u) for u in item.get("sender_usernames", ("DoNotReply",)))
    management = str(item.get("domain_management", "CustomerManaged"))
    if management not in _MANAGEMENT_KINDS:
        raise ValueError(
            f"domains: domain_management {management!r} is not one of {sorted(_MANAGEMENT_KINDS)}"
        )
    sender_domain = item.get("mail_from_sender_domain")
    if sender_domain is not None and (not isinstance(sender_domain, str) or not sender_domain):
        raise ValueError("domains: mail_from_sender_domain must be a non-empty string")
    return ManagedDomain(
        name=item["name"],
        domain_management=management,
        verification=verification,
        sender_usernames=usernames,
        mail_from_sender_domain=sender_domain,
    )


class ManagementState:
    """The current :class:`ManagementConfig`, swapped atomically (handlers read, the PUT writes)."""

    def __init__(self, config: ManagementConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or ManagementConfig()

    @property
    def config(self) -> ManagementConfig:
        with self._lock:
            return self._config

    def set(self, config: ManagementConfig) -> None:
        with self._lock:
            self._config = config


MANAGEMENT_KEY: web.AppKey[ManagementState] = web.AppKey("acs_management_state", ManagementState)


def add_management_routes(app: web.Application, state: ManagementState | None = None) -> None:
    """Serve the ARM paths and the ``/_emulator/management`` knob on ``app``."""
    app[MANAGEMENT_KEY] = state or ManagementState()
    base = "/subscriptions/{sub}/resourceGroups/{rg}/providers/" + _PROVIDER
    r = app.router
    r.add_get(base + "/emailServices/{service}", _email_service)
    r.add_get(base + "/emailServices/{service}/domains", _domains)
    r.add_get(base + "/emailServices/{service}/domains/{domain}", _domain_get)
    r.add_get(base + "/emailServices/{service}/domains/{domain}/senderUsernames", _usernames)
    r.add_get(base + "/emailServices/{service}/domains/{domain}/senderUsernames/{username}", _username)
    r.add_get(base + "/communicationServices/{service}", _communication_service)
    r.add_get("/_emulator/management", _get_config)
    r.add_put("/_emulator/management", _put_config)


# -- ARM envelope --------------------------------------------------------------------------------


def _arm_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}},
        status=status,
        headers={"x-ms-failure-cause": "gateway"},
    )


class _Refused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _authorized(request: web.Request) -> ManagementConfig:
    """Check bearer auth, api-version, subscription and resource group; return the config."""
    config = request.app[MANAGEMENT_KEY].config
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header.removeprefix("Bearer ").strip():
        raise _Refused(
            _arm_error(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        )
    token = header.removeprefix("Bearer ").strip()
    if config.bearer_token != _ANY and not hmac.compare_digest(token, config.bearer_token):
        raise _Refused(_arm_error(401, "InvalidAuthenticationToken", "The access token is invalid."))
    if not request.query.get("api-version"):
        raise _Refused(
            _arm_error(400, "MissingApiVersionParameter", "The api-version query parameter is required.")
        )
    sub = request.match_info["sub"]
    if config.subscription_id != _ANY and sub.lower() != config.subscription_id.lower():
        raise _Refused(
            _arm_error(404, "SubscriptionNotFound", f"The subscription '{sub}' could not be found.")
        )
    rg = request.match_info["rg"]
    if rg.lower() != config.resource_group.lower():
        raise _Refused(_arm_error(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found."))
    return config


def _not_found(kind: str, name: str, rg: str) -> _Refused:
    return _Refused(
        _arm_error(
            404,
            "ResourceNotFound",
            f"The Resource '{_PROVIDER}/{kind}/{name}' under resource group '{rg}' was not found.",
        )
    )


def _resource_id(request: web.Request, config: ManagementConfig, *parts: str) -> str:
    sub = request.match_info["sub"]
    return f"/subscriptions/{sub}/resourceGroups/{config.resource_group}/providers/{_PROVIDER}/" + "/".join(
        parts
    )


def _service(request: web.Request) -> ManagementConfig:
    config = _authorized(request)
    name = request.match_info["service"]
    if name.lower() != config.email_service.lower():
        raise _not_found("emailServices", name, config.resource_group)
    return config


def _domain_of(request: web.Request, config: ManagementConfig) -> ManagedDomain:
    name = request.match_info["domain"]
    domain = config.domain(name)
    if domain is None:
        raise _not_found(f"emailServices/{config.email_service}/domains", name, config.resource_group)
    return domain


def _domain_body(request: web.Request, config: ManagementConfig, domain: ManagedDomain) -> dict[str, Any]:
    states = {kind: {"status": domain.state(kind)} for kind in VERIFICATION_KINDS}
    sender_domain = domain.sender_domain(config.email_service)
    return {
        "id": _resource_id(request, config, "emailServices", config.email_service, "domains", domain.name),
        "name": domain.name,
        "type": f"{_PROVIDER}/emailServices/domains",
        "location": config.location,
        "properties": {
            "provisioningState": "Succeeded",
            "dataLocation": config.data_location,
            "fromSenderDomain": sender_domain,
            "mailFromSenderDomain": sender_domain,
            "domainManagement": domain.domain_management,
            "verificationStates": states,
            "userEngagementTracking": "Disabled",
        },
    }


def _username_body(
    request: web.Request, config: ManagementConfig, domain: ManagedDomain, username: str
) -> dict[str, Any]:
    return {
        "id": _resource_id(
            request,
            config,
            "emailServices",
            config.email_service,
            "domains",
            domain.name,
            "senderUsernames",
            username,
        ),
        "name": username,
        "type": f"{_PROVIDER}/emailServices/domains/senderUsernames",
        "properties": {
            "dataLocation": config.data_location,
            "username": username,
            "displayName": username,
            "provisioningState": "Succeeded",
        },
    }


def _guarded(handler: Any) -> Any:
    async def wrapper(request: web.Request) -> web.Response:
        try:
            body = handler(request)
        except _Refused as refused:
            return refused.response
        return web.json_response(body)

    return wrapper


@_guarded
def _email_service(request: web.Request) -> dict[str, Any]:
    config = _service(request)
    return {
        "id": _resource_id(request, config, "emailServices", config.email_service),
        "name": config.email_service,
        "type": f"{_PROVIDER}/emailServices",
        "location": config.location,
        "tags": {},
        "properties": {"provisioningState": "Succeeded", "dataLocation": config.data_location},
    }


@_guarded
def _domains(request: web.Request) -> dict[str, Any]:
    config = _service(request)
    return {"value": [_domain_body(request, config, d) for d in config.domains]}


@_guarded
def _domain_get(request: web.Request) -> dict[str, Any]:
    config = _service(request)
    return _domain_body(request, config, _domain_of(request, config))


@_guarded
def _usernames(request: web.Request) -> dict[str, Any]:
    config = _service(request)
    domain = _domain_of(request, config)
    return {"value": [_username_body(request, config, domain, u) for u in domain.sender_usernames]}


@_guarded
def _username(request: web.Request) -> dict[str, Any]:
    config = _service(request)
    domain = _domain_of(request, config)
    name = request.match_info["username"]
    match = next((u for u in domain.sender_usernames if u.lower() == name.lower()), None)
    if match is None:
        raise _not_found(
            f"emailServices/{config.email_service}/domains/{domain.name}/senderUsernames",
            name,
            config.resource_group,
        )
    return _username_body(request, config, domain, match)


@_guarded
def _communication_service(request: web.Request) -> dict[str, Any]:
    config = _authorized(request)
    name = request.match_info["service"]
    if name.lower() != config.communication_service.lower():
        raise _not_found("communicationServices", name, config.resource_group)
    linked = config.linked_domains if config.linked_domains is not None else [d.name for d in config.domains]
    return {
        "id": _resource_id(request, config, "communicationServices", config.communication_service),
        "name": config.communication_service,
        "type": f"{_PROVIDER}/communicationServices",
        "location": config.location,
        "tags": {},
        "properties": {
            "provisioningState": "Succeeded",
            "hostName": f"{config.communication_service}.communication.azure.com",
            "dataLocation": config.data_location,
            "linkedDomains": [
                _resource_id(request, config, "emailServices", config.email_service, "domains", domain)
                for domain in linked
            ],
        },
    }


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(request.app[MANAGEMENT_KEY].config.to_dict())


async def _put_config(request: web.Request) -> web.Response:
    try:
        config = ManagementConfig.from_dict(json.loads(await request.read() or b"{}"))
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": {"code": "BadRequest", "message": str(exc)}}, status=400)
    request.app[MANAGEMENT_KEY].set(replace(config))
    return web.json_response(config.to_dict())
