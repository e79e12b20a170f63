"""RFC 9457 problem details: the one shape of every refusal the ingest API gives.

A refusal is raised as :class:`Problem` anywhere below the routes and turned into an
``application/problem+json`` response by one exception handler::

    raise Problem(403, "policy", "sender 'billing' is not allowed for client 'shop'", field="sender")

``field`` names the offending field as a dotted path (``to.0.address``), the way the event
contract's validation names it, so a client can point at the input it has to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PROBLEM_JSON", "PROBLEM_TITLES", "Problem", "ProblemBody", "problem_type"]

PROBLEM_JSON: Final = "application/problem+json"

#: The problem kinds, their HTTP status and title; ``type`` is ``urn:postbus:problem:<kind>``.
PROBLEM_TITLES: Final[Mapping[str, tuple[int, str]]] = {
    "malformed-json": (400, "The body is not valid JSON"),
    "unauthenticated": (401, "Authentication required"),
    "forbidden": (403, "Not allowed for this client"),
    "not-found": (404, "Not found"),
    "idempotency-conflict": (409, "Idempotency key reused with a different body"),
    "too-large": (413, "The body is too large"),
    "unsupported-media-type": (415, "The body must be application/json"),
    "invalid-event": (422, "The event breaks the notification contract"),
    "invalid-request": (422, "The request is not valid"),
    "template-error": (422, "The template does not render with this data"),
    "rate-limited": (429, "Too many requests"),
    "internal": (500, "Internal error"),
    "unavailable": (503, "The queue is unavailable; try again later"),
}


def problem_type(kind: str) -> str:
    """The ``type`` URI of a problem kind."""
    return f"urn:postbus:problem:{kind}"


class ProblemBody(BaseModel):
    """An RFC 9457 problem details object, with the offending ``field`` as an extension member."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="URI of the problem kind, `urn:postbus:problem:<kind>`.")
    title: str
    status: int
    detail: str = Field(description="One line saying what is wrong and naming the field.")
    instance: str | None = Field(None, description="The request path.")
    field: str | None = Field(None, description="Dotted path of the offending field, e.g. `to.0.address`.")


class Problem(Exception):
    """A refusal: becomes a problem+json response with ``kind``'s status, and optional headers."""

    def __init__(
        self,
        kind: str,
        detail: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.kind = kind
        self.status, self.title = PROBLEM_TITLES[kind]
        self.detail = detail
        self.field = field or None
        self.headers = dict(headers or {})

    def body(self, instance: str | None = None) -> ProblemBody:
        """The problem details object."""
        return ProblemBody(
            type=problem_type(self.kind),
            title=self.title,
            status=self.status,
            detail=self.detail,
            instance=instance,
            field=self.field,
        )

    def document(self, instance: str | None = None) -> dict[str, Any]:
        """The problem as a JSON-ready dict, without empty members."""
        return self.body(instance).model_dump(exclude_none=True)
