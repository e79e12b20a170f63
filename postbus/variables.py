"""Which ``POSTBUS_`` variables are set but are not settings: typos, mostly, which would be ignored.

The CLI prints one warning line per unknown variable before a command runs, and ``postbus doctor``
shows them as a row; library code can ask too::

    for unknown in unknown_variables():
        print(unknown)    # POSTBUS_QUOTA_PER_MINUT (from the environment) is not a Postbus setting
                          # and is ignored; did you mean POSTBUS_QUOTA_PER_MINUTE?
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from postbus.envfile import ENV_FILE_VARIABLE, env_file_path, read_env_file
from postbus.errors import SettingsError
from postbus.settings import ENV_PREFIX, Settings, env_name

__all__ = ["DEPLOYMENT_VARIABLES", "UnknownVariable", "unknown_variables", "variables_check"]

#: ``POSTBUS_`` variables of the Azure deployment (``azd env``: parameters in infra/main.parameters.json
#: and outputs of infra/main.bicep) that no process reads as a setting. They are not reported as
#: unknown, so ``azd env get-values > .env`` does not warn.
DEPLOYMENT_VARIABLES: Final = frozenset(
    {
        "POSTBUS_ACS_RAISED_QUOTA_PER_HOUR",
        "POSTBUS_ACS_RAISED_QUOTA_PER_MINUTE",
        "POSTBUS_ALERT_EMAIL",
        "POSTBUS_ALERT_RECEIVERS",
        "POSTBUS_API_CLIENTS_SECRET_URI",
        "POSTBUS_API_IDENTITY_CLIENT_ID",
        "POSTBUS_API_MAX_REPLICAS",
        "POSTBUS_API_URL",
        "POSTBUS_DEPLOYER_DATA_ACCESS",
        "POSTBUS_EMAIL_DATA_LOCATION",
        "POSTBUS_EMAIL_DOMAIN",
        "POSTBUS_EMAIL_DOMAIN_RECORDS",
        "POSTBUS_EMAIL_DOMAIN_VERIFIED",
        "POSTBUS_EMAIL_SENDER_ROLE",
        "POSTBUS_MAX_REPLICAS",
        "POSTBUS_PRIVATE_NETWORKING",
        "POSTBUS_PRODUCER_CLIENT_ID",
        "POSTBUS_PRODUCER_IDENTITY_ID",
        "POSTBUS_SCALER_ROLE",
        "POSTBUS_SENDING_DOMAIN",
        "POSTBUS_SENDING_DOMAIN_KIND",
        "POSTBUS_SERVICEBUS_SKU",
        "POSTBUS_WORKBOOK_ID",
    }
)


@dataclass(frozen=True, slots=True)
class UnknownVariable:
    """A ``POSTBUS_`` variable that is no setting: a typo, or a setting of another version. It is ignored."""

    name: str
    #: ``"environment"`` or the env file it was read from.
    source: str
    #: The closest real variable, if one is close.
    suggestion: str | None = None

    def __str__(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{self.name} (from the {self.source}) is not a Postbus setting and is ignored{hint}"


def _setting_names() -> list[str]:
    return [env_name(field) for field in Settings.model_fields]


def _suggestion(name: str) -> str | None:
    # Compare without the shared prefix, which would make every pair look alike.
    stems = {known.removeprefix(ENV_PREFIX): known for known in [*_setting_names(), ENV_FILE_VARIABLE]}
    close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), list(stems), n=1, cutoff=0.6)
    return stems[close[0]] if close else None


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[UnknownVariable]:
    """``POSTBUS_`` variables in the environment (default ``os.environ``) or the env file that set nothing.

    Names are compared in upper case (settings are read case-insensitively). Variables of the Azure
    deployment (:data:`DEPLOYMENT_VARIABLES`) are known. Never raises: an unreadable env file is
    reported by :func:`load_settings`, not here.
    """
    environ = os.environ if environ is None else environ
    sources: list[tuple[str, Mapping[str, object]]] = [("environment", environ)]
    try:
        path = env_file_path(environ)
        if path is not None:
            sources.append((f"env file {path}", read_env_file(path)))
    except SettingsError:
        pass
    known = {*_setting_names(), ENV_FILE_VARIABLE, *DEPLOYMENT_VARIABLES}
    unknown: dict[str, UnknownVariable] = {}
    for source, names in sources:
        for name in names:
            upper = name.upper()
            if upper.startswith(ENV_PREFIX) and upper not in known and upper not in unknown:
                unknown[upper] = UnknownVariable(name, source, _suggestion(upper))
    return list(unknown.values())


def variables_check(environ: Mapping[str, str] | None = None) -> tuple[Literal["pass", "warn"], str, str]:
    """The ``postbus doctor`` row about unknown variables: ``(status, detail, fix)``."""
    unknown = unknown_variables(environ)
    if not unknown:
        return "pass", f"no unknown {ENV_PREFIX} variables", ""
    detail = "; ".join(
        f"{item.name}" + (f" (did you mean {item.suggestion}?)" if item.suggestion else "")
        for item in unknown
    )
    return "warn", f"not settings, ignored: {detail}", "rename or remove them"
