"""``postbus status``: the story of a send from the delivery record, and ACS's word when that has no end yet.

The record is read first (:mod:`~postbus.worker.ops.record_status`). ACS is asked only when no
record of the event or operation has a final outcome (nothing recorded, only queued or sent), or
when the record store cannot be read (a warning line on stderr says so).

When ACS is asked about an event id, the queue and its dead-letter queue are searched too (when a
Service Bus namespace is configured). With no record, no send in ACS and no message in either
queue, the command ends in one error line and exit code 1.

``--json`` prints ``{"records": [...], "acs": [...] | null, "messages": [...], "record_store_error":
str | null}``.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from postbus.settings import Settings
from postbus.worker.ops.console import AsJson, echo_json, keep_whole, ops_settings, stdout
from postbus.worker.ops.errors import BadInput, OpsError
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
    sightings: list[Any] = []
    if store_error or needs_acs(records):
        rows, sightings, complete = asyncio.run(
            _status(settings, operation_id, event_id, generations, recorded=bool(records))
        )
        # A record, however early its outcome, already says where the event is: no error then.
        if not records:
            _refuse_unknown(settings, rows, sightings, event_id, generations, searched_all=complete)
    if store_error:
        typer.echo(f"postbus: warning: delivery record not read ({store_error}); showing ACS only", err=True)
    if as_json:
        echo_json(
            {
                "records": [record_json(record) for record in records],
                "acs": None if rows is None else [row.to_json() for row in rows],
                "messages": [sighting.to_json() for sighting in sightings],
                "record_store_error": store_error or None,
            }
        )
        return
    _print(records, rows, sightings, store_error=store_error)


def _refuse_unknown(
    settings: Settings,
    rows: list[Any],
    sightings: list[Any],
    event_id: str | None,
    generations: int,
    *,
    searched_all: bool,
) -> None:
    """One error line when neither the record, ACS nor the queues know the event or operation."""
    if event_id is not None and not sightings and all(row.info is None for row in rows):
        raise OpsError(_nowhere(settings, event_id, generations, searched_all=searched_all))
    if event_id is None and rows[0].info is None:
        raise OpsError(
            f"ACS does not know operation {rows[0].operation_id} (never sent, or older than its retention)"
        )


def _print(records: list[Any], rows: list[Any] | None, sightings: list[Any], *, store_error: str) -> None:
    console = stdout()
    if records:
        story_table = Table("generation", "operation id", "outcome", "story")
        for record in records:
            generation = "" if record.generation is None else str(record.generation)
            story_table.add_row(
                generation, record.operation_id, record.outcome.value, "\n".join(story(record))
            )
        console.print(keep_whole(story_table, "generation", "operation id", "outcome"))
    elif not store_error:
        console.print("No delivery record yet (not sent, or written before records were kept).")
    if rows is not None:
        table = Table("generation", "operation id", "ACS status", "error")
        for row in rows:
            generation = "" if row.generation is None else str(row.generation)
            table.add_row(
                generation, row.operation_id, row.status, "" if row.status == "Succeeded" else row.error
            )
        console.print(keep_whole(table, "generation", "operation id", "ACS status"))
    for sighting in sightings:
        console.print(str(sighting), markup=False, highlight=False, soft_wrap=True)


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


def _nowhere(settings: Settings, event_id: str, generations: int, *, searched_all: bool) -> str:
    acs = f"ACS has no send of event {event_id!r} (generations 0-{generations})"
    if settings.servicebus_connection_string is None and not settings.servicebus_namespace:
        return f"{acs}; set POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE to look in the queue too"
    where = f"queue {settings.queue!r} nor its dead-letter queue"
    if not searched_all:
        where += " (as far as the first messages peeked)"
    return f"{acs}, and it is in neither {where}: was it published to this namespace?"


async def _status(
    settings: Settings,
    operation_id: str | None,
    event_id: str | None,
    generations: int,
    *,
    recorded: bool = False,
) -> tuple[list[Any], list[Any], bool]:
    from postbus.worker.ops.acs import AcsStatusClient
    from postbus.worker.ops.status import event_status, find_in_queues, operation_status

    async with AcsStatusClient.from_settings(settings) as acs:
        if operation_id is not None:
            return [await operation_status(acs, operation_id)], [], True
        assert event_id is not None
        rows = await event_status(
            acs, event_id, namespace=settings.operation_namespace, generations=generations
        )
    if settings.servicebus_connection_string is None and not settings.servicebus_namespace:
        return rows, [], True
    try:
        sightings, complete = await find_in_queues(settings, event_id)
    except OpsError as exc:
        if not recorded and all(row.info is None for row in rows):
            raise OpsError(
                f"ACS has no send of event {event_id!r} and the queue could not be searched: {exc}"
            ) from None
        # What ACS said still answers the question; the queue is a second opinion.
        typer.echo(f"postbus: warning: the queue was not searched: {exc}", err=True)
        return rows, [], True
    return rows, sightings, complete
