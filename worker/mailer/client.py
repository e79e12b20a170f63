"""The async ACS ``EmailClient`` Postbus builds from its settings (worker and operations commands)."""

from __future__ import annotations

from typing import Any, Final

from azure.communication.email.aio import EmailClient
from azure.core.credentials import AzureKeyCredential

from postbus.errors import SettingsError
from postbus.settings import Settings, env_name

__all__ = ["API_VERSION", "email_client", "parse_connection_string"]

API_VERSION: Final = "2025-09-01"


def parse_connection_string(value: str) -> tuple[str, str]:
    """Split ``endpoint=...;accesskey=...`` keeping the endpoint's scheme.

    The SDK's own ``from_connection_string`` forces ``https://``, which a local emulator on plain
    HTTP cannot serve.
    """
    parts = dict(
        (key.strip().lower(), val.strip())
        for key, _, val in (item.partition("=") for item in value.split(";") if item.strip())
    )
    endpoint, key = parts.get("endpoint", ""), parts.get("accesskey", "")
    if not endpoint or not key:
        raise SettingsError(f"{env_name('acs_connection_string')}: expected endpoint=...;accesskey=...")
    if not endpoint.lower().startswith("http"):
        endpoint = f"https://{endpoint}"
    return endpoint.rstrip("/"), key


def email_client(settings: Settings, *, purpose: str, read_timeout: float) -> tuple[EmailClient, Any]:
    """The async ``EmailClient`` Postbus uses, and the credential to close with it (or ``None``).

    Endpoint + key, a connection string (parsed here, keeping an ``http://`` emulator endpoint), or
    DefaultAzureCredential. The SDK's retries are off: callers decide about resends themselves.
    """
    settings.require_acs(purpose)
    credential: Any
    owned: Any = None
    if settings.acs_connection_string is not None:
        endpoint, key = parse_connection_string(settings.acs_connection_string.get_secret_value())
        credential = AzureKeyCredential(key)
    elif settings.acs_access_key is not None:
        endpoint = settings.acs_endpoint or ""
        credential = AzureKeyCredential(settings.acs_access_key.get_secret_value())
    else:
        from azure.identity.aio import DefaultAzureCredential

        endpoint = settings.acs_endpoint or ""
        credential = owned = DefaultAzureCredential()
    client = EmailClient(
        endpoint,
        credential,
        retry_total=0,
        # Otherwise aiohttp looks up proxy variables and ~/.netrc in a thread for every
        # request: a quarter of the worker's CPU at a few hundred sends per second.
        use_env_settings=False,
        connection_timeout=min(10.0, read_timeout),
        read_timeout=read_timeout,
        logging_enable=False,
    )
    return client, owned
