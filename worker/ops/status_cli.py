"""``postbus status``: the story of a send from the delivery record, and ACS's word when that has no end yet.

The record is read first (:mod:`~postbus.worker.ops.record_status`). ACS is asked only when no
record of the event or operation has a final outcome (nothing recorded, only queued or sent), or
when the record store cannot be read (a warning line on stderr says so).

``--json`` prints ``{"records": [...], "acs": [...] | null, "record_store_error": str | null}``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from postbus.settings import Settings
from postbus.worker.ops.console import AsJson, echo_json, ops_settings, stdout
from postbus.worker.ops.errors import BadInput
from postbus.worker.ops.record_status import needs_acs, record_json, record_lookup, story

__all__ = ["status_app"]

status_app = typer.Typer(add_completion=False)

# -- status --------------------------------------------------------------------------------------


@status_app.command()
def status(
    operation_id: Annotated[
        str | None, typer.Argument(metavar="OPERATION_ID", help="ACS operation id (a UUID).")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--event-id", metavar="ID", help="Look up every generation of this event.")
    ] = None,
    generations: Annotated[
        int,
        typer.Option(
            min=0,
            max=20,
            metavar="N",
            help="With --event-id: replay generations to look up beyond the first.",
        ),
    ] = 2,
    as_json: AsJson = False,
) -> None:
    """Print the story of a send from the delivery record; ask ACS only when the record has no final outcome."""
    from postbus.worker.ops.status import check_event_id, check_operation_id

    if (operation_id is None) == (event_id is None):
        raise BadInput("give an operation id or --event-id (one of them)")
    if operation_id is not None:
        operation_id = check_operation_id(operation_id)
    if event_id is not None:
        check_event_id(event_id)
    settings = ops_settings()
    records, store_error = asyncio.run(_records(settings, operation_id, event_id))
    rows: list[Any] | None = None
    if store_error or needs_acs(records):
        rows = asyncio.run(_status(settings, operation_id, event_id, generations))
    if store_error:
        typer.echo(f"postbus: warning: delivery record not read ({store_error}); showing ACS only", err=True)
    if as_json:
        echo_json(
            {
                "records": [record_json(record) for record in records],
                "acs": None if rows is None else [row.to_json() for row in rows],
                "record_store_error": store_error or None,
            }
        )
        return
    console = stdout()
    if records:
        story_table = Table("generation", "operation id", "outcome", "story")
        for record in records:
            generation = "" if record.generation is None else str(record.generation)
            story_table.add_row(
                generation, record.operation_id, record.outcome.value, "\n".join(story(record))
            )
        console.print(story_table)
    elif not store_error:
        console.print("No delivery record yet (not sent, or written before records were kept).")
    if rows is not None:
        table = Table("generation", "operation id", "ACS status", "error")
        for row in rows:
            generation = "" if row.generation is None else str(row.generation)
            table.add_row(
                generation, row.operation_id, row.status, "" if row.status == "Succeeded" else row.error
            )
        console.print(table)


async def _records(
    settings: Settings, operation_id: str | None, event_id: str | None
) -> tuple[list[Any], str]:
    """The record's answer, or the one-line reason the store could not give it."""
    from postbus.records import RecordStoreUnavailable, record_store

    try:
        async with record_store(settings) as store:
            records = await record_lookup(store, event_id=event_id, operation_id=operation_id)
    except RecordStoreUnavailable as exc:
        return [], str(exc)
    return records, ""


async def _status(
    settings: Settings, operation_id: str | None, event_id: str | None, generations: int
) -> list[Any]:
    from postbus.worker.ops.acs import AcsStatusClient
    from postbus.worker.ops.status import event_status, operation_status

    async with AcsStatusClient.from_settings(settings) as acs:
        if operation_id is not None:
            return [await operation_status(acs, operation_id)]
        assert event_id is not None
        return await event_status(
            acs, event_id, namespace=settings.operation_namespace, generations=generations
        )
