"""``postbus dlq``, ``postbus status`` and ``postbus doctor``: the support and preflight commands.

Tables and summaries go to stdout (``--json`` for machines), progress to stderr. Bad input,
missing configuration and unreachable services end with one ``postbus: error: ...`` line and a
non-zero exit code (the root command prints it). ``dlq replay`` stops cleanly on the first
SIGINT/SIGTERM (the message in hand is finished, the rest stays in the dead-letter queue) and
cancels on the second, which still loses nothing.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

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

from postbus.errors import SettingsError
from postbus.logs import configure_logging, redact
from postbus.settings import Settings, load_settings
from postbus.worker.ops.errors import BadInput
from postbus.worker.ops.filters import Selection, parse_rate

__all__ = ["dlq_app", "doctor_app", "status_app"]

T = TypeVar("T")

dlq_app = typer.Typer(
    help="Inspect, replay and purge dead-lettered messages.", no_args_is_help=True, add_completion=False
)
status_app = typer.Typer(add_completion=False)
doctor_app = typer.Typer(add_completion=False)

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
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


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


def _stdout() -> Console:
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def _echo_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _settings() -> Settings:
    settings = load_settings()
    # Per-message log lines would bury the table and the progress bar; warnings and errors still show.
    _quiet_logs(settings)
    return settings


def _quiet_logs(settings: Settings) -> None:
    level = "debug" if settings.log_level == "debug" else "warning"
    configure_logging(level=level, fmt=settings.log_format)


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
) -> None:
    """List dead-lettered messages (peeked: nothing is locked or changed)."""
    selection = _selection(reason, type_, tenant, event_id, since, until, time_field)
    settings = _settings()
    entries = asyncio.run(_browse(settings, selection, limit))
    if summary:
        counts = Counter(entry.reason for entry in entries)
        if as_json:
            _echo_json({"total": len(entries), "by_reason": dict(counts.most_common())})
            return
        table = Table("reason", "messages", title=f"Dead-lettered in {settings.queue!r}: {len(entries)}")
        for name, count in counts.most_common():
            table.add_row(name or "(none)", str(count))
        _stdout().print(table)
        return
    if as_json:
        _echo_json([entry.to_json(body=body) for entry in entries])
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
    console = _stdout()
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
    console.print(table)
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
) -> None:
    """Replay dead-lettered events as a new send generation: peek-lock, publish, then complete."""
    from postbus.worker.ops.replay import ReplayOptions

    selection = _selection(reason, type_, tenant, event_id, since, until, time_field)
    options = ReplayOptions(
        selection=selection, limit=limit, rate=parse_rate(rate), dry_run=dry_run, force=force
    )
    settings = _settings()
    if not force:
        settings.require_acs("checking which events ACS already accepted (or pass --force)")
    summary = _run_interruptible(lambda stop: _replay(settings, options, stop, wait=wait, quiet=as_json))
    if as_json:
        _echo_json(summary.to_json())
    else:
        _print_replay(summary, dry_run=dry_run)
    if summary.counts["failed"]:
        raise typer.Exit(1)
    if summary.interrupted:
        raise typer.Exit(130)


async def _replay(settings: Settings, options: Any, stop: asyncio.Event, *, wait: float, quiet: bool) -> Any:
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
    counts: Counter[str] = Counter()
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
    console = _stdout()
    if summary.items:
        table = Table("seq", "event id", "gen", "action", "detail")
        for item in summary.items:
            table.add_row(
                str(item.sequence_number), item.event_id, str(item.generation), item.action, item.detail
            )
        console.print(table)
    counts = summary.counts
    head = "dry run: would replay" if dry_run else "replayed"
    number = counts["would-replay"] if dry_run else counts["replayed"]
    line = f"{head} {number}, skipped {counts['skipped']}, failed {counts['failed']}"
    if summary.interrupted:
        line += " (interrupted: the rest is still in the dead-letter queue)"
    console.print(line)


def _run_interruptible(main: Callable[[asyncio.Event], Coroutine[Any, Any, T]]) -> T:
    """Run ``main(stop)``: the first SIGINT/SIGTERM sets ``stop``, the second cancels it."""

    async def runner() -> T:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(main(stop))

        def on_signal() -> None:
            if stop.is_set():
                task.cancel()
            stop.set()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, on_signal)
        try:
            return await task
        except asyncio.CancelledError:
            # The second signal: what was in hand has been abandoned; the root command prints one line.
            raise KeyboardInterrupt from None
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    return asyncio.run(runner())


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
) -> None:
    """Delete matching dead-lettered messages for good (needs --yes)."""
    selection = _selection(reason, type_, tenant, event_id, since, until, time_field)
    if not yes:
        raise BadInput(
            "purge deletes dead-lettered messages for good; check them with `postbus dlq list` "
            "(same filters) and add --yes"
        )
    settings = _settings()
    summary = _run_interruptible(lambda stop: _purge(settings, selection, limit, stop))
    if as_json:
        _echo_json(summary.to_json())
    else:
        console = _stdout()
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
    settings = _settings()
    rows = asyncio.run(_status(settings, operation_id, event_id, generations))
    if as_json:
        _echo_json([row.to_json() for row in rows])
        return
    table = Table("generation", "operation id", "status", "error")
    for row in rows:
        generation = "" if row.generation is None else str(row.generation)
        table.add_row(
            generation, row.operation_id, row.status, "" if row.status == "Succeeded" else row.error
        )
    _stdout().print(table)


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


# -- doctor --------------------------------------------------------------------------------------


@doctor_app.command()
def doctor(
    servicebus_admin: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The Service Bus emulator's admin endpoint (http://host:port), to check queue properties.",
        ),
    ] = None,
    azure: Annotated[
        bool, typer.Option("--azure", help="Also check ACS resources through Azure Resource Manager.")
    ] = False,
    subscription: Annotated[
        str | None, typer.Option(metavar="ID", help="With --azure: subscription id.")
    ] = None,
    resource_group: Annotated[
        str | None, typer.Option(metavar="NAME", help="With --azure: resource group.")
    ] = None,
    email_service: Annotated[
        str | None, typer.Option(metavar="NAME", help="With --azure: email service name.")
    ] = None,
    communication_service: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="With --azure: Communication Service (default: from the ACS endpoint)."
        ),
    ] = None,
    arm_endpoint: Annotated[
        str | None, typer.Option(metavar="URL", help="With --azure: ARM endpoint (default: public Azure).")
    ] = None,
    arm_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="With --azure: bearer token (az account get-access-token); default DefaultAzureCredential.",
        ),
    ] = None,
    arm_ca_bundle: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, metavar="PEM", help="With --azure: CA bundle for --arm-endpoint."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Preflight checks: settings, queue, ACS credentials, senders, templates, telemetry (and --azure)."""
    from postbus.worker.ops.doctor import DoctorOptions, run_doctor

    target = None
    if azure:
        target = _azure_target(
            subscription,
            resource_group,
            email_service,
            communication_service,
            arm_endpoint,
            arm_token,
            arm_ca_bundle,
        )
    loaded: Settings | SettingsError
    try:
        loaded = _settings()
    except SettingsError as exc:
        loaded = exc
    options = DoctorOptions(servicebus_admin_url=servicebus_admin, azure=target)
    checks = asyncio.run(run_doctor(loaded, options=options))
    failed = [check for check in checks if check.status == "fail"]
    if as_json:
        _echo_json({"ok": not failed, "checks": [check.to_json() for check in checks]})
    else:
        marks = {
            "pass": "[green]pass[/green]",
            "fail": "[red]FAIL[/red]",
            "warn": "[yellow]warn[/yellow]",
            "skip": "skip",
        }
        table = Table("check", "result", "detail", "fix", title="postbus doctor")
        for check in checks:
            table.add_row(check.name, marks[check.status], check.detail, check.fix)
        console = _stdout()
        console.print(table)
        console.print(f"{len(failed)} failed" if failed else "all checks passed")
    if failed:
        raise typer.Exit(1)


def _azure_target(
    subscription: str | None,
    resource_group: str | None,
    email_service: str | None,
    communication_service: str | None,
    arm_endpoint: str | None,
    arm_token: str | None,
    arm_ca_bundle: Path | None,
) -> Any:
    from postbus.worker.ops.azure_checks import AzureTarget, StaticTokenCredential

    if not (subscription and resource_group and email_service):
        raise BadInput("--azure needs --subscription, --resource-group and --email-service")
    credential: Any
    if arm_token:
        credential = StaticTokenCredential(arm_token)
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return AzureTarget(
        subscription_id=subscription,
        resource_group=resource_group,
        email_service=email_service,
        credential=credential,
        communication_service=communication_service,
        arm_endpoint=arm_endpoint,
        connection_verify=str(arm_ca_bundle) if arm_ca_bundle else True,
    )
