"""Postbus: queue-driven transactional email for Azure.

The kernel package holds what producers and workers share: the event contract
(:mod:`postbus.events`), settings (:mod:`postbus.settings`), logging (:mod:`postbus.logs`)
and the ``postbus`` command line (:mod:`postbus.cli`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("postbus")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ["__version__"]
