"""The bodies the ingest API answers with (its OpenAPI schemas) and the batch request."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from postbus.producers.api.problems import ProblemBody

__all__ = [
    "Accepted",
    "BatchItem",
    "BatchResult",
    "Generation",
    "Health",
    "Preview",
    "PreviewRequest",
    "Status",
    "TemplateInfo",
    "Templates",
]


class Accepted(BaseModel):
    """An event on the queue: its id and where its status can be read."""

    id: str
    status: Literal["accepted"] = "accepted"
    location: str = Field(description="Path of the event's status, `/v1/notifications/{id}`.")


class BatchItem(BaseModel):
    """The answer for one item of a batch, in request order."""

    index: int
    id: str | None = None
    status: Literal["accepted", "rejected"]
    location: str | None = None
    problem: ProblemBody | None = None


class BatchResult(BaseModel):
    """Per-item results of a batch: accepted items are on the queue whatever happened to the others."""

    accepted: int
    rejected: int
    results: list[BatchItem]


class Generation(BaseModel):
    """One send generation of an event (a dead-letter replay starts another)."""

    generation: int | None
    operation_id: str
    status: str = Field(
        description="queued, sent, dead_lettered, delivered, bounced, suppressed, quarantined, "
        "filtered_spam, expired or failed."
    )
    status_at: datetime
    attempts: int
    first_enqueued: datetime | None = None
    accepted_at: datetime | None = None
    delivered_at: datetime | None = None
    dead_letter_reason: str | None = None
    dead_letter_description: str | None = None
    status_message: str | None = None
    smtp_status: str | None = None
    recipient_domains: list[str] = Field(default_factory=list)


class Status(BaseModel):
    """What became of an event: the latest generation's status and every generation's story."""

    id: str
    status: str
    generations: list[Generation]


class TemplateInfo(BaseModel):
    """A notification type this client may send."""

    type: str
    locales: list[str]
    senders: list[str]
    sample: dict[str, Any] = Field(description="Data the type's templates render with.")


class Templates(BaseModel):
    """Everything this client may send."""

    client: str
    tenants: list[str]
    templates: list[TemplateInfo]


class PreviewRequest(BaseModel):
    """Data to render a template with (the event's ``data``), and the locale."""

    model_config = ConfigDict(extra="forbid")

    data: dict[str, Any] = Field(default_factory=dict)
    locale: str = "en"
    tenant: str | None = None


class Preview(BaseModel):
    """A rendered email; nothing is sent."""

    type: str
    locale: str = Field(description="The locale the templates used, after fallback (de-AT -> de).")
    subject: str
    html: str
    text: str


class Health(BaseModel):
    """Liveness or readiness."""

    status: Literal["ok", "not ready"]
    detail: str | None = None
