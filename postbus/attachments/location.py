"""``POSTBUS_ATTACHMENT_STORE_URL``: where claim-checked attachments live, parsed without touching it.

Two forms:

- ``file:relative/dir`` or ``file:///absolute/dir``: a local directory, the embedded default
  (``file:.postbus/attachments``, under the working directory's state folder). Every producer and
  worker that shares it must see the same directory (one machine, or a shared volume).
- ``https://<account>.blob.core.windows.net/<container>``: an Azure Blob Storage container.
  Path-style URLs ``http(s)://<host>:<port>/<account>/<container>`` address an emulator
  (Azurite); plain ``http`` is accepted only for a loopback host.

Credentials are not part of the URL: a container is reached with ``DefaultAzureCredential`` unless
``POSTBUS_ATTACHMENT_STORE_CONNECTION_STRING`` holds a storage connection string with the
account's key (or a SAS). This module imports no SDK, so settings validate the URL cheaply.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from postbus.storage_url import parse_storage_url

__all__ = [
    "DEFAULT_ATTACHMENT_STORE_URL",
    "BlobCredentials",
    "ContainerLocation",
    "DirectoryLocation",
    "check_attachment_credentials",
    "parse_attachment_store_url",
    "parse_connection_string",
]

DEFAULT_ATTACHMENT_STORE_URL: Final = "file:.postbus/attachments"

_CONTAINER_NAME: Final = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
_FORMS: Final = "use file:path/dir, file:///abs/dir or https://<account>.blob.core.windows.net/<container>"


@dataclass(frozen=True, slots=True)
class DirectoryLocation:
    """A local directory (relative paths are relative to the working directory)."""

    path: Path


@dataclass(frozen=True, slots=True)
class ContainerLocation:
    """An Azure Blob Storage container: the service endpoint (with the account when path-style)."""

    endpoint: str
    account: str
    container: str

    @property
    def url(self) -> str:
        """The container's URL, as configured."""
        return f"{self.endpoint}/{self.container}"


@dataclass(frozen=True, slots=True)
class BlobCredentials:
    """What a storage connection string grants: the account and its key, or a SAS token."""

    account: str
    key: str | None = None
    sas: str | None = None


def _directory(url: str) -> DirectoryLocation:
    rest = url[len("file:") :]
    if rest.startswith("//"):
        # file:///abs/dir: an empty authority, then the absolute path.
        if not rest.startswith("///"):
            raise ValueError(f"{url!r}: a file URL names no host; {_FORMS}")
        rest = rest[2:]
    if not rest or "?" in rest or "#" in rest:
        raise ValueError(f"{url!r}: {_FORMS}")
    return DirectoryLocation(Path(rest))


def _container_name_problem(container: str) -> str | None:
    if not _CONTAINER_NAME.fullmatch(container):
        return f"container name {container!r} must be 3-63 lower-case letters, digits and single hyphens"
    return None


def _container(url: str) -> ContainerLocation:
    endpoint, account, container = parse_storage_url(
        url, forms=_FORMS, resource="container", name_problem=_container_name_problem
    )
    return ContainerLocation(endpoint=endpoint, account=account, container=container)


def parse_attachment_store_url(url: str) -> DirectoryLocation | ContainerLocation:
    """Parse ``POSTBUS_ATTACHMENT_STORE_URL``; raise :class:`ValueError` with a one-line reason."""
    url = url.strip()
    scheme = url.partition(":")[0].lower()
    if scheme == "file":
        return _directory(url)
    if scheme in ("https", "http"):
        return _container(url)
    raise ValueError(f"{url!r} is not an attachment store URL; {_FORMS}")


def parse_connection_string(value: str) -> BlobCredentials:
    """The account and key (or SAS) of a storage connection string; :class:`ValueError` if it has none."""
    fields: dict[str, str] = {}
    for part in value.strip().strip(";").split(";"):
        name, sep, field_value = part.partition("=")
        if not sep:
            raise ValueError("not a storage connection string (expected Name=value pairs separated by ';')")
        fields[name.strip().lower()] = field_value.strip()
    sas = fields.get("sharedaccesssignature")
    account = fields.get("accountname", "")
    key = fields.get("accountkey")
    if key is not None:
        try:
            base64.b64decode(key, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("AccountKey is not base64") from None
    if not account or (key is None and sas is None):
        raise ValueError(
            "a storage connection string needs AccountName and AccountKey (or SharedAccessSignature)"
        )
    return BlobCredentials(account=account, key=key, sas=sas)


def check_attachment_credentials(url: str, connection_string: str | None) -> str | None:
    """Why a (valid) URL and an optional connection string do not go together, or ``None``.

    The reason names the settings as ``{url}`` and ``{cs}`` placeholders.
    """
    location = parse_attachment_store_url(url)
    if connection_string is None:
        if isinstance(location, ContainerLocation) and location.endpoint.startswith("http:"):
            return "{url}: a plain-http container (an emulator) needs {cs}"
        return None
    if not isinstance(location, ContainerLocation):
        return "{cs} needs a blob container URL in {url}"
    try:
        credentials = parse_connection_string(connection_string)
    except ValueError as exc:
        return "{cs}: " + str(exc)
    if credentials.account != location.account:
        return f"{{cs}} is for account {credentials.account!r}, {{url}} names {location.account!r}"
    return None
