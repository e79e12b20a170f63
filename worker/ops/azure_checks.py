"""``postbus doctor --azure``: management-plane checks through ``azure-mgmt-communication``.

They mirror ``az communication email show`` (the email service exists, its data location),
``az communication email domain list`` (each domain's Domain/SPF/DKIM/DKIM2/DMARC states are
Verified), ``az communication email domain sender-username list`` (every configured sender's
username exists on its domain) and ``az communication show`` (the senders' domains are linked to
the Communication Service the worker sends through). ``azure.core`` exceptions are translated
here, once; every outcome is a :class:`~worker.ops.doctor.Check`::

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
    by_name = {str(d.name).lower(): d for d in domains}
    checks += [_verification(d) for d in domains]
    checks.append(_sender_usernames(client, settings, target, by_name))
    checks.append(_linked(client, settings, target, by_name))
    return checks


def _verification(domain: Any) -> Check:
    name = f"domain {domain.name}"
    states = getattr(domain.properties, "verification_states", None)
    problems: list[str] = []
    for label, attr in VERIFICATION_RECORDS:
        record = getattr(states, attr, None) if states is not None else None
        raw = getattr(record, "status", None)
        # The SDK gives a VerificationStatus enum, or the plain string for a value it does not know.
        status = str(getattr(raw, "value", raw) or "missing")
        if status.lower() != "verified":
            problems.append(f"{label}: {status}")
    if problems:
        return Check(
            name,
            "fail",
            "not verified: " + ", ".join(problems),
            f"add the DNS records from `az communication email domain show --domain-name {domain.name}` "
            "and run `az communication email domain initiate-verification`",
        )
    return Check(name, "pass", "Domain, SPF, DKIM, DKIM2 and DMARC verified")


def _sender_usernames(client: Any, settings: Settings, target: AzureTarget, by_name: dict[str, Any]) -> Check:
    name = "sender usernames"
    problems: list[str] = []
    usernames: dict[str, set[str]] = {}
    for alias, address in sorted(settings.senders.items()):
        local, _, domain = address.rpartition("@")
        if domain.lower() not in by_name:
            problems.append(f"{alias} ({address}): {domain} is not a domain of {target.email_service}")
            continue
        if domain.lower() not in usernames:
            try:
                listed = client.sender_usernames.list_by_domains(
                    target.resource_group, target.email_service, by_name[domain.lower()].name
                )
                usernames[domain.lower()] = {str(u.properties.username).lower() for u in listed}
            except (AzureError, OSError) as exc:
                return _failure(name, exc, missing_fix="check the domain")
        if local.lower() not in usernames[domain.lower()]:
            problems.append(f"{alias} ({address}): no sender username {local!r} on {domain}")
    if not settings.senders:
        return Check(name, "fail", "no sender aliases configured", "set POSTBUS_SENDERS")
    if problems:
        return Check(
            name,
            "fail",
            "; ".join(problems),
            "create the username (az communication email domain sender-username create) or fix POSTBUS_SENDERS",
        )
    return Check(name, "pass", f"every sender ({len(settings.senders)}) exists on its domain")


def _linked(client: Any, settings: Settings, target: AzureTarget, by_name: dict[str, Any]) -> Check:
    name = "linked domains"
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
    needed = sorted({address.rpartition("@")[2].lower() for address in settings.senders.values()})
    missing = [d for d in needed if d in by_name and str(by_name[d].id).lower() not in linked]
    if missing:
        return Check(
            name,
            "fail",
            f"not linked to {service}: {', '.join(missing)}",
            f"link them: az communication update -n {service} -g {target.resource_group} --linked-domains <domain ids>",
        )
    return Check(name, "pass", f"sender domains linked to {service}")
