"""The template seam: what the API needs to list the templates and preview one.

The worker's ``TemplateRenderer`` fits this protocol; the ``postbus api`` command hands it in, so
the producers never import the worker. A render failure raises a ``PostbusError`` whose message
names the template and the problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Rendered", "TemplateCatalog"]


class Rendered(Protocol):
    """A rendered email."""

    @property
    def subject(self) -> str: ...

    @property
    def html(self) -> str: ...

    @property
    def text(self) -> str: ...


class TemplateCatalog(Protocol):
    """The notification types there are templates for, and their rendering."""

    def types(self) -> list[str]:
        """Every notification type with templates."""
        ...

    def locales(self, event_type: str) -> list[str]:
        """The locales ``event_type`` has templates in."""
        ...

    def sample_data(self, event_type: str) -> dict[str, Any]:
        """Data the type's templates render with."""
        ...

    def resolve_locale(self, event_type: str, locale: str) -> str:
        """The locale a render for ``locale`` uses (after fallback)."""
        ...

    def render(self, event_type: str, *, locale: str, data: Mapping[str, Any], tenant: str = "") -> Rendered:
        """Render ``event_type``; raises a ``PostbusError`` naming the problem."""
        ...
