"""``postbus status``: what ACS says about a send, by operation id or every generation of an event."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.table import Table

from postbus.settings import Settings
from postbus.worker.ops.console import AsJson, echo_json, keep_whole, ops_settings, stdout
from postbus.worker.ops.errors import BadInput, OpsError

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
    """Print what ACS says about a send: by operation id, or every generation of an event id."""
    from postbus.worker.ops.status import check_event_id, check_operation_id

    if (operation_id is None) == (event_id is None):
        raise BadInput("give an operation id or --event-id (one of them)")
    if operation_id is not None:
        check_operation_id(operation_id)
    if event_id is not None:
        check_event_id(event_id)
    settings = ops_settings()
    rows, sightings, complete = asyncio.run(_status(settings, operation_id, event_id, generations))
    if event_id is not None and not sightings and all(row.info is None for row in rows):
        raise OpsError(_nowhere(settings, event_id, generations, searched_all=complete))
    if operation_id is not None and rows[0].info is None:
        raise OpsError(
            f"ACS does not know operation {rows[0].operation_id} (never sent, or older than its retention)"
        )
    if as_json:
        if event_id is None:
            echo_json([row.to_json() for row in rows])
        else:
            echo_json(
                {
                    "operations": [row.to_json() for row in rows],
                    "messages": [sighting.to_json() for sighting in sightings],
                }
            )
        return
    table = Table("generation", "operation id", "status", "error")
    for row in rows:
        generation = "" if row.generation is None else str(row.generation)
        table.add_row(
            generation, row.operation_id, row.status, "" if row.status == "Succeeded" else row.error
        )
    console = stdout()
    console.print(keep_whole(table, "generation", "operation id", "status"))
    for sighting in sightings:
        console.print(str(sighting), markup=False, highlight=False, soft_wrap=True)


def _nowhere(settings: Settings, event_id: str, generations: int, *, searched_all: bool) -> str:
    acs = f"ACS has no send of event {event_id!r} (generations 0-{generations})"
    if settings.servicebus_connection_string is None and not settings.servicebus_namespace:
        return f"{acs}; set POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE to look in the queue too"
    where = f"queue {settings.queue!r} nor its dead-letter queue"
    if not searched_all:
        where += " (as far as the first messages peeked)"
    return f"{acs}, and it is in neither {where}: was it published to this namespace?"


async def _status(
    settings: Settings, operation_id: str | None, event_id: str | None, generations: int
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
        if all(row.info is None for row in rows):
            raise OpsError(
                f"ACS has no send of event {event_id!r} and the queue could not be searched: {exc}"
            ) from None
        # What ACS said still answers the question; the queue is a second opinion.
        typer.echo(f"postbus: warning: the queue was not searched: {exc}", err=True)
        return rows, [], True
    return rows, sightings, complete
