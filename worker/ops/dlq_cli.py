"""``postbus dlq list|replay|purge``: inspect, replay and purge dead-lettered messages.

``dlq replay`` and ``dlq purge`` stop cleanly on the first SIGINT/SIGTERM (the message in hand is
finished, the rest stays in the dead-letter queue) and cancel on the second, which still loses
nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from postbus.errors import InvalidEvent
from postbus.lanes import lane_queues, parse_lane
from postbus.logs import redact
from postbus.settings import Settings
from postbus.worker.ops.console import AsJson, echo_json, keep_whole, ops_settings, run_interruptible, stdout
from postbus.worker.ops.errors import BadInput
from postbus.worker.ops.filters import Selection, parse_rate

__all__ = ["dlq_app"]

dlq_app = typer.Typer(
    help="Inspect, replay and purge dead-lettered messages.", no_args_is_help=True, add_completion=False
)

Reasons = Annotated[
    list[str] | None,
    typer.Option(
        "--reason", metavar="REASON", help="Dead-letter reason (repeatable), e.g. RetriesExhausted."
    ),
]
Types = Annotated[
    list[str] | None, typer.Option("--type", metavar="TYPE", help="Notification type (repeatable).")
]
Tenants = Annotated[list[str] | None, typer.Option("--tenant", metavar="TENANT", help="Tenant (repeatable).")]
EventIds = Annotated[
    list[str] | None, typer.Option("--event-id", metavar="ID", help="Event id (repeatable).")
]
Since = Annotated[
    str | None,
    typer.Option(metavar="TIME", help="From this time: ISO 8601, or a duration ago (30m, 2h, 1d)."),
]
Until = Annotated[
    str | None, typer.Option(metavar="TIME", help="Up to this time: ISO 8601, or a duration ago.")
]
TimeField = Annotated[
    str,
    typer.Option(
        metavar="enqueued|first-enqueued",
        help="Time --since/--until apply to: 'enqueued' (the failing attempt, ≈ dead-lettered at) "
        "or 'first-enqueued' (the event's first publish).",
    ),
]
Limit = Annotated[
    int | None, typer.Option(min=1, metavar="N", help="Act on at most this many matching messages.")
]


LaneOption = Annotated[
    str | None,
    typer.Option(
        "--lane",
        metavar="LANE",
        help="The lane whose dead-letter queue to use: critical, normal or bulk (default: normal, POSTBUS_QUEUE).",
    ),
]


def _settings_for(lane: str | None) -> Settings:
    """The ops settings, aimed at ``lane``'s queue (a lane needs POSTBUS_LANES; normal is POSTBUS_QUEUE)."""
    settings = ops_settings()
    if lane is None:
        return settings
    try:
        chosen = parse_lane(lane, where="--lane")
    except InvalidEvent as exc:
        raise typer.BadParameter(str(exc).removeprefix("--lane: "), param_hint="--lane") from None
    queues = lane_queues(settings)
    if chosen not in queues:
        raise typer.BadParameter("lanes are off (POSTBUS_LANES): only normal is there", param_hint="--lane")
    return settings.model_copy(update={"queue": queues[chosen]})


def _selection(
    reasons: Sequence[str] | None,
    types: Sequence[str] | None,
    tenants: Sequence[str] | None,
    event_ids: Sequence[str] | None,
    since: str | None,
    until: str | None,
    time_field: str,
) -> Selection:
    return Selection.parse(
        reasons=reasons or (),
        types=types or (),
        tenants=tenants or (),
        event_ids=event_ids or (),
        since=since,
        until=until,
        time_field=time_field,
    )


# -- dlq list ------------------------------------------------------------------------------------


