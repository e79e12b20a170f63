"""``postbus doctor --azure``: management-plane checks through ``azure-mgmt-communication``.

They mirror ``az communication email show`` (the email service exists, its data location),
``az communication email domain list`` (the Domain, SPF, DKIM and DKIM2 records of every domain a
sender uses are Verified; DMARC is advised), ``az communication email domain sender-username list``
(every configured sender's username exists on its domain) and ``az communication show`` (the
senders' domains are linked to the Communication Service the worker sends through).

A sender's domain is matched to a domain *resource* by the domain mail comes from
(``mailFromSenderDomain``), not by the resource's name: the Azure-managed domain is always named
``AzureManagedDomain`` while its senders are ``DoNotReply@<guid>.azurecomm.net``. A sender whose
domain matches no resource fails every check that needs it; nothing passes having checked nothing.
``azure.core`` exceptions are translated here, once; every outcome is a
:class:`~worker.ops.doctor.Check`::

    target = AzureTarget(subscription_id=sub, resource_group="rg", email_service="mail",
                         credential=DefaultAzureCredential())
    checks = azure_checks(settings, target)
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlparse

from azure.core.credentials import AccessToken
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
)

from postbus.errors import SettingsError
from postbus.logs import redact
from postbus.settings import Settings
from postbus.worker.mailer import parse_connection_string
from postbus.worker.ops.doctor import Check
from postbus.worker.ops.errors import BadInput

__all__ = [
    "REQUIRED_RECORDS",
    "VERIFICATION_RECORDS",
    "AzureTarget",
    "StaticTokenCredential",
    "azure_checks",
    "communication_service_name",
]

#: The records ``az communication email domain show`` lists under verificationStates.
VERIFICATION_RECORDS: Final = (
    ("Domain", "domain"),
    ("SPF", "spf"),
    ("DKIM", "dkim"),
    ("DKIM2", "dkim2"),
    ("DMARC", "dmarc"),
)
#: What ACS needs verified before it links a domain and sends from it. DMARC is not among them,
#: but receivers and the quota-raise review look for it, so a missing DMARC record is a warning.
REQUIRED_RECORDS: Final = frozenset({"Domain", "SPF", "DKIM", "DKIM2"})
_AZURE_MANAGED: Final = "azuremanaged"
_ACS_HOST_RE: Final = re.compile(r"([a-z0-9][a-z0-9-]*)\.(?:[a-z0-9-]+\.)?communication\.azure\.com", re.I)
_UUID_RE: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)


class StaticTokenCredential:
    """A ``TokenCredential`` holding one bearer token, e.g. from ``az account get-access-token``."""

    def __init__(self, token: str, *, lifetime: float = 3600.0) -> None:
        self._token = token
        self._lifetime = lifetime

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time() + self._lifetime))


@dataclass(frozen=True, slots=True)
class AzureTarget:
    """Which resources to check, and how to reach ARM (``arm_endpoint`` ``None``: public Azure)."""

    subscription_id: str
    resource_group: str
    email_service: str
    credential: Any
    communication_service: str | None = None
    arm_endpoint: str | None = None
    connection_verify: bool | str = True

    def __post_init__(self) -> None:
        if not _UUID_RE.fullmatch(self.subscription_id):
            raise BadInput(f"--subscription {self.subscription_id!r} is not a subscription id (a UUID)")
        if not self.resource_group or not self.email_service:
            raise BadInput("--azure needs --resource-group and --email-service")


def communication_service_name(settings: Settings) -> str | None:
    """``<name>`` of ``https://<name>[.<region>].communication.azure.com``, the endpoint the worker sends to."""
    endpoint = settings.acs_endpoint
    if settings.acs_connection_string is not None:
        try:
            endpoint, _ = parse_connection_string(settings.acs_connection_string.get_secret_value())
        except SettingsError:
            return None
    host = urlparse(endpoint or "").hostname or ""
    match = _ACS_HOST_RE.fullmatch(host)
    return match.group(1) if match else None


def _client(target: AzureTarget) -> Any:
    from azure.mgmt.communication import CommunicationServiceManagementClient

    return CommunicationServiceManagementClient(
        target.credential,
        target.subscription_id,
        base_url=target.arm_endpoint,
        connection_verify=target.connection_verify,
        retry_total=1,
        connection_timeout=10,
        read_timeout=30,
    )


