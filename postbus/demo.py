"""``postbus demo``: a holiday spike end to end on the embedded emulators.

The demo starts both emulators in this process, launches worker processes (the real ``postbus
worker``), publishes a seeded spike far above the ACS quota it configures, watches the queue and
the mailbox drain, and then accounts for every event: each one must be in the mailbox exactly
once or in the dead-letter queue with the reason the traffic generator expected. It exits
non-zero otherwise.

This module wires producers, worker and emulators together, so it imports them lazily. The parts
the chaos tests and benchmarks reuse (worker processes, accounting) are :mod:`postbus.harness`;
they are re-exported here for scripts written against this module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from postbus.harness import (
    SENDERS,
    DemoReport,
    account,
    dead_letters,
    free_ports,
    start_workers,
    stop_workers,
    worker_env,
)

if TYPE_CHECKING:
    from postbus.emulators.acs_email import EmailEmulator
    from postbus.emulators.servicebus import ServiceBusEmulator
    from postbus.events import NotificationEvent
    from postbus.records import RecordStore
    from postbus.settings import Settings

__all__ = [
    "SENDERS",
    "DemoReport",
    "account",
    "app",
    "dead_letters",
    "run_demo",
    "start_workers",
    "stop_workers",
    "worker_env",
]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def demo(
    events: Annotated[int, typer.Option(min=10, max=100_000, help="Events in the spike.")] = 2000,
    workers: Annotated[int, typer.Option(min=1, max=8, help="Worker processes.")] = 2,
    quota: Annotated[int, typer.Option(min=60, help="ACS sends per minute the emulator allows.")] = 1500,
    seed: Annotated[int, typer.Option(help="Seed of the traffic generator.")] = 7,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Handlers per worker.")] = 16,
    timeout: Annotated[float, typer.Option(min=10, help="Give up after this many seconds.")] = 300.0,
    output: Annotated[Path, typer.Option(help="Directory for the mailbox and worker logs.")] = Path(
        ".postbus/demo"
    ),
    console_port: Annotated[
        int,
        typer.Option("--console-port", min=0, max=65535, help="Pipeline console port (0 = any free port)."),
    ] = 0,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Exit after the summary instead of keeping the consoles up (for scripts and CI).",
        ),
    ] = False,
    delivery: Annotated[
        str,
        typer.Option(
            help="Random delivery outcomes the emulated ACS reports, e.g. delivered=0.97,bounced=0.02,suppressed=0.01."
        ),
    ] = "delivered=0.97,bounced=0.02,suppressed=0.01",
) -> None:
    """Run a holiday spike end to end on the embedded emulators."""
    _check_output(output)
    report = DemoReport()
    try:
        asyncio.run(
            run_demo(
                events=events,
                workers=workers,
                quota=quota,
                seed=seed,
                concurrency=concurrency,
                timeout=timeout,
                output=output,
                console_port=console_port,
                # Only a person at a terminal can press Enter; piped or scripted runs never wait.
                wait=not no_wait and sys.stdin.isatty(),
                report=report,
                delivery=delivery,
            )
        )
    except KeyboardInterrupt:
        if not report.summarized:
            raise
        # Ctrl-C while the consoles wait after the summary is the documented way to end the demo.
    if not report.ok:
        raise typer.Exit(1)


#: The demo's lane queues (the emulator's built-in Config.json has all three).
LANE_QUEUES = ("notifications-critical", "notifications", "notifications-bulk")


def _in_lane(item: Any) -> Any:
    """Return labels may wait: they ask for the bulk lane, below their type's default (any producer may)."""
    if item.event.type != "return.label":
        return item
    return dataclasses.replace(item, event=item.event.model_copy(update={"lane": "bulk"}))


def _counts(sb: Any) -> Any:
    """The three lane queues' counts added up."""
    from postbus.emulators.servicebus.records import QueueCounts

    total = QueueCounts()
    for queue in LANE_QUEUES:
        counts = sb.counts(queue)
        total = QueueCounts(
            **{
                name: getattr(total, name) + getattr(counts, name)
                for name in ("active", "scheduled", "locked", "dead_lettered", "deferred")
            }
        )
    return total


