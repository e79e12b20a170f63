"""One frozen settings object, read once at the edge and passed down.

Every value comes from an environment variable with the prefix ``POSTBUS_`` (two standard
variables, ``APPLICATIONINSIGHTS_CONNECTION_STRING`` and ``OTEL_EXPORTER_OTLP_ENDPOINT``, keep
their own names), or from a ``.env`` file (:mod:`postbus.envfile`), which the environment
overrides. Nothing else in Postbus reads ``os.environ``, except :mod:`postbus.variables`, which
looks there for misspelt names. A missing, malformed or contradictory setting fails at start with
one line naming the variable::

    settings = load_settings()              # raises SettingsError("POSTBUS_CONCURRENCY: ...")
    settings.require_servicebus("worker")   # raises if neither connection string nor namespace

Connection strings and access keys are checked offline here (:mod:`postbus.connection_strings`),
so a value the Azure SDKs would refuse never gets as far as a worker that reports ready. When
``POSTBUS_QUOTA_PER_MINUTE``/``_PER_HOUR`` are unset, the quota follows the sender domains
(:func:`quota_defaults`).

The README's configuration table is generated from this model (``python -m postbus.settings``)
and a test keeps the two equal.
"""

from __future__ import annotations

import enum
import json
import os
import re
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as _PydanticSettingsError

from postbus.connection_strings import (
    acs_parts,
    check_access_key,
    servicebus_entity_path,
    servicebus_namespace,
)
from postbus.envfile import ENCODING, ENV_FILE_VARIABLE, env_file_path, read_env_file
from postbus.errors import SettingsError

__all__ = [
    "AZURE_MANAGED_DOMAIN_QUOTA",
    "CUSTOM_DOMAIN_QUOTA",
    "DEFAULT_SOCKET_TIMEOUT",
    "ENV_PREFIX",
    "Settings",
    "env_name",
    "load_settings",
    "quota_defaults",
    "settings_table",
]

ENV_PREFIX: Final = "POSTBUS_"

#: ACS's default send quota per subscription, (per minute, per hour), for custom (verified) domains;
#: it can be raised through a support request.
CUSTOM_DOMAIN_QUOTA: Final = (30, 100)
#: The same for Azure-managed domains (``DoNotReply@<guid>.azurecomm.net``); it cannot be raised.
AZURE_MANAGED_DOMAIN_QUOTA: Final = (5, 10)
_AZURE_MANAGED_SUFFIX: Final = ".azurecomm.net"


#: The Service Bus socket timeout when none is set: (up to this concurrency, seconds), then the rest.
#: Chosen from measurements at concurrency 16, 64 and 256 (docs/performance.md): a short read
#: triples throughput at 16, but every waiting settlement wakes once per read, and at 64 and
#: more that costs more CPU than the quicker confirmation gains.
DEFAULT_SOCKET_TIMEOUT: Final = ((32, 0.02), 0.05)

#: Namespace for ``operation_id = uuid5(namespace, event id)``; changing it re-sends everything in flight.
DEFAULT_OPERATION_NAMESPACE: Final = UUID("6f0b7c8e-3f4a-5d2b-9c1e-2a7d4b8e9f10")

_ALIAS_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_ADDRESS_RE = re.compile(r"[^@\s<>]{1,64}@[A-Za-z0-9.-]{1,253}\.[A-Za-z]{2,63}")

_UNSET_ALIASES: Final = {
    "applicationinsights_connection_string": "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "otel_exporter_otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
}


