"""The official emulator's ``Config.json`` format, validated.

Only queues are emulated. Durations are ISO-8601 (``PT1M``, ``P1D``); unlike the official emulator
we do not cap them (its TTL <= 1 h and duplicate window <= 5 min would break realistic configs).

Example::

    config = load_config("Config.json")          # or load_config() for the packaged default
    config = EmulatorConfig.from_queues({"q1": {"LockDuration": "PT2S", "MaxDeliveryCount": 3}})
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from postbus.emulators.servicebus.records import QueueSettings
from postbus.errors import SettingsError

__all__ = [
    "EmulatorConfig",
    "LoggingConfig",
    "NamespaceConfig",
    "QueueConfig",
    "QueueProperties",
    "UserConfig",
    "load_config",
]

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class QueueProperties(BaseModel):
    """``Queues[].Properties``; defaults are Azure's own queue defaults."""

    model_config = _FROZEN

    MaxDeliveryCount: int = Field(default=10, ge=1)
    LockDuration: timedelta = timedelta(minutes=1)
    DefaultMessageTimeToLive: timedelta = timedelta(days=14)
    DeadLetteringOnMessageExpiration: bool = False
    RequiresDuplicateDetection: bool = False
    DuplicateDetectionHistoryTimeWindow: timedelta = timedelta(minutes=10)
    MaxSizeInMegabytes: int = Field(default=1024, ge=1)
    RequiresSession: bool = False
    ForwardTo: str = ""
    ForwardDeadLetteredMessagesTo: str = ""

    def to_settings(self) -> QueueSettings:
        """The state machine's view, in seconds."""
        return QueueSettings(
            max_delivery_count=self.MaxDeliveryCount,
            lock_duration=self.LockDuration.total_seconds(),
            default_ttl=self.DefaultMessageTimeToLive.total_seconds(),
            dead_letter_on_expiration=self.DeadLetteringOnMessageExpiration,
            requires_duplicate_detection=self.RequiresDuplicateDetection,
            duplicate_window=self.DuplicateDetectionHistoryTimeWindow.total_seconds(),
            max_size_bytes=self.MaxSizeInMegabytes * 1024 * 1024,
        )

    @field_validator("LockDuration", "DefaultMessageTimeToLive", "DuplicateDetectionHistoryTimeWindow")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive ISO-8601 duration")
        return value

    @field_validator("RequiresSession")
    @classmethod
    def _no_sessions(cls, value: bool) -> bool:
        if value:
            raise ValueError("sessions are not supported by this emulator")
        return value

    @field_validator("ForwardTo", "ForwardDeadLetteredMessagesTo")
    @classmethod
    def _no_forwarding(cls, value: str) -> str:
        if value:
            raise ValueError("auto-forwarding is not supported by this emulator")
        return value


class QueueConfig(BaseModel):
    """One ``Queues[]`` entry."""

    model_config = _FROZEN

    Name: str = Field(min_length=1, max_length=260, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")
    Properties: QueueProperties = QueueProperties()


class NamespaceConfig(BaseModel):
    """One ``Namespaces[]`` entry; topics are accepted only when empty."""

    model_config = _FROZEN

    Name: str = "sbemulatorns"
    Queues: tuple[QueueConfig, ...] = ()
    Topics: tuple[Any, ...] = ()

    @field_validator("Topics")
    @classmethod
    def _no_topics(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        if value:
            raise ValueError("topics are not supported by this emulator")
        return value


class LoggingConfig(BaseModel):
    model_config = _FROZEN

    Type: str = "Console"


class UserConfig(BaseModel):
    model_config = _FROZEN

    Namespaces: tuple[NamespaceConfig, ...] = Field(min_length=1)
    Logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _unique_queue_names(self) -> UserConfig:
        seen: set[str] = set()
        for ns_index, namespace in enumerate(self.Namespaces):
            for q_index, queue in enumerate(namespace.Queues):
                key = queue.Name.lower()
                if key in seen:
                    raise ValueError(
                        f"Namespaces[{ns_index}].Queues[{q_index}].Name: duplicate queue name {queue.Name!r}"
                    )
                seen.add(key)
        return self


class EmulatorConfig(BaseModel):
    """The whole ``Config.json`` document (frozen)."""

    model_config = _FROZEN

    UserConfig: UserConfig

    @property
    def queues(self) -> dict[str, QueueProperties]:
        """Queue name -> properties, across every namespace (names are case-insensitive on the wire)."""
        return {q.Name: q.Properties for ns in self.UserConfig.Namespaces for q in ns.Queues}

    @classmethod
    def from_queues(cls, queues: Mapping[str, QueueProperties | Mapping[str, Any]]) -> EmulatorConfig:
        """Build a one-namespace config, e.g. ``from_queues({"q1": {"LockDuration": "PT2S"}})``."""
        document = {
            "UserConfig": {
                "Namespaces": [
                    {
                        "Name": "sbemulatorns",
                        "Queues": [
                            {
                                "Name": name,
                                "Properties": props.model_dump() if isinstance(props, BaseModel) else props,
                            }
                            for name, props in queues.items()
                        ],
                    }
                ]
            }
        }
        return parse_config(document)


def _format_loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_config(document: Any, *, source: str = "config") -> EmulatorConfig:
    """Validate a decoded ``Config.json``; errors name the offending key."""
    try:
        return EmulatorConfig.model_validate(document)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = _format_loc(tuple(first["loc"])) or "(document)"
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{source}: {where}: {message}") from exc


def load_config(path: str | Path | None = None) -> EmulatorConfig:
    """Read and validate a ``Config.json``; ``None`` loads the packaged default.

    Raises :class:`postbus.errors.SettingsError` naming the file and the offending key.
    """
    if path is None:
        text = resources.files(__package__).joinpath("Config.json").read_text(encoding="utf-8")
        source = "Config.json (built-in)"
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"{source}: cannot read config: {exc.strerror or exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SettingsError(f"{source}: invalid JSON: {exc.msg} (line {exc.lineno})") from exc
    return parse_config(document, source=source)
