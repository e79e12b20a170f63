"""``postbus doctor``: a preflight checklist, each check with its result and the fix for a failure.

Checks run in order and never raise: a broken setting becomes a failed row, and checks that need
it are skipped. Nothing sends an email: ACS credentials are proven by a status read of a random
operation id, which must answer 404 (401 means the key is wrong)::

    checks = await run_doctor(load_result, options=DoctorOptions())
    failed = [c for c in checks if c.status == "fail"]

Queue properties come from Azure's management API (``ServiceBusAdministrationClient``) when it is
reachable, or from the Service Bus emulator's admin endpoint (``GET /queues``) when its URL is
given; the emulator does not serve Azure's management API, so without that URL the check is
skipped rather than failed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import urllib.request
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Literal

from pydantic import TypeAdapter, ValidationError

from postbus.attachments import AttachmentStoreUnavailable, AttachmentUnavailable, attachment_store
from postbus.bus import (
    AccessDenied,
    AuthenticationFailed,
    BusError,
    QueueLinks,
    QueueNotFound,
    ServiceBusConnection,
)
from postbus.errors import PostbusError, SettingsError
from postbus.events import Address
from postbus.lanes import lane_queues
from postbus.settings import Settings, env_name
from postbus.variables import variables_check
from postbus.worker.ops.acs import AcsRefused, AcsStatusClient
from postbus.worker.ops.errors import OpsError

__all__ = [
    "EXPECTED_QUEUE",
    "Check",
    "CheckStatus",
    "DoctorOptions",
    "QueueExpectations",
    "run_doctor",
]

CheckStatus = Literal["pass", "fail", "warn", "skip"]

_TIMEOUT: Final = 20.0
_DURATION: Final = TypeAdapter(timedelta)


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the checklist."""

    name: str
    status: CheckStatus
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.status, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True, slots=True)
class QueueExpectations:
    """Queue properties Postbus relies on (infra/modules/messaging.bicep sets exactly these)."""

    #: Producer re-sends and replays are dropped by message id; it cannot be enabled later.
    duplicate_detection: bool = True
    min_duplicate_window: timedelta = timedelta(minutes=10)
    #: Abandons during a systemic outage spend deliveries; too few dead-letter good messages.
    min_max_delivery_count: int = 10
    #: The lock must outlast one send (timeout 30 s) between renewals.
    min_lock_duration: timedelta = timedelta(seconds=30)


EXPECTED_QUEUE: Final = QueueExpectations()


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """Where to look beyond the settings: the emulator's admin URL, and the ``--azure`` target."""

    servicebus_admin_url: str | None = None
    azure: Any = None  # worker.ops.azure_checks.AzureTarget
    expectations: QueueExpectations = EXPECTED_QUEUE


Loaded = Settings | SettingsError


async def run_doctor(loaded: Loaded, *, options: DoctorOptions | None = None) -> list[Check]:
    """Run every check; ``loaded`` is the settings, or the error loading them raised."""
    options = options or DoctorOptions()
    variables = Check("variables", *variables_check())
    if isinstance(loaded, SettingsError):
        return [Check("settings", "fail", str(loaded), "set or correct the variable named above"), variables]
    settings = loaded
    checks = [Check("settings", "pass", f"loaded; queue {settings.queue!r}"), variables]
    checks += await _servicebus_checks(settings, options)
    checks.append(await _guarded("ACS credentials", _acs_credentials(settings)))
    checks.append(_senders(settings))
    checks.append(await _guarded("attachment store", _attachment_store(settings)))
    checks.append(await asyncio.to_thread(_templates, settings))
    checks.append(_telemetry(settings))
    if options.azure is not None:
        from postbus.worker.ops.azure_checks import azure_checks

        checks += await asyncio.to_thread(azure_checks, settings, options.azure)
    return checks


async def _guarded(name: str, check: Awaitable[Check]) -> Check:
    try:
        async with asyncio.timeout(_TIMEOUT + 10):
            return await check
    except TimeoutError:
        return Check(name, "fail", "no answer in time", "check the endpoint and the network path to it")


# -- Service Bus ---------------------------------------------------------------------------------


def _is_emulator(settings: Settings) -> bool:
    secret = settings.servicebus_connection_string
    return secret is not None and "usedevelopmentemulator=true" in secret.get_secret_value().lower()


async def _servicebus_checks(settings: Settings, options: DoctorOptions) -> list[Check]:
    try:
        settings.require_servicebus("the worker")
    except SettingsError as exc:
        fix = f"set {env_name('servicebus_connection_string')} (or the namespace for managed identity)"
        return [Check("Service Bus queue", "fail", str(exc), fix)]
    checks: list[Check] = []
    queues = lane_queues(settings)
    for lane, queue in queues.items():
        # With lanes, every lane's queue gets its rows, named after the lane.
        suffix = f" ({lane.value} lane)" if len(queues) > 1 else ""
        queue_check, dlq_check = await _queue_reachable(settings, queue, suffix)
        checks.append(queue_check)
        if dlq_check is not None:
            checks.append(dlq_check)
        if queue_check.status == "pass":
            checks.append(
                await _guarded(
                    f"queue properties{suffix}", _queue_properties(settings, options, queue, suffix)
                )
            )
    return checks