@dlq_app.command("list")
def list_command(
    reason: Reasons = None,
    type_: Types = None,
    tenant: Tenants = None,
    event_id: EventIds = None,
    since: Since = None,
    until: Until = None,
    time_field: TimeField = "enqueued",
    limit: Limit = None,
    as_json: AsJson = False,
    summary: Annotated[bool, typer.Option("--summary", help="Counts by reason instead of messages.")] = False,
    body: Annotated[bool, typer.Option("--body", help="Show bodies (recipient addresses masked).")] = False,
    lane: LaneOption = None,
) -> None:
    """List dead-lettered messages (peeked: nothing is locked or changed)."""
    selection = _selection(reason, type_, tenant, event_id, since, until, time_field)
    settings = _settings_for(lane)
    entries = asyncio.run(_browse(settings, selection, limit))
    if not entries and not as_json:
        matching = "" if selection == Selection() else " matches the filters"
        stdout().print(
            f"no dead-lettered message in {settings.queue!r}{matching}", markup=False, soft_wrap=True
        )
        return
    if summary:
        counts = Counter(entry.reason for entry in entries)
        if as_json:
            echo_json({"total": len(entries), "by_reason": dict(counts.most_common())})
            return
        table = Table("reason", "messages", title=f"Dead-lettered in {settings.queue!r}: {len(entries)}")
        for name, count in counts.most_common():
            table.add_row(name or "(none)", str(count))
        stdout().print(keep_whole(table, "reason", "messages"))
        return
    if as_json:
        echo_json([entry.to_json(body=body) for entry in entries])
        return
    table = Table(
        "seq",
        "event id",
        "type",
        "tenant",
        "reason",
        "description",
        "attempt",
        "gen",
        "dead-lettered ≈",
        title=f"Dead-lettered in {settings.queue!r}: {len(entries)} shown",
    )
    console = stdout()
    for entry in entries:
        table.add_row(
            str(entry.sequence_number),
            entry.event_id,
            entry.type,
            entry.tenant,
            entry.reason,
            redact(entry.description)[:120],
            str(entry.attempt),
            str(entry.generation),
            entry.enqueued_at.strftime("%Y-%m-%d %H:%M:%S") if entry.enqueued_at else "",
        )
    console.print(keep_whole(table, "seq", "event id", "type", "tenant", "reason", "gen"))
    if body:
        for entry in entries:
            console.print(f"[bold]{entry.sequence_number}[/bold] {entry.event_id}")
            console.print_json(json.dumps(entry.masked_body(), ensure_ascii=False))


async def _browse(settings: Settings, selection: Selection, limit: int | None) -> list[Any]:
    from postbus.worker.ops.deadletters import DeadLetterQueue

    async with DeadLetterQueue(settings) as dlq:
        return [entry async for entry in dlq.browse(selection, limit=limit)]


# -- dlq replay ----------------------------------------------------------------------------------


@dlq_app.command("replay")
def replay_command(
    reason: Reasons = None,
    type_: Types = None,
    tenant: Tenants = None,
    event_id: EventIds = None,
    since: Since = None,
    until: Until = None,
    time_field: TimeField = "enqueued",
    limit: Limit = None,
    rate: Annotated[
        str | None,
        typer.Option(metavar="RATE", help="Pace: 5/s, 120/min, 1000/h (status reads and publishes)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be replayed; change nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replay even when ACS already accepted the earlier generation.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            min=0.1, max=60, metavar="SECONDS", help="Seconds to wait for more dead-lettered messages."
        ),
    ] = 2.0,
    as_json: AsJson = False,
    lane: LaneOption = None,
) -> None:
    """Replay dead-lettered events as a new send generation: peek-lock, publish, then complete."""
    from postbus.worker.ops.replay import ReplayOptions

    selection = _selection(reason, type_, tenant, event_id, since, until, time_field)
    options = ReplayOptions(
        selection=selection, limit=limit, rate=parse_rate(rate), dry_run=dry_run, force=force
    )
    settings = _settings_for(lane)
    if not force:
        settings.require_acs("checking which events ACS already accepted (or pass --force)")
    counts: Counter[str] = Counter()

    def done_so_far() -> str:
        done = ", ".join(f"{action} {counts[action]}" for action in ("replayed", "skipped", "failed"))
        if dry_run:
            done = f"dry run, would replay {counts['would-replay']}"
        return (
            f"{done} before it; the message in hand and the rest stay in the dead-letter queue "
            "(running the replay again sends nothing twice)"
        )

    def report(summary: Any) -> None:
        if as_json:
            echo_json(summary.to_json())
        else:
            _print_replay(summary, dry_run=dry_run)

    summary = run_interruptible(
        lambda stop: _replay(settings, options, stop, wait=wait, quiet=as_json, counts=counts),
        done_so_far=done_so_far,
        report=report,
    )
    if summary.counts["failed"]:
        raise typer.Exit(1)
    if summary.interrupted:
        raise typer.Exit(130)