def _failure(name: str, exc: Exception, *, missing_fix: str) -> Check:
    if isinstance(exc, ResourceNotFoundError):
        return Check(name, "fail", f"not found: {_message(exc)}", missing_fix)
    if isinstance(exc, ClientAuthenticationError) or (
        isinstance(exc, HttpResponseError) and exc.status_code in (401, 403)
    ):
        return Check(
            name,
            "fail",
            f"Azure Resource Manager refused the credential: {_message(exc)}",
            "sign in (az login) or grant the identity Reader on the resource group",
        )
    return Check(
        name, "fail", f"{type(exc).__name__}: {_message(exc)}", "check --arm-endpoint and the network path"
    )


def _message(exc: Exception) -> str:
    if isinstance(exc, HttpResponseError) and exc.error is not None and exc.error.message:
        return redact(str(exc.error.message))[:300]
    return redact(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]


def azure_checks(settings: Settings, target: AzureTarget) -> list[Check]:
    """Run the management-plane checks (blocking; the doctor runs them in a thread)."""
    client = _client(target)
    try:
        return _run(client, settings, target)
    finally:
        client.close()


def _run(client: Any, settings: Settings, target: AzureTarget) -> list[Check]:
    rg, service = target.resource_group, target.email_service
    try:
        email_service = client.email_services.get(rg, service)
    except (AzureError, OSError) as exc:
        fix = f"check --resource-group/--email-service (az communication email show -n {service} -g {rg})"
        return [_failure("email service", exc, missing_fix=fix)]
    location = getattr(email_service.properties, "data_location", None) or "unknown"
    checks = [Check("email service", "pass", f"{service} exists; data location {location}")]
    try:
        domains = list(client.domains.list_by_email_service_resource(rg, service))
    except (AzureError, OSError) as exc:
        return [*checks, _failure("email domains", exc, missing_fix="add a domain to the email service")]
    if not domains:
        return [
            *checks,
            Check("email domains", "fail", "the email service has no domains", "add and verify a domain"),
        ]
    by_sender_domain = _by_sender_domain(domains)
    used = {id(by_sender_domain[d]) for d in _sender_domains(settings) if d in by_sender_domain}
    checks += [_verification(d, used=id(d) in used) for d in domains]
    checks.append(_sender_usernames(client, settings, target, by_sender_domain))
    checks.append(_linked(client, settings, target, by_sender_domain))
    return checks


def _sender_domain(domain: Any) -> str:
    """The domain a domain resource sends from (the resource name only if ARM reports nothing else)."""
    props = getattr(domain, "properties", None)
    for attr in ("mail_from_sender_domain", "from_sender_domain"):
        value = getattr(props, attr, None)
        if value:
            return str(value).lower()
    return str(domain.name).lower()


def _by_sender_domain(domains: list[Any]) -> dict[str, Any]:
    """Sender domain -> domain resource; a custom domain also answers to its resource name."""
    index: dict[str, Any] = {}
    for domain in domains:
        index.setdefault(str(domain.name).lower(), domain)
    for domain in domains:  # the domain mail comes from wins over a resource that happens to share the name
        index[_sender_domain(domain)] = domain
    return index


def _sender_domains(settings: Settings) -> list[str]:
    return sorted({address.rpartition("@")[2].lower() for address in settings.senders.values()})


def _management(domain: Any) -> str:
    raw = getattr(getattr(domain, "properties", None), "domain_management", None)
    return str(getattr(raw, "value", raw) or "")


def _label(domain: Any) -> str:
    name, sender_domain = str(domain.name), _sender_domain(domain)
    return name if name.lower() == sender_domain else f"{name} ({sender_domain})"


def _states(domain: Any) -> dict[str, str]:
    """Record -> status of a domain's verification; an Azure-managed domain's absent states are omitted."""
    azure_managed = _management(domain).lower() == _AZURE_MANAGED
    states = getattr(domain.properties, "verification_states", None)
    found: dict[str, str] = {}
    for label, attr in VERIFICATION_RECORDS:
        raw = getattr(getattr(states, attr, None), "status", None)
        if raw is None and azure_managed:
            continue  # ACS owns an Azure-managed domain's DNS; an absent state is not a finding
        # The SDK gives a VerificationStatus enum, or the plain string for a value it does not know.
        found[label] = str(getattr(raw, "value", raw) or "missing")
    return found


