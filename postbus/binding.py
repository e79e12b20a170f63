"""Where a local server listens: loopback by default, and a warning when told otherwise.

The emulators' inspection API and mailbox console and the pipeline view have no sign-in, so
anything but a loopback address exposes captured mail or pipeline numbers to whoever can reach it.
"""

from __future__ import annotations

import ipaddress

__all__ = ["exposure_warning", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, what: str) -> str | None:
    """The one warning line for serving ``what`` on ``host``; ``None`` for a loopback address."""
    if is_loopback(host):
        return None
    return (
        f"postbus: warning: serving {what} on {host}: it has no sign-in, so anyone who can reach "
        "this address can read it"
    )