class Settings(BaseSettings):
    """Postbus configuration (environment variables ``POSTBUS_*``).

    Service Bus: a connection string, or a fully qualified namespace used with
    ``DefaultAzureCredential``. ACS Email: an endpoint with an access key, a connection string,
    or an endpoint alone (``DefaultAzureCredential``). Secrets are ``SecretStr`` and never logged.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, frozen=True, extra="ignore", populate_by_name=True
    )

    # --- Service Bus -------------------------------------------------------------------------
    servicebus_connection_string: SecretStr | None = Field(
        None,
        description="Service Bus connection string (local emulator or SAS). Excludes the namespace. An "
        "`EntityPath` in it must name `POSTBUS_QUEUE`.",
    )
    servicebus_namespace: str | None = Field(
        None,
        description="Fully qualified namespace (`<name>.servicebus.windows.net`), used with DefaultAzureCredential.",
    )
    queue: Annotated[str, Field(min_length=1, max_length=260)] = Field(
        "notifications", description="Queue that carries notification events."
    )
    lanes: bool = Field(
        False,
        description="Priority lanes: `critical`, `normal` and `bulk` events travel on three queues and the "
        "worker receives from all of them. Off: `POSTBUS_QUEUE` carries every event.",
    )
    queue_critical: Annotated[str, Field(max_length=260)] = Field(
        "", description="Queue of the `critical` lane (with lanes on). Empty: `<POSTBUS_QUEUE>-critical`."
    )
    queue_bulk: Annotated[str, Field(max_length=260)] = Field(
        "", description="Queue of the `bulk` lane (with lanes on). Empty: `<POSTBUS_QUEUE>-bulk`."
    )
    lane_normal_weight: Annotated[int, Field(ge=1, le=1000)] = Field(
        4,
        description="Share of send permits the `normal` lane gets against `bulk` while both wait "
        "(`critical` always goes first).",
    )
    lane_bulk_weight: Annotated[int, Field(ge=1, le=1000)] = Field(
        1, description="Share of send permits the `bulk` lane gets against `normal` while both wait."
    )
    lane_raise_allowed: bool = Field(
        False,
        description="This producer (library, `postbus publish`) may put an event in a higher lane than "
        "its type's default; any producer may ask for a lower one.",
    )
    servicebus_keep_alive_seconds: Annotated[int, Field(ge=0, le=3600)] = Field(
        30,
        description="How often an idle Service Bus link pings the namespace so its connection stays open "
        "(the SDK's default); 0 turns the ping off, for short-lived processes and tests, whose closes then "
        "do not wait for it.",
    )
    servicebus_socket_timeout: Annotated[float, Field(ge=0.001, le=5)] | None = Field(
        None,
        description="Seconds one read of the Service Bus SDK waits on its connection. Each settlement "
        "polls the connection in reads this long, so it also bounds how late a confirmed `complete` "
        "is noticed (the SDK's own default is 0.2). Unset: 0.02 up to `POSTBUS_CONCURRENCY` 32, 0.05 above.",
    )

    # --- ACS Email ---------------------------------------------------------------------------
    acs_endpoint: str | None = Field(
        None,
        description="ACS endpoint, `https://<name>.communication.azure.com`; alone, uses DefaultAzureCredential.",
    )
    acs_access_key: SecretStr | None = Field(
        None, description="ACS access key (base64), used with the endpoint."
    )
    acs_connection_string: SecretStr | None = Field(
        None, description="ACS connection string `endpoint=...;accesskey=...`. Excludes endpoint and key."
    )
    senders: dict[str, str] = Field(
        default_factory=dict,
        description='Sender allow-list as JSON, alias -> address: `{"orders": "DoNotReply@contoso.com"}`.',
    )

    # --- Worker ------------------------------------------------------------------------------
    concurrency: Annotated[int, Field(ge=1, le=1024)] = Field(
        16, description="Messages processed at once per worker."
    )
    prefetch: Annotated[int, Field(ge=0, le=5000)] = Field(
        64,
        description="Messages the receiver buffers ahead; with a quota, none (each receive asks for what "
        "the send gate lets the worker hold).",
    )
    health_port: Annotated[int, Field(ge=0, le=65535)] = Field(
        8080, description="Port of `/healthz` and `/readyz`; 0 disables the endpoint."
    )
    event_loop: Literal["auto", "asyncio", "uvloop"] = Field(
        "auto",
        description="Event loop of the worker: `auto` uses uvloop when it is installed (the `fast` extra), "
        "`asyncio` never does, `uvloop` requires it.",
    )
    shutdown_grace_seconds: Annotated[float, Field(gt=0, le=3600)] = Field(
        25.0,
        description="Time in-flight work gets after SIGTERM; keep it below the platform's kill deadline "
        "(the Azure template gives the container this plus 10 s).",
    )
    send_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = Field(
        30.0, description="Deadline of one ACS send request."
    )
    templates_dir: Path | None = Field(
        None, description="Directory of user templates that add to the shipped ones."
    )
    operation_namespace: UUID = Field(
        DEFAULT_OPERATION_NAMESPACE,
        description="UUID namespace for ACS operation ids (uuid5 of the event id).",
    )

    # --- Retries and quota -------------------------------------------------------------------
    retry_max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        8, description="Delivery attempts per event before `RetriesExhausted`."
    )
    retry_quick_attempts: Annotated[int, Field(ge=0, le=10)] = Field(
        2, description="Quick in-process retries before a delayed retry."
    )
    retry_backoff_base_seconds: Annotated[float, Field(gt=0)] = Field(
        5.0, description="Base of the exponential backoff (full jitter) for delayed retries."
    )
    retry_backoff_cap_seconds: Annotated[float, Field(gt=0)] = Field(
        900.0, description="Cap of one delayed-retry backoff."
    )
    retry_max_age_seconds: Annotated[float, Field(gt=0)] = Field(
        86400.0, description="Give up on an event this long after it was first enqueued."
    )
    quota_per_minute: Annotated[int, Field(ge=0)] = Field(
        CUSTOM_DOMAIN_QUOTA[0],
        description="ACS sends per minute shared by all replicas (0: no per-minute limit). Unset: 5 if "
        "a sender is on an Azure-managed domain (`*.azurecomm.net`), else 30 (ACS's default quotas).",
    )
    quota_per_hour: Annotated[int, Field(ge=0)] = Field(
        CUSTOM_DOMAIN_QUOTA[1],
        description="ACS sends per hour shared by all replicas (0: no per-hour limit). Unset: 10 if a "
        "sender is on an Azure-managed domain, else 100.",
    )
    breaker_cooldown_seconds: Annotated[float, Field(gt=0)] = Field(
        5.0, description="First cool-down of the circuit breaker; doubles while failures continue."
    )
    breaker_cooldown_max_seconds: Annotated[float, Field(gt=0)] = Field(
        300.0, description="Longest circuit-breaker cool-down."
    )

    # --- Delivery record ---------------------------------------------------------------------
    record_url: str = Field(
        "sqlite:///.postbus/records.db",
        description="Where delivery records live: `sqlite:///path.db` (relative; `sqlite:////abs/path.db`) "
        "or a table `https://<account>.table.core.windows.net/<table>` (DefaultAzureCredential).",
    )
    record_account_key: SecretStr | None = Field(
        None,
        description="Shared key of the table's storage account (Azurite locally); unset, DefaultAzureCredential.",
    )
    record_retention_days: Annotated[int, Field(ge=1, le=3650)] = Field(
        30, description="Delivery records older than this many days are pruned."
    )
    reports_queue: Annotated[str, Field(max_length=260)] = Field(
        "email-events",
        description="Queue of ACS delivery reports (Event Grid's endpoint) the worker consumes; empty turns it off.",
    )
    report_concurrency: Annotated[int, Field(ge=1, le=256)] = Field(
        4, description="Delivery reports processed at once per worker."
    )
    suppress_days: Annotated[float, Field(ge=0, le=3650)] = Field(
        0,
        description="After a hard bounce or `Suppressed` report, refuse sends to that recipient for this many "
        "days (`RecipientSuppressed`); 0 turns it off.",
    )

    @field_validator("record_url")
    @classmethod
    def _valid_record_url(cls, value: str) -> str:
        from postbus.records.url import parse_record_url

        parse_record_url(value)
        return value.strip()

    @model_validator(mode="after")
    def _record_credentials(self) -> Settings:
        from postbus.records.url import check_credentials

        key = self.record_account_key
        problem = check_credentials(self.record_url, None if key is None else key.get_secret_value())
        if problem:
            raise ValueError(problem.format(url=env_name("record_url"), key=env_name("record_account_key")))
        return self

    # --- Replica roster ----------------------------------------------------------------------
    roster_enabled: bool = Field(
        True,
        description="Workers register in a roster in the record store (`POSTBUS_RECORD_URL`) and count the "
        "live replicas, so each starts at, and never grows past, its share of the quota; off: each starts "
        "at the whole quota.",
    )
    roster_heartbeat: Annotated[float, Field(ge=0.1, le=300)] = Field(
        2.0,
        description="Seconds between a worker's roster heartbeats; a replica silent for three heartbeats "
        "no longer counts.",
    )

    # --- Ingest API (postbus api) -------------------------------------------------------------
    api_host: str = Field(
        "127.0.0.1", description="Address `postbus api` listens on (`0.0.0.0` in a container)."
    )
    api_port: Annotated[int, Field(ge=1, le=65535)] = Field(8000, description="Port of `postbus api`.")
    api_clients: str | None = Field(
        None,
        description="Client registry of the ingest API: its JSON, or the path of a JSON file (docs/api.md).",
    )
    api_entra_tenant_id: str | None = Field(
        None,
        description="Entra ID tenant whose access tokens the API accepts; unset, API keys only.",
    )
    api_audiences: list[str] = Field(
        default_factory=list,
        description='Accepted token audiences as JSON, e.g. `["api://postbus-ingest", "<app client id>"]`.',
    )
    api_authority: str = Field(
        "https://login.microsoftonline.com",
        description="Entra authority; issuers and signing keys are read under `<authority>/<tenant>`.",
    )
    api_max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = Field(
        16 * 1024 * 1024,
        description="Largest request body the API reads (larger: 413); room for one event with ACS's 10 MB "
        "of attachments.",
    )
    api_max_event_bytes: Annotated[int, Field(ge=1024, le=100 * 1024 * 1024)] = Field(
        192 * 1024,
        description="Largest event (as JSON, attachment content not counted: the claim check moves it) "
        "the API queues; keep it below the queue's message size limit.",
    )
    api_render_check: bool = Field(
        True,
        description="Render each event's template before queueing it, so bad `data` is a 422, not a dead letter.",
    )

    @model_validator(mode="after")
    def _api_tokens(self) -> Settings:
        if self.api_entra_tenant_id is not None and not self.api_audiences:
            raise ValueError(f"{env_name('api_entra_tenant_id')} needs {env_name('api_audiences')}")
        if self.api_entra_tenant_id is not None and not re.fullmatch(
            r"[A-Za-z0-9.-]{1,100}", self.api_entra_tenant_id
        ):
            raise ValueError(
                f"{env_name('api_entra_tenant_id')}: {self.api_entra_tenant_id!r} is not a tenant id or domain"
            )
        if not re.fullmatch(r"https?://[^\s/]+(/[^\s]*)?", self.api_authority):
            raise ValueError(f"{env_name('api_authority')}: {self.api_authority!r} is not an https URL")
        return self

    # --- Attachments (claim check) ------------------------------------------------------------
    attachment_store_url: str = Field(
        "file:.postbus/attachments",
        description="Where attachments too large for a message wait: a directory `file:path` "
        "(`file:///abs/path`) shared by producers and workers, or a container "
        "`https://<account>.blob.core.windows.net/<container>` (DefaultAzureCredential).",
    )
    attachment_store_connection_string: SecretStr | None = Field(
        None,
        description="Storage connection string (AccountKey or SAS) for the container (Azurite locally); "
        "unset, DefaultAzureCredential.",
    )
    attachment_inline_max_bytes: Annotated[int, Field(ge=0, le=200 * 1024)] = Field(
        64 * 1024,
        description="An attachment larger than this (raw bytes) always goes to the attachment store; "
        "smaller ones do too when the event would not fit the queue's message limit.",
    )

    @field_validator("attachment_store_url")
    @classmethod
    def _valid_attachment_store_url(cls, value: str) -> str:
        from postbus.attachments.location import parse_attachment_store_url

        parse_attachment_store_url(value)
        return value.strip()

    @model_validator(mode="after")
    def _attachment_credentials(self) -> Settings:
        from postbus.attachments.location import check_attachment_credentials

        secret = self.attachment_store_connection_string
        problem = check_attachment_credentials(
            self.attachment_store_url, None if secret is None else secret.get_secret_value()
        )
        if problem:
            raise ValueError(
                problem.format(
                    url=env_name("attachment_store_url"), cs=env_name("attachment_store_connection_string")
                )
            )
        return self

    # --- Telemetry ---------------------------------------------------------------------------
    service_name: str = Field("postbus", description="OpenTelemetry `service.name`.")
    environment: str = Field("dev", description="OpenTelemetry `deployment.environment`.")
    instance_id: str = Field(
        default_factory=socket.gethostname,
        description="OpenTelemetry `service.instance.id` (default: host name).",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest level logged."
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: JSON unless stderr is a terminal."
    )
    applicationinsights_connection_string: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices(
            "APPLICATIONINSIGHTS_CONNECTION_STRING", "applicationinsights_connection_string"
        ),
        description="Export traces, metrics and logs to Azure Monitor.",
    )
    otel_exporter_otlp_endpoint: str | None = Field(
        None,
        validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT", "otel_exporter_otlp_endpoint"),
        description="Export over OTLP/HTTP to this endpoint.",
    )

    @model_validator(mode="before")
    @classmethod
    def _quota_follows_the_senders(cls, data: Any) -> Any:
        # Runs on the merged sources, so an explicit value (0 included) is already in ``data``.
        if not isinstance(data, dict) or {"quota_per_minute", "quota_per_hour"} <= data.keys():
            return data
        senders = data.get("senders")
        if isinstance(senders, str):
            try:
                senders = json.loads(senders)
            except ValueError:
                senders = None  # the field reports it
        if not isinstance(senders, Mapping) or not all(isinstance(a, str) for a in senders.values()):
            senders = {}
        per_minute, per_hour = quota_defaults(senders)
        return {"quota_per_minute": per_minute, "quota_per_hour": per_hour, **data}

    @field_validator("senders")
    @classmethod
    def _valid_senders(cls, value: dict[str, str]) -> dict[str, str]:
        for alias, address in value.items():
            if not _ALIAS_RE.fullmatch(alias):
                raise ValueError(f"sender alias {alias!r} must be 1-64 of a-z 0-9 . _ -")
            if not _ADDRESS_RE.fullmatch(address):
                raise ValueError(f"sender {alias!r}: {address!r} is not a bare email address")
        return value

    @field_validator("acs_endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"https?://[^\s/]+/?", value):
            raise ValueError(f"{value!r} is not an endpoint like https://<name>.communication.azure.com")
        return value.rstrip("/") if value else value

    @field_validator("servicebus_connection_string")
    @classmethod
    def _valid_servicebus_connection_string(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            servicebus_namespace(value.get_secret_value())
        return value

    @field_validator("acs_connection_string")
    @classmethod
    def _valid_acs_connection_string(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            acs_parts(value.get_secret_value())
        return value

    @field_validator("acs_access_key")
    @classmethod
    def _valid_access_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            check_access_key(value.get_secret_value())
        return value

    @field_validator("servicebus_namespace")
    @classmethod
    def _valid_namespace(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9.-]+(:\d+)?", value):
            raise ValueError(
                f"{value!r} is not a fully qualified namespace like <name>.servicebus.windows.net"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        self._consistent_servicebus()
        if self.acs_connection_string is not None and (self.acs_endpoint or self.acs_access_key):
            raise ValueError(
                f"{env_name('acs_connection_string')} excludes {env_name('acs_endpoint')} and "
                f"{env_name('acs_access_key')}; choose one"
            )
        if self.acs_access_key is not None and not self.acs_endpoint:
            raise ValueError(f"{env_name('acs_access_key')} needs {env_name('acs_endpoint')}")
        if self.retry_backoff_cap_seconds < self.retry_backoff_base_seconds:
            raise ValueError(
                f"{env_name('retry_backoff_cap_seconds')} must be at least {env_name('retry_backoff_base_seconds')}"
            )
        if self.lanes:
            names = [
                self.queue_critical or f"{self.queue}-critical",
                self.queue,
                self.queue_bulk or f"{self.queue}-bulk",
            ]
            if len(set(names)) < len(names):
                raise ValueError(
                    f"{env_name('queue_critical')}, {env_name('queue')} and {env_name('queue_bulk')} "
                    f"must name three different queues, got {names}"
                )
        if self.breaker_cooldown_max_seconds < self.breaker_cooldown_seconds:
            raise ValueError(
                f"{env_name('breaker_cooldown_max_seconds')} must be at least {env_name('breaker_cooldown_seconds')}"
            )
        return self

    def _consistent_servicebus(self) -> None:
        if self.servicebus_connection_string is None:
            return
        if self.servicebus_namespace:
            raise ValueError(
                f"{env_name('servicebus_connection_string')} and {env_name('servicebus_namespace')} "
                "are both set; choose one"
            )
        # The SDK refuses a sender or receiver for any other queue than the string's EntityPath.
        entity = servicebus_entity_path(self.servicebus_connection_string.get_secret_value())
        if entity and self.lanes:
            raise ValueError(
                f"{env_name('servicebus_connection_string')}: its EntityPath {entity!r} names one queue, "
                f"but {env_name('lanes')} uses three; remove EntityPath"
            )
        if entity and entity != self.queue:
            raise ValueError(
                f"{env_name('servicebus_connection_string')}: its EntityPath {entity!r} is another queue "
                f"than {env_name('queue')} {self.queue!r}; remove EntityPath or set {env_name('queue')}={entity}"
            )

    @property
    def socket_timeout(self) -> float:
        """``servicebus_socket_timeout``, or the default for this concurrency when it is unset."""
        if self.servicebus_socket_timeout is not None:
            return self.servicebus_socket_timeout
        (up_to, short), longer = DEFAULT_SOCKET_TIMEOUT
        return short if self.concurrency <= up_to else longer

    def require_servicebus(self, purpose: str) -> None:
        """Fail with one line unless Service Bus is configured (needed by ``purpose``)."""
        if self.servicebus_connection_string is None and not self.servicebus_namespace:
            raise SettingsError(
                f"{env_name('servicebus_connection_string')} or {env_name('servicebus_namespace')} "
                f"must be set for {purpose}"
            )

    def require_acs(self, purpose: str) -> None:
        """Fail with one line unless ACS Email is configured (needed by ``purpose``)."""
        if self.acs_connection_string is None and not self.acs_endpoint:
            raise SettingsError(
                f"{env_name('acs_endpoint')} or {env_name('acs_connection_string')} must be set for {purpose}"
            )

    def require_senders(self, purpose: str) -> None:
        """Fail with one line unless at least one sender alias is configured."""
        if not self.senders:
            raise SettingsError(
                f"{env_name('senders')} must map at least one alias to an address for {purpose}"
            )


def env_name(field: str) -> str:
    """The environment variable that sets ``field``."""
    return _UNSET_ALIASES.get(field, f"{ENV_PREFIX}{field.upper()}")


def quota_defaults(senders: Mapping[str, str]) -> tuple[int, int]:
    """ACS's default send quota (per minute, per hour) for the domains of ``senders`` (alias -> address).

    An Azure-managed domain (``*.azurecomm.net``) allows 5/min and 10/h; a custom domain 30/min and
    100/h. One gate paces every send, so one managed-domain sender sets the quota for all.
    """
    managed = any(
        address.rpartition("@")[2].lower().endswith(_AZURE_MANAGED_SUFFIX) for address in senders.values()
    )
    return AZURE_MANAGED_DOMAIN_QUOTA if managed else CUSTOM_DOMAIN_QUOTA


def _one_line(error: ValidationError) -> str:
    item = error.errors(include_url=False)[0]
    message = item["msg"].removeprefix("Value error, ")
    if not item["loc"]:
        return message
    field = str(item["loc"][0])
    name = env_name(field) if field in Settings.model_fields else field
    return f"{name}: {message}"


class _From(enum.Enum):
    ENVIRONMENT = "POSTBUS_ENV_FILE or ./.env"


def load_settings(env_file: Path | _From | None = _From.ENVIRONMENT, /, **overrides: Any) -> Settings:
    """Read the environment, the env file and keyword overrides into :class:`Settings`.

    Keyword overrides win over the environment, which wins over the env file. ``env_file`` (first
    argument, positional) is the file to read (it must exist) or ``None`` for none; by default
    ``POSTBUS_ENV_FILE`` names it, or ``./.env`` is read when it exists. Raises :class:`SettingsError` with one line naming the variable.
    """
    try:
        path = env_file_path(os.environ) if env_file is _From.ENVIRONMENT else env_file
        if path is not None:
            read_env_file(path)  # a line pydantic-settings would skip with a log warning fails here
        return Settings(_env_file=path, _env_file_encoding=ENCODING, **overrides)
    except ValidationError as exc:
        raise SettingsError(_one_line(exc)) from None
    except _PydanticSettingsError as exc:
        # pydantic-settings reports unparsable JSON as 'error parsing value for field "senders" ...'.
        match = re.search(r'field "(\w+)"', str(exc))
        name = env_name(match.group(1)) if match else "settings"
        raise SettingsError(f"{name}: not valid JSON") from None


def _default(field: str) -> str:
    info = Settings.model_fields[field]
    if field == "instance_id":
        return "host name"
    if field in ("quota_per_minute", "quota_per_hour"):
        custom, managed = (CUSTOM_DOMAIN_QUOTA, AZURE_MANAGED_DOMAIN_QUOTA)
        index = 0 if field == "quota_per_minute" else 1
        return f"`{custom[index]}` (`{managed[index]}` on `*.azurecomm.net`)"
    if info.default_factory is not None:
        return "`{}`" if field == "senders" else ""
    if info.default is None or info.default == "":
        return ""
    return f"`{info.default}`"


def settings_table() -> str:
    """The README's configuration table, generated from the model."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for field, info in Settings.model_fields.items():
        rows.append(f"| `{env_name(field)}` | {_default(field)} | {info.description} |")
    rows.append(
        f"| `{ENV_FILE_VARIABLE}` | `.env` | File of `NAME=value` lines read at start (if the default "
        "is missing, none); environment variables win over it. Empty: read no file. |"
    )
    return "\n".join(rows)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    sys.stdout.write(settings_table() + "\n")