async def _replay(
    settings: Settings, options: Any, stop: asyncio.Event, *, wait: float, quiet: bool, counts: Counter[str]
) -> Any:
    from postbus.worker.ops.acs import AcsStatusClient
    from postbus.worker.ops.deadletters import DeadLetterQueue
    from postbus.worker.ops.replay import replay

    lookup = None if options.force else AcsStatusClient.from_settings(settings)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[counts]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=quiet,
    )
    task = progress.add_task("replay", total=options.limit, counts="")

    def on_item(item: Any) -> None:
        counts[item.action] += 1
        progress.update(task, advance=1, counts=" ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    try:
        with progress:
            async with DeadLetterQueue(settings, wait_time=wait) as dlq:
                return await replay(
                    dlq,
                    lookup,
                    options=options,
                    namespace=settings.operation_namespace,
                    stop=stop,
                    on_item=on_item,
                )
    finally:
        if lookup is not None:
            await lookup.close()


def _print_replay(summary: Any, *, dry_run: bool) -> None:
    console = stdout()
    if summary.items:
        table = Table("seq", "event id", "gen", "action", "detail")
        for item in summary.items:
            table.add_row(
                str(item.sequence_number), item.event_id, str(item.generation), item.action, item.detail
            )
        console.print(keep_whole(table, "seq", "event id", "gen", "action"))
    counts = summary.counts
    head = "dry run: would replay" if dry_run else "replayed"
    number = counts["would-replay"] if dry_run else counts["replayed"]
    line = f"{head} {number}, skipped {counts['skipped']}, failed {counts['failed']}"
    if summary.interrupted:
        line += " (interrupted: the rest is still in the dead-letter queue)"
    console.print(line)


# -- dlq purge -----------------------------------------------------------------------------------


@dlq_app.command("purge")
def purge_command(
    reason: Reasons = None,
    type_: Types = None,
    tenant: Tenants = None,
    event_id: EventIds = None,
    since: Since = None,
    until: Until = None,
    time_field: TimeField = "enqueued",
    limit: Limit = None,
    yes: Annotated[bool, typer.Option("--yes", help="Really delete the matching messages.")] = False,
    as_json: AsJson = False,
    lane: LaneOption = None,
) -> None:
    """Delete matching dead-lettered messages for good (needs --yes)."""
    selection = _selection(reason, type_, tenant, event_id, since, until, time_field)
    if not yes:
        raise BadInput(
            "purge deletes dead-lettered messages for good; check them with `postbus dlq list` "
            "(same filters) and add --yes"
        )
    settings = _settings_for(lane)
    summary = run_interruptible(
        lambda stop: _purge(settings, selection, limit, stop),
        done_so_far=lambda: "what was removed before it is gone; `postbus dlq list` shows what is left",
    )
    if as_json:
        echo_json(summary.to_json())
    else:
        console = stdout()
        by_reason = Counter(entry.reason for entry in summary.removed)
        detail = ", ".join(f"{name} {count}" for name, count in by_reason.most_common())
        console.print(f"removed {len(summary.removed)}" + (f" ({detail})" if detail else ""))
        for entry, error in summary.failed:
            console.print(f"not removed: {entry.sequence_number} {entry.event_id}: {error}")
    if summary.failed:
        raise typer.Exit(1)


async def _purge(settings: Settings, selection: Selection, limit: int | None, stop: asyncio.Event) -> Any:
    from postbus.worker.ops.deadletters import DeadLetterQueue
    from postbus.worker.ops.purge import purge

    async with DeadLetterQueue(settings) as dlq:
        return await purge(dlq, selection=selection, limit=limit, stop=stop)