async def _queue_reachable(settings: Settings, queue: str, suffix: str = "") -> tuple[Check, Check | None]:
    name = f"Service Bus queue{suffix}"
    connection = ServiceBusConnection.from_settings(
        settings, purpose="the worker", client_options={"retry_total": 1, "retry_backoff_factor": 0.2}
    )
    try:
        async with asyncio.timeout(_TIMEOUT), connection:
            await _peek_one(connection, queue, dead_letters=False)
            waiting = await _peek_one(connection, queue, dead_letters=True)
    except QueueNotFound:
        fix = "create the queue (infra/modules/messaging.bicep, or the emulator's Config.json) or fix POSTBUS_QUEUE (a lane: POSTBUS_QUEUE_CRITICAL, POSTBUS_QUEUE_BULK)"
        return Check(name, "fail", f"queue {queue!r} does not exist", fix), None
    except (AuthenticationFailed, AccessDenied) as exc:
        fix = "check the SAS key in the connection string, or the identity's 'Azure Service Bus Data Owner' role"
        return Check(name, "fail", f"credentials refused: {exc.detail[:300]}", fix), None
    except (BusError, TimeoutError) as exc:
        cause = exc.detail if isinstance(exc, BusError) else "no answer in time"
        detail = f"not reachable: {type(exc).__name__}: {cause[:300]}"
        return Check(name, "fail", detail, "check the namespace host, port and network path"), None
    dlq = (
        Check(
            f"dead-letter queue{suffix}",
            "warn",
            "dead-lettered messages are waiting",
            "inspect them with `postbus dlq list --summary`, then replay or purge",
        )
        if waiting
        else Check(f"dead-letter queue{suffix}", "pass", "empty")
    )
    return Check(name, "pass", f"reachable; queue {queue!r} exists"), dlq


async def _peek_one(connection: ServiceBusConnection, queue: str, *, dead_letters: bool) -> bool:
    """Whether the queue (or its dead-letter queue) holds a message; proves it exists and we may listen."""
    links = await QueueLinks(connection, queue, dead_letters=dead_letters, send=False).open()
    try:
        return bool(await links.peek(1))
    finally:
        await links.close()


async def _queue_properties(
    settings: Settings, options: DoctorOptions, queue: str, suffix: str = ""
) -> Check:
    name = f"queue properties{suffix}"
    properties: dict[str, Any] | None
    if options.servicebus_admin_url:
        properties = await asyncio.to_thread(_emulator_properties, options.servicebus_admin_url, queue)
        source = "emulator admin endpoint"
    elif _is_emulator(settings):
        return Check(
            name,
            "skip",
            "skipped: management API not reachable (the Service Bus emulator does not serve it)",
            "pass --servicebus-admin http://host:port (the emulator's admin endpoint) to check its Config.json",
        )
    else:
        try:
            properties = await _azure_properties(settings, queue)
        except _Unreachable as exc:
            return Check(name, "skip", f"skipped: management API not reachable ({exc})", "")
        source = "Service Bus management API"
    if properties is None:
        return Check(name, "fail", f"queue {queue!r} not found by the {source}", "create the queue")
    problems = _property_problems(properties, options.expectations)
    if problems:
        return Check(
            name,
            "fail",
            "; ".join(problems),
            "recreate or update the queue as in infra/modules/messaging.bicep "
            "(duplicate detection can only be set when the queue is created)",
        )
    return Check(
        name, "pass", f"duplicate detection, delivery count and lock duration as expected ({source})"
    )


class _Unreachable(Exception):
    pass