def _check_output(output: Path) -> None:
    """Refuse an ``--output`` the demo cannot write into, before anything starts."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=output):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            reason = "it (or a parent) is a file, not a directory"
        raise typer.BadParameter(
            f"cannot write the demo's files into {str(output)!r}: {reason}", param_hint="--output"
        ) from None


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


async def run_demo(
    *,
    events: int,
    workers: int,
    quota: int,
    seed: int,
    concurrency: int,
    timeout: float,  # noqa: ASYNC109 - a drain deadline reported in the summary, not a cancellation scope
    output: Path,
    console_port: int = 0,
    wait: bool = False,
    report: DemoReport | None = None,
    delivery: str = "delivered=0.97,bounced=0.02,suppressed=0.01",
) -> DemoReport:
    """Run the spike and return the report (also printed).

    The pipeline console and the mailbox console are served while it runs; with ``wait`` they
    stay up after the summary until the user presses Enter or Ctrl-C.
    """
    from rich.console import Console

    from postbus.emulators.acs_email import EmailEmulator, QuotaConfig
    from postbus.emulators.servicebus import ServiceBusEmulator
    from postbus.logs import configure_logging
    from postbus.pipeline_view import ConsoleServer, EmbeddedSource
    from postbus.producers.publisher import Publisher
    from postbus.producers.simulate import EXPECT_SENT, broken_bodies, holiday_spike
    from postbus.records.sqlite import SqliteRecordStore
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry
    from postbus.worker.mailer import EVENT_ID_HEADER

    console = Console(stderr=False)
    configure_logging(level="warning", fmt="console")
    run_dir = output / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    mailbox_dir = run_dir / "mailbox"
    mailbox_dir.mkdir(parents=True, exist_ok=True)
    report = report if report is not None else DemoReport()
    report.mailbox_dir = mailbox_dir
    start = datetime.now(UTC)
    spike = holiday_spike(events, seed=seed, start=start, invalid_ratio=0.01, lead_seconds=5, label_pdfs=True)
    # Return labels carry PDFs, some larger than a Service Bus message: the publisher and the workers
    # share this directory as their claim-check store.
    store_url = f"file://{(run_dir / 'attachments').resolve()}"
    attached = {
        item.event.id: [hashlib.sha256(a.content()).hexdigest() for a in item.event.attachments]
        for item in spike
        if item.event.attachments
    }
    broken = broken_bodies(max(1, events // 200), seed=seed)
    expected: dict[str, str] = {item.event.id: item.expect for item in spike}
    expected.update({wire.message_id: "InvalidEvent" for wire in broken})

    sends_quota = QuotaConfig(sends_per_minute=quota)
    records_path = (run_dir / "records.db").resolve()
    async with (
        ServiceBusEmulator() as sb,
        # ACS reports every accepted send to email-events a second later, as Event Grid would.
        EmailEmulator(
            quota=sends_quota,
            mailbox_dir=mailbox_dir,
            report_servicebus=sb.connection_string,
            report_delay=1.0,
            delivery_mix=delivery,
        ) as acs,
        # The workers write the record; the demo reads it for the consoles and the summary.
        SqliteRecordStore(records_path) as records,
    ):
        report.inspection_url = f"{acs.endpoint}/_emulator/messages"
        console.print(
            f"[bold]Postbus demo[/]: {len(expected)} events, {workers} workers x {concurrency} handlers, "
            f"ACS quota {quota}/min (ideal drain {len(expected) / quota * 60:.0f} s)",
            soft_wrap=True,
        )
        env = worker_env(
            sb,
            acs,
            quota=quota,
            concurrency=concurrency,
            attachment_store_url=store_url,
            record_url=f"sqlite:///{records_path}",
            # Three lanes: reminders are critical by their type, return labels ask for bulk, the rest is normal.
            lanes="true",
        )
        health_ports = free_ports(workers)
        procs, logs = start_workers(workers, env, run_dir, health_ports=health_ports)
        published_at: dict[str, float] = {}
        lane_of: dict[str, str] = {}
        source = EmbeddedSource(
            sb,
            acs,
            quota_per_minute=quota,
            published_at=published_at,
            worker_urls=[f"http://127.0.0.1:{port}" for port in health_ports],
            records=records,
        )
        try:
            async with ConsoleServer(source, port=console_port) as pipeline:
                console.print(f"Pipeline console: {pipeline.url}")
                console.print(f"Mailbox console:  {acs.endpoint}/_emulator/ui/")
                settings = load_settings(
                    None,
                    servicebus_connection_string=sb.connection_string,
                    attachment_store_url=store_url,
                    lanes=True,
                )
                configure_telemetry(settings)
                t0 = time.monotonic()
                # check=None: the spike holds events the worker must dead-letter (expired, unknown alias).
                async with Publisher.from_settings(settings, check=None) as publisher:
                    spike = [_in_lane(item) for item in spike]
                    for item in spike:
                        lane_of[item.event.id] = publisher.lanes.lane_of(item.event).value
                    immediate = [item.event for item in spike if item.send_at is None]
                    for item in spike:
                        published_at[item.event.id] = time.time()
                    # Every tenth event the worker must send goes through the ingest API instead.
                    via_api = {e.id for e in immediate[::10] if expected[e.id] == EXPECT_SENT}
                    await publisher.publish_many([e for e in immediate if e.id not in via_api])
                    report.problems.extend(
                        await publish_through_api(
                            settings, [e for e in immediate if e.id in via_api], console
                        )
                    )
                    for item in spike:
                        if item.send_at is not None:
                            await publisher.publish(item.event, send_at=item.send_at)
                            published_at[item.event.id] = item.send_at.timestamp()
                    await publisher.publish_raw(broken)
                report.published = len(expected)
                await _watch(console, sb, acs, report, t0=t0, limit=timeout)
                report.drain_seconds = time.monotonic() - t0
                mails = acs.mailbox.messages()
                sent_ids = [mail.headers.get(EVENT_ID_HEADER, "") for mail in mails]
                report.sent = len(mails)
                for mail, event_id in zip(mails, sent_ids, strict=True):
                    if event_id in published_at:
                        latency = max(0.0, mail.received_at.timestamp() - published_at[event_id])
                        report.latencies.append(latency)
                        report.lane_latencies.setdefault(lane_of[event_id], []).append(latency)
                throttled = acs.stats().get("throttled", 0)
                report.throttled = throttled if isinstance(throttled, int) else 0
                dead = [entry for queue in LANE_QUEUES for entry in await dead_letters(sb, queue)]
                account(report, expected, sent_ids, dead)
                _check_attachments(report, attached, mails, inline_max=settings.attachment_inline_max_bytes)
                await _delivery_outcomes(sb, records, report, start=start)
                await pipeline.sample_once()  # the console's last numbers are the summary's
                _print_summary(console, report, quota=quota, total=len(expected), run_dir=run_dir)
                report.summarized = True
                if wait:
                    console.print(
                        f"The consoles stay up: {pipeline.url} and {acs.endpoint}/_emulator/ui/. "
                        "Press Enter or Ctrl-C to stop."
                    )
                    await _until_enter()
        finally:
            await asyncio.to_thread(stop_workers, procs, logs)
    return report


async def publish_through_api(settings: Settings, events: list[NotificationEvent], console: Any) -> list[str]:
    """Queue ``events`` through a real ingest API (uvicorn on a free local port) with an API key.

    One event per request for the first few, the rest in batches; returns a problem line for each
    event the API did not accept.
    """
    import json
    import socket

    import aiohttp
    import uvicorn

    from postbus.producers.api import build_app, new_key
    from postbus.worker.rendering import TemplateRenderer

    if not events:
        return []
    key, stored = new_key()
    registry = {
        "clients": [
            {
                "name": "demo",
                "api_keys": [stored],
                "types": sorted({e.type for e in events}),
                "senders": sorted({e.sender for e in events}),
                "tenants": sorted({e.tenant for e in events}),
            }
        ]
    }
    app = build_app(
        settings.model_copy(update={"api_clients": json.dumps(registry)}), templates=TemplateRenderer()
    )
    # A socket that listens before uvicorn starts: the first requests wait in its backlog, not for a flag.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    serving = asyncio.create_task(server.serve(sockets=[listener]))
    problems: list[str] = []
    try:
        documents = [json.loads(e.to_json()) for e in events]
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", headers={"X-API-Key": key}) as http:
            for document in documents[:5]:
                async with http.post("/v1/notifications", json=document) as response:
                    if response.status != 202:
                        problems.append(f"{document['id']}: the ingest API answered {response.status}")
            for start in range(5, len(documents), 500):
                async with http.post(
                    "/v1/notifications/batch", json={"events": documents[start : start + 500]}
                ) as response:
                    result = await response.json()
                    problems.extend(
                        f"{item['id']}: the ingest API rejected it: {item['problem']['detail']}"
                        for item in result.get("results", [])
                        if item["status"] != "accepted"
                    )
        console.print(f"{len(events) - len(problems)} of them through the ingest API (postbus api)")
    finally:
        server.should_exit = True
        await serving
        listener.close()
    return problems


async def _until_enter() -> None:
    """Return when the user presses Enter (or stdin closes); Ctrl-C ends the demo as usual.

    A reader on the loop, not a thread blocked in ``readline``: Ctrl-C must not wait for Enter.
    """
    loop = asyncio.get_running_loop()
    entered: asyncio.Future[None] = loop.create_future()

    def on_input() -> None:
        sys.stdin.readline()
        if not entered.done():
            entered.set_result(None)

    loop.add_reader(sys.stdin.fileno(), on_input)
    try:
        await entered
    finally:
        loop.remove_reader(sys.stdin.fileno())


async def _watch(
    console: Any, sb: ServiceBusEmulator, acs: EmailEmulator, report: DemoReport, *, t0: float, limit: float
) -> None:
    """Live progress until every published event is sent or dead-lettered (or the timeout)."""
    from rich.live import Live
    from rich.table import Table

    def table() -> Table:
        counts = _counts(sb)
        elapsed = time.monotonic() - t0
        sent = len(acs.mailbox)
        grid = Table.grid(padding=(0, 2))
        for label, value in (
            ("elapsed", f"{elapsed:6.1f} s"),
            ("published", report.published),
            ("sent", sent),
            ("dead-lettered", counts.dead_lettered),
            ("queues (active/scheduled/locked)", f"{counts.active}/{counts.scheduled}/{counts.locked}"),
            ("waiting critical/normal/bulk", "/".join(str(sb.counts(q).active) for q in LANE_QUEUES)),
            ("send rate", f"{sent / elapsed * 60 if elapsed else 0:7.1f}/min"),
        ):
            grid.add_row(label, str(value))
        return grid

    if not console.is_terminal:
        # Piped (CI, a log file): a plain progress line every few seconds instead of a live table
        # that only a terminal can redraw.
        await _watch_lines(console, sb, acs, report, t0=t0, limit=limit)
        return
    with Live(table(), console=console, refresh_per_second=4, transient=False) as live:
        while True:
            counts = _counts(sb)
            done = len(acs.mailbox) + counts.dead_lettered >= report.published
            idle = counts.active + counts.scheduled + counts.locked + counts.deferred == 0
            live.update(table())
            if done and idle:
                return
            if time.monotonic() - t0 > limit:
                report.problems.append(f"not drained after {limit:.0f} s")
                return
            await asyncio.sleep(0.25)


async def _delivery_outcomes(
    sb: ServiceBusEmulator, store: RecordStore, report: DemoReport, *, start: datetime
) -> None:
    """Wait (briefly) for the reports of what was sent, then read the outcomes from the record."""
    from postbus.records import Outcome

    finals = (Outcome.DELIVERED, Outcome.BOUNCED, Outcome.SUPPRESSED, Outcome.FAILED, Outcome.EXPIRED)
    deadline = time.monotonic() + 15
    while True:
        summary = await store.summary(since=start, until=datetime.now(UTC))
        reported = summary.count(*finals, Outcome.QUARANTINED, Outcome.FILTERED_SPAM)
        pending = sb.counts("email-events")
        if (reported >= report.sent and pending.active + pending.locked == 0) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.25)
    report.outcomes = {outcome.value: n for outcome, n in summary.by_outcome().items()}
    report.delivered_within_slo_share = summary.delivered_within_slo_share


def _check_attachments(
    report: DemoReport, attached: dict[str, list[str]], mails: list[Any], *, inline_max: int
) -> None:
    """Every attachment published arrived in the captured email byte for byte (by SHA-256)."""
    from postbus.worker.mailer import EVENT_ID_HEADER

    for mail in mails:
        expected = attached.get(mail.headers.get(EVENT_ID_HEADER, ""))
        if expected is None:
            continue
        got = [hashlib.sha256(a.content).hexdigest() for a in mail.attachments]
        if got != expected:
            report.problems.append(f"{mail.headers[EVENT_ID_HEADER]}: attachments arrived altered or missing")
            continue
        report.attachments_intact += len(got)
        report.attachments_claim_checked += sum(1 for a in mail.attachments if len(a.content) > inline_max)


#: Seconds between two progress lines when the output is not a terminal.
PIPED_PROGRESS_EVERY = 5.0


async def _watch_lines(
    console: Any, sb: ServiceBusEmulator, acs: EmailEmulator, report: DemoReport, *, t0: float, limit: float
) -> None:
    last = -PIPED_PROGRESS_EVERY
    while True:
        counts = _counts(sb)  # every lane: an event dead-lettered on the critical lane is done too
        sent = len(acs.mailbox)
        done = sent + counts.dead_lettered >= report.published
        idle = counts.active + counts.scheduled + counts.locked + counts.deferred == 0
        elapsed = time.monotonic() - t0
        if (done and idle) or elapsed - last >= PIPED_PROGRESS_EVERY:
            last = elapsed
            console.print(
                f"{elapsed:6.1f} s: sent {sent}/{report.published}, dead-lettered {counts.dead_lettered}, "
                f"queued {counts.active + counts.scheduled + counts.locked}",
                soft_wrap=True,
                highlight=False,
            )
        if done and idle:
            return
        if elapsed > limit:
            report.problems.append(f"not drained after {limit:.0f} s")
            return
        await asyncio.sleep(0.25)


def _print_summary(console: Any, report: DemoReport, *, quota: int, total: int, run_dir: Path) -> None:
    from rich.table import Table

    outcomes = Table(title="Outcomes", show_header=True)
    outcomes.add_column("outcome")
    outcomes.add_column("count", justify="right")
    outcomes.add_row("sent", str(report.sent))
    for reason, count in sorted(report.dead_lettered.items()):
        outcomes.add_row(f"dead-lettered: {reason}", str(count))
    outcomes.add_row("ACS 429 answers", str(report.throttled))
    for name in ("delivered", "bounced", "suppressed"):
        outcomes.add_row(f"reported {name}", str(report.outcomes.get(name, 0)))
    others = sum(
        n
        for name, n in report.outcomes.items()
        if name not in ("delivered", "bounced", "suppressed", "sent", "dead_lettered")
    )
    if others:
        outcomes.add_row("reported otherwise", str(others))
    share = report.delivered_within_slo_share
    outcomes.add_row("delivered within 5 minutes", "n/a" if share is None else f"{share:.1%}")
    console.print(outcomes)
    latency = Table(title="Publish -> ACS accepted", show_header=True)
    for column in ("lane", "sent", "p50", "p95", "p99", "drain", "ideal drain"):
        latency.add_column(column, justify="right")
    for lane in ("critical", "normal", "bulk"):
        values = report.lane_latencies.get(lane, [])
        if values:
            latency.add_row(
                lane, str(len(values)), *(f"{_percentile(values, q):.1f} s" for q in (50, 95, 99)), "", ""
            )
    latency.add_row(
        "all",
        str(len(report.latencies)),
        *(f"{_percentile(report.latencies, q):.1f} s" for q in (50, 95, 99)),
        f"{report.drain_seconds:.1f} s",
        f"{total / quota * 60:.1f} s",
    )
    console.print(latency)
    console.print(
        f"Return-label PDFs: {report.attachments_intact} arrived byte-identical, "
        f"{report.attachments_claim_checked} of them through the claim check"
    )
    console.print(f"Captured emails (.eml and .json): {report.mailbox_dir}")
    console.print(f"Worker logs: {run_dir}")
    if report.ok:
        console.print(
            f"[bold green]All {total} events accounted for[/]: sent exactly once or dead-lettered as expected."
        )
    else:
        console.print(f"[bold red]{len(report.problems)} problems[/]:")
        for problem in report.problems[:20]:
            console.print(f"  - {problem}")
