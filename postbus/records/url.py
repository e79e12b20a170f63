"""``POSTBUS_RECORD_URL``: which store holds the delivery record, parsed without touching it.

Two forms:

- ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (three slashes and a relative
  path, four for an absolute one, as SQLAlchemy spells it): an embedded SQLite file, the default
  (``sqlite:///.postbus/records.db``, under the working directory's state folder).
- ``https://<account>.table.core.windows.net/<table>``: an Azure Storage table. Path-style URLs
  ``http(s)://<host>:<port>/<account>/<table>`` address an emulator (Azurite); plain ``http`` is
  accepted only for a loopback host, so a shared key is never signed over the network in clear.

Credentials are not part of the URL: a table is reached with ``DefaultAzureCredential`` unless
``POSTBUS_RECORD_ACCOUNT_KEY`` holds the account's shared key. This module imports no driver, so
settings can validate the URL cheaply at start.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from postbus.storage_url import parse_storage_url

__all__ = ["DEFAULT_RECORD_URL", "SqliteLocation", "TableLocation", "check_credentials", "parse_record_url"]

DEFAULT_RECORD_URL: Final = "sqlite:///.postbus/records.db"

_TABLE_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")
_FORMS: Final = "use sqlite:///path/records.db or https://<account>.table.core.windows.net/<table>"


@dataclass(frozen=True, slots=True)
class SqliteLocation:
    """An SQLite database file (relative paths are relative to the working directory)."""

    path: Path


@dataclass(frozen=True, slots=True)
class TableLocation:
    """An Azure Storage table: the service endpoint (with the account for path-style URLs)."""

    endpoint: str
    account: str
    table: str

    @property
    def url(self) -> str:
        """The table's URL, as configured."""
        return f"{self.endpoint}/{self.table}"


def _sqlite(url: str) -> SqliteLocation:
    rest = url[len("sqlite://") :]
    if not rest.startswith("/") or "?" in rest or "#" in rest:
        raise ValueError(f"{url!r}: {_FORMS}")
    path = rest[1:]
    if not path or path.endswith("/"):
        raise ValueError(f"{url!r} names no database file")
    return SqliteLocation(Path(path))


def _table_name_problem(table: str) -> str | None:
    if not _TABLE_NAME.fullmatch(table) or table.lower() == "tables":
        return f"table name {table!r} must be 3-63 letters and digits, starting with a letter"
    return None


def _table(url: str) -> TableLocation:
    endpoint, account, table = parse_storage_url(
        url, forms=_FORMS, resource="table", name_problem=_table_name_problem
    )
    return TableLocation(endpoint=endpoint, account=account, table=table)


def parse_record_url(url: str) -> SqliteLocation | TableLocation:
    """Parse ``POSTBUS_RECORD_URL``; raise :class:`ValueError` with a one-line reason."""
    url = url.strip()
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        return _sqlite(url)
    if scheme in ("https", "http"):
        return _table(url)
    raise ValueError(f"{url!r} is not a record store URL; {_FORMS}")


def check_credentials(url: str, account_key: str | None) -> str | None:
    """Why a (valid) URL and an optional shared key do not go together, or ``None`` if they do.

    The reason names the settings as ``{url}`` and ``{key}`` placeholders.
    """
    location = parse_record_url(url)
    if account_key is not None:
        if not isinstance(location, TableLocation):
            return "{key} needs a table URL in {url}"
        try:
            base64.b64decode(account_key, validate=True)
        except (binascii.Error, ValueError):
            return "{key}: not a base64 account key"
        return None
    if isinstance(location, TableLocation) and location.endpoint.startswith("http:"):
        return "{url}: a plain-http table (an emulator) needs {key}"
    return None
