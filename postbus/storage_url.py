"""The shape every Azure Storage resource URL shares: ``https://<account>.<service>.core.windows.net/<name>``,
or path-style ``http://127.0.0.1:<port>/<account>/<name>`` for a local emulator (Azurite).

The record store's table and the attachment store's container are both named this way; each caller
checks its own resource name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

from postbus.binding import is_loopback

__all__ = ["parse_storage_url"]

_ACCOUNT_NAME: Final = re.compile(r"[a-z0-9]{3,24}")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_storage_url(
    url: str, *, forms: str, resource: str, name_problem: Callable[[str], str | None]
) -> tuple[str, str, str]:
    """``(endpoint, account, name)`` of a storage resource URL; :class:`ValueError` with a one-line
    reason otherwise. ``name_problem`` says what is wrong with the resource's name, or ``None``."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if not host or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"{url!r}: {forms}")
    if parts.scheme == "http" and not is_loopback(host):
        raise ValueError(f"{url!r}: plain http is only for a local emulator; use https")
    segments = [s for s in parts.path.split("/") if s]
    path_style = _is_ip(host) or host == "localhost"
    if len(segments) != (2 if path_style else 1):
        shape = f"/<account>/<{resource}>" if path_style else f"/<{resource}>"
        raise ValueError(f"{url!r}: the path must be {shape}")
    name = segments[-1]
    problem = name_problem(name)
    if problem is not None:
        raise ValueError(f"{url!r}: {problem}")
    account = segments[0] if path_style else host.split(".", 1)[0]
    if not _ACCOUNT_NAME.fullmatch(account):
        raise ValueError(f"{url!r}: storage account {account!r} must be 3-24 lower-case letters and digits")
    endpoint = f"{parts.scheme}://{parts.netloc}" + (f"/{account}" if path_style else "")
    return endpoint, account, name
