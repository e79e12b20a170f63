"""``postbus attachments prune``: retention for the claim-check store.

A send never deletes a blob: delayed retries and dead-letter replays of its event still need it.
Blobs go by age instead. In Azure a lifecycle management rule does it (the deployment creates
one); for a local directory, run this command from cron or a scheduled job::

    postbus attachments prune                       # older than POSTBUS_RECORD_RETENTION_DAYS
    postbus attachments prune --older-than-days 45 --dry-run

It works on a Blob container too (it lists every blob, so prefer the lifecycle rule there).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from postbus.attachments.store import attachment_store
from postbus.logs import configure_logging
from postbus.settings import Settings, load_settings

__all__ = ["app"]

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Retention of the claim-check attachment store.",
)


@app.callback()
def _group() -> None:
    """Retention of the claim-check attachment store."""


@app.command()
def prune(
    older_than_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=3650,
            metavar="DAYS",
            help="Delete attachments last published more than DAYS ago (default: POSTBUS_RECORD_RETENTION_DAYS).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
) -> None:
    """Delete claim-checked attachments older than the retention (never one a retry may still need)."""
    settings = load_settings()
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    days = older_than_days if older_than_days is not None else settings.record_retention_days
    count = asyncio.run(_prune(settings, days, dry_run))
    verb = "would prune" if dry_run else "pruned"
    typer.echo(f"{verb} {count} attachment(s) older than {days} days from {settings.attachment_store_url}")


async def _prune(settings: Settings, days: int, dry_run: bool) -> int:
    store = attachment_store(settings)
    try:
        return await store.prune(older_than=datetime.now(UTC) - timedelta(days=days), dry_run=dry_run)
    finally:
        await store.close()