def _emulator_properties(admin_url: str, queue: str) -> dict[str, Any] | None:
    url = admin_url.rstrip("/") + "/queues"
    if not url.startswith(("http://", "https://")):
        raise OpsError(f"--servicebus-admin {admin_url!r}: expected an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:  # noqa: S310 (scheme checked above)
            document = json.loads(response.read())
    except (OSError, ValueError) as exc:
        raise OpsError(f"emulator admin endpoint {url} did not answer: {exc}") from exc
    for name, props in document.items():
        if name.lower() == queue.lower():
            return {
                "requires_duplicate_detection": bool(props.get("RequiresDuplicateDetection")),
                "duplicate_detection_history_time_window": _DURATION.validate_python(
                    props.get("DuplicateDetectionHistoryTimeWindow", "PT0S")
                ),
                "max_delivery_count": int(props.get("MaxDeliveryCount", 0)),
                "lock_duration": _DURATION.validate_python(props.get("LockDuration", "PT0S")),
                "requires_session": bool(props.get("RequiresSession")),
            }
    return None


async def _azure_properties(settings: Settings, queue: str) -> dict[str, Any] | None:
    connection = ServiceBusConnection.from_settings(settings, purpose="the worker")
    try:
        async with connection:
            found = await connection.queue_settings(queue)
    except BusError as exc:
        raise _Unreachable(f"{type(exc).__name__}: {exc.detail[:200]}") from exc
    return dataclasses.asdict(found) if found is not None else None


def _property_problems(props: dict[str, Any], expected: QueueExpectations) -> list[str]:
    problems: list[str] = []
    if expected.duplicate_detection and not props["requires_duplicate_detection"]:
        problems.append("duplicate detection is off")
    elif props["duplicate_detection_history_time_window"] < expected.min_duplicate_window:
        problems.append(
            f"duplicate window {props['duplicate_detection_history_time_window']} < {expected.min_duplicate_window}"
        )
    if props["max_delivery_count"] < expected.min_max_delivery_count:
        problems.append(f"MaxDeliveryCount {props['max_delivery_count']} < {expected.min_max_delivery_count}")
    if props["lock_duration"] < expected.min_lock_duration:
        problems.append(f"LockDuration {props['lock_duration']} < {expected.min_lock_duration}")
    if props["requires_session"]:
        problems.append("sessions are required (Postbus does not use sessions)")
    return problems


# -- ACS ----------------------------------------------------------------------------------------


async def _acs_credentials(settings: Settings) -> Check:
    name = "ACS credentials"
    try:
        client = AcsStatusClient.from_settings(settings, purpose="sending email")
    except SettingsError as exc:
        return Check(
            name, "fail", str(exc), f"set {env_name('acs_endpoint')} and {env_name('acs_access_key')}"
        )
    probe = str(uuid.uuid4())
    try:
        async with client:
            info = await client.lookup(probe)
    except AcsRefused as exc:
        return Check(
            name,
            "fail",
            str(exc),
            "use the resource's current access key (az communication list-key) or grant the identity access",
        )
    except OpsError as exc:
        return Check(name, "fail", str(exc), "check the ACS endpoint and the network path to it")
    if info is not None:
        return Check(name, "warn", f"ACS reported a random operation id as {info.status}", "")
    return Check(name, "pass", "accepted (a status read of a random operation id answered 404; nothing sent)")


async def _attachment_store(settings: Settings) -> Check:
    """Read an attachment that cannot exist: "not there" proves the store answers and lets us read."""
    name = "attachment store"
    store = attachment_store(settings)
    try:
        await store.get("sha256/" + "0" * 64)
    except AttachmentUnavailable:
        return Check(name, "pass", f"readable: {store.location}")
    except AttachmentStoreUnavailable as exc:
        fix = (
            f"check {env_name('attachment_store_url')}, its credentials (the worker needs blob read) "
            "and the network path to it"
        )
        return Check(name, "fail", str(exc), fix)
    finally:
        await store.close()
    return Check(name, "warn", f"{store.location} holds an attachment with the all-zero hash", "")


def _senders(settings: Settings) -> Check:
    name = "sender aliases"
    if not settings.senders:
        return Check(
            name,
            "fail",
            "no sender aliases configured",
            f"set {env_name('senders')} to alias -> address JSON",
        )
    bad: list[str] = []
    for alias, address in sorted(settings.senders.items()):
        try:
            Address.model_validate(address)
        except ValidationError:
            bad.append(f"{alias}: {address!r}")
    if bad:
        return Check(name, "fail", "not valid addresses: " + ", ".join(bad), f"correct {env_name('senders')}")
    domains = sorted({address.rpartition("@")[2].lower() for address in settings.senders.values()})
    return Check(
        name,
        "pass",
        f"{len(settings.senders)} aliases on {', '.join(domains)} (domains are checked against ACS with --azure)",
    )


def _templates(settings: Settings) -> Check:
    from postbus.worker.rendering import TemplateRenderer

    name = "templates"
    try:
        renderer = TemplateRenderer(user_dir=settings.templates_dir)
    except PostbusError as exc:
        return Check(name, "fail", str(exc), f"fix {env_name('templates_dir')}")
    failures: list[str] = []
    rendered = 0
    for event_type in renderer.types():
        try:
            data = renderer.sample_data(event_type)
            for locale in renderer.locales(event_type):
                renderer.render(event_type, locale=locale, data=data, tenant="doctor")
                rendered += 1
        except PostbusError as exc:
            failures.append(str(exc))
    if failures:
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        return Check(
            name,
            "fail",
            "; ".join(failures[:3]) + more,
            "fix the template or its sample.json; preview with `postbus templates render <type> --locale <locale>`",
        )
    return Check(name, "pass", f"{rendered} type/locale pairs of {len(renderer.types())} types render")


def _telemetry(settings: Settings) -> Check:
    name = "telemetry"
    if settings.applicationinsights_connection_string is not None:
        return Check(name, "pass", "Azure Monitor (Application Insights)")
    if settings.otel_exporter_otlp_endpoint:
        return Check(name, "pass", f"OTLP to {settings.otel_exporter_otlp_endpoint}")
    return Check(
        name,
        "warn",
        "no destination: traces, metrics and logs are not exported",
        "set APPLICATIONINSIGHTS_CONNECTION_STRING (Azure Monitor) or OTEL_EXPORTER_OTLP_ENDPOINT",
    )