def _verification(domain: Any, *, used: bool) -> Check:
    name = f"domain {_label(domain)}"
    azure_managed = _management(domain).lower() == _AZURE_MANAGED
    kind = "Azure-managed (5/min and 10/hour, not raisable)" if azure_managed else "custom"
    unverified = {label: status for label, status in _states(domain).items() if status.lower() != "verified"}
    required = [f"{label}: {status}" for label, status in unverified.items() if label in REQUIRED_RECORDS]
    advised = [f"{label}: {status}" for label, status in unverified.items() if label not in REQUIRED_RECORDS]
    fix = (
        f"add the DNS records from `az communication email domain show --domain-name {domain.name}` "
        "and run `az communication email domain initiate-verification`"
    )
    if required and used:
        return Check(name, "fail", f"{kind}; not verified: " + ", ".join(required + advised), fix)
    if required:
        return Check(name, "warn", f"{kind}; no sender uses it yet; not verified: {', '.join(required)}", fix)
    if advised:
        detail = f"{kind}; Domain, SPF, DKIM and DKIM2 verified; {', '.join(advised)} (receivers and the quota review look for it)"
        return Check(name, "warn", detail, "publish the DMARC record from the domain's verification records")
    if azure_managed:
        return Check(name, "pass", f"{kind}; verified by ACS")
    return Check(name, "pass", f"{kind}; Domain, SPF, DKIM, DKIM2 and DMARC verified")


def _unknown_domain(alias: str, address: str, target: AzureTarget) -> str:
    domain = address.rpartition("@")[2]
    return f"{alias} ({address}): {domain} is not a sending domain of {target.email_service}"


def _sender_usernames(
    client: Any, settings: Settings, target: AzureTarget, by_domain: dict[str, Any]
) -> Check:
    name = "sender usernames"
    if not settings.senders:
        return Check(name, "fail", "no sender aliases configured", "set POSTBUS_SENDERS")
    problems: list[str] = []
    usernames: dict[str, set[str]] = {}
    for alias, address in sorted(settings.senders.items()):
        local, _, domain = address.rpartition("@")
        resource = by_domain.get(domain.lower())
        if resource is None:
            problems.append(_unknown_domain(alias, address, target))
            continue
        if domain.lower() not in usernames:
            try:
                listed = client.sender_usernames.list_by_domains(
                    target.resource_group, target.email_service, resource.name
                )
                usernames[domain.lower()] = {str(u.properties.username).lower() for u in listed}
            except (AzureError, OSError) as exc:
                return _failure(name, exc, missing_fix="check the domain")
        if local.lower() not in usernames[domain.lower()]:
            problems.append(f"{alias} ({address}): no sender username {local!r} on {_label(resource)}")
    if problems:
        return Check(
            name,
            "fail",
            "; ".join(problems),
            "create the username (az communication email domain sender-username create) or fix POSTBUS_SENDERS",
        )
    return Check(name, "pass", f"every sender ({len(settings.senders)}) exists on its domain")


def _linked(client: Any, settings: Settings, target: AzureTarget, by_domain: dict[str, Any]) -> Check:
    name = "linked domains"
    if not settings.senders:
        return Check(name, "fail", "no sender aliases configured", "set POSTBUS_SENDERS")
    service = target.communication_service or communication_service_name(settings)
    if service is None:
        return Check(
            name,
            "fail",
            "cannot tell the Communication Service from the ACS endpoint",
            "pass --communication-service <name>",
        )
    try:
        resource = client.communication_services.get(target.resource_group, service)
    except (AzureError, OSError) as exc:
        return _failure(name, exc, missing_fix=f"check --communication-service ({service})")
    linked = {str(item).lower() for item in (getattr(resource.properties, "linked_domains", None) or [])}
    needed = _sender_domains(settings)
    unknown = [d for d in needed if d not in by_domain]
    missing = [
        _label(by_domain[d]) for d in needed if d in by_domain and str(by_domain[d].id).lower() not in linked
    ]
    if unknown or missing:
        problems = []
        if missing:
            problems.append(f"not linked to {service}: {', '.join(missing)}")
        if unknown:
            problems.append(f"no domain of {target.email_service} sends as {', '.join(unknown)}")
        return Check(
            name,
            "fail",
            "; ".join(problems),
            f"link them: az communication update -n {service} -g {target.resource_group} --linked-domains <domain ids>"
            if missing
            else "fix POSTBUS_SENDERS, or add and verify that domain",
        )
    return Check(name, "pass", f"sender domains ({', '.join(needed)}) linked to {service}")
