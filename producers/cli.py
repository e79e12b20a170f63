"""``postbus publish``: put one event, or a JSON Lines file of events, on the queue.

::

    postbus publish --type order.confirmation --to "Jane Doe <jane@example.com>" --sender orders \\
        --data @order.json                                   # one event from flags
    postbus publish --json event.json --send-at 2026-12-24T08:00:00+01:00
    postbus publish --file events.jsonl                      # many; bad lines reported, good ones sent
    generate-events | postbus publish --file -               # the same from stdin

stdout carries the published message ids, one per line (``--quiet`` drops them); stderr carries bad
lines (``line 7: to.0.address: ...``), the progress bar (on a terminal) and the summary. Exit
codes: 0 all published, 1 a line failed or publishing failed, 2 bad arguments or settings.
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, Protocol, TextIO, cast

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from postbus.errors import InvalidEvent, PostbusError
from postbus.events import parse_event
from postbus.logs import configure_logging
from postbus.producers.checks import EventCheck, all_of, publish_checks
from postbus.producers.jsonl import GoodLine, parse_send_at, read_jsonl
from postbus.producers.outgoing import EventLike, ScheduledEvent
from postbus.producers.publisher import Publisher, PublishError
from postbus.settings import Settings, load_settings
from postbus.telemetry import configure_telemetry

__all__ = ["CHUNK_SIZE", "EventSink", "FileSummary", "app", "open_publisher", "publish_lines"]

#: The ``--file``/``--json`` name that means standard input.
STDIN: Final = "-"
#: Events handed to one ``publish_many`` call; the publisher packs each chunk into size-limited batches.
CHUNK_SIZE: Final = 500

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Publish notification events to the queue.",
)


#: Builds the rendering check behind ``--check``. The root command sets it: the producer package
#: does not import the worker's renderer, and the root is where the two are wired together.
template_check_factory: Callable[[Settings], EventCheck] | None = None


class EventSink(Protocol):
    """What the command needs from a publisher (``Publisher`` and ``FakePublisher`` both fit)."""

    async def publish_many(self, events: Iterable[EventLike], /) -> list[str]: ...

    async def close(self) -> None: ...


def open_publisher(settings: Settings) -> EventSink:
    """The publisher the command uses (a seam: tests put a ``FakePublisher`` here)."""
    return Publisher.from_settings(settings)


class FileSummary:
    """Counts for the summary line of ``--file``."""

    def __init__(self, *, lines: int, failed: int) -> None:
        self.lines = lines
        self.failed = failed
        self.published = 0
        self.not_sent = 0
        self.error: PublishError | None = None

    def __str__(self) -> str:
        text = f"published {self.published}, failed {self.failed}"
        return f"{text}, not sent {self.not_sent}" if self.not_sent else text

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.not_sent or self.error else 0


async def publish_lines(
    good: Sequence[GoodLine],
    publisher: EventSink,
    *,
    summary: FileSummary,
    on_published: Callable[[list[str]], None],
    progress: Progress | None = None,
    chunk_size: int = CHUNK_SIZE,
) -> None:
    """Publish the good lines chunk by chunk; stop at the first :class:`PublishError` and record it."""
    task = progress.add_task("publishing", total=len(good)) if progress is not None else None
    for start in range(0, len(good), chunk_size):
        chunk = good[start : start + chunk_size]
        try:
            ids = await publisher.publish_many([line.item for line in chunk])
        except PublishError as exc:
            summary.published += len(exc.published)
            on_published(list(exc.published))
            summary.not_sent = len(good) - summary.published
            summary.error = exc
            return
        summary.published += len(ids)
        on_published(ids)
        if progress is not None and task is not None:
            progress.advance(task, len(chunk))


def _json_argument(value: str, option: str) -> Any:
    """JSON text, or ``@path`` to read it from a file."""
    text = value
    if value.startswith("@"):
        try:
            with _open_text(Path(value[1:])) as handle:
                text = handle.read()
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot read {value[1:]!r}: {exc.strerror}", param_hint=option
            ) from None
        except UnicodeDecodeError:
            raise typer.BadParameter(f"{value[1:]!r} is not UTF-8 text", param_hint=option) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}" if exc.lineno > 1 else f"column {exc.colno}"
        hint = "; one event per document (JSON Lines go to --file)" if exc.msg == "Extra data" else ""
        raise typer.BadParameter(f"not valid JSON: {exc.msg} ({where}){hint}", param_hint=option) from None


def _instant(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_send_at(value, where=option)
    except InvalidEvent as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"{option}: "), param_hint=option) from None


def _event_from_flags(flags: dict[str, Any]) -> dict[str, Any]:
    document: dict[str, Any] = {key: value for key, value in flags.items() if value not in (None, [])}
    document.setdefault("id", str(uuid.uuid4()))
    if isinstance(document.get("data"), str):
        document["data"] = _json_argument(document["data"], "--data")
    return document


class _AboveBar(io.TextIOBase):
    """A text stream that prints whole lines through a console, above its live progress bar."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._partial = ""

    def isatty(self) -> bool:
        return self._console.is_terminal

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            # soft_wrap: a long line is left to the terminal, never broken by rich (JSON stays one line).
            self._console.print(line, markup=False, highlight=False, soft_wrap=True, emoji=False)
        return len(text)


def _stderr() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


async def _publish_one(settings: Settings, item: ScheduledEvent) -> str:
    publisher = open_publisher(settings)
    try:
        return (await publisher.publish_many([item]))[0]
    finally:
        await publisher.close()


async def _publish_file(
    settings: Settings, good: Sequence[GoodLine], summary: FileSummary, quiet: bool
) -> None:
    err = _stderr()

    def emit(ids: list[str]) -> None:
        if not quiet and ids:
            sys.stdout.write("".join(f"{message_id}\n" for message_id in ids))
            sys.stdout.flush()

    publisher = open_publisher(settings)
    log_stream = sys.stderr
    try:
        with Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err,
            transient=True,
            disable=not err.is_terminal,
        ) as progress:
            # A log line written straight to stderr would tear the bar apart; through the bar's
            # console it prints above the bar, which then redraws below it.
            configure_logging(
                level=_log_level(settings), fmt=settings.log_format, stream=cast(TextIO, _AboveBar(err))
            )
            try:
                await publish_lines(good, publisher, summary=summary, on_published=emit, progress=progress)
            finally:
                configure_logging(level=_log_level(settings), fmt=settings.log_format, stream=log_stream)
    finally:
        await publisher.close()


@app.command()
def publish(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="JSON Lines: one event (or {event, send_at}) per line; - reads stdin.",
            dir_okay=False,
            metavar="EVENTS.JSONL",
        ),
    ] = None,
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            metavar="JSON_FILE",
            help="A file holding one event document; - reads stdin.",
            dir_okay=False,
        ),
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", metavar="ID", help="Idempotency key (default: a new UUID).")
    ] = None,
    event_type: Annotated[
        str | None, typer.Option("--type", metavar="TYPE", help="Notification type, e.g. order.confirmation.")
    ] = None,
    tenant: Annotated[
        str | None, typer.Option("--tenant", metavar="TENANT", help="Tenant (default: default).")
    ] = None,
    to: Annotated[
        list[str] | None, typer.Option("--to", metavar="ADDRESS", help="Recipient; repeat for more.")
    ] = None,
    cc: Annotated[
        list[str] | None, typer.Option("--cc", metavar="ADDRESS", help="Cc recipient; repeatable.")
    ] = None,
    bcc: Annotated[
        list[str] | None, typer.Option("--bcc", metavar="ADDRESS", help="Bcc recipient; repeatable.")
    ] = None,
    sender: Annotated[
        str | None, typer.Option("--sender", metavar="ALIAS", help="Sender alias, e.g. orders.")
    ] = None,
    locale: Annotated[
        str | None, typer.Option("--locale", metavar="LOCALE", help="Locale (default: en).")
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", metavar="JSON|@FILE", help="Template data: JSON, or @file.")
    ] = None,
    not_after: Annotated[
        str | None, typer.Option("--not-after", metavar="ISO", help="ISO 8601: do not send after.")
    ] = None,
    send_at: Annotated[
        str | None, typer.Option("--send-at", metavar="ISO", help="ISO 8601: enqueue at this instant.")
    ] = None,
    lane: Annotated[
        str | None,
        typer.Option(
            "--lane",
            metavar="LANE",
            help="critical, normal or bulk (default: the type's); higher than the type's needs "
            "POSTBUS_LANE_RAISE_ALLOWED.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print the message ids.")] = False,
    check_templates: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Also render each event with the templates (shipped and POSTBUS_TEMPLATES_DIR); "
            "refuse one a worker would dead-letter.",
        ),
    ] = False,
) -> None:
    """Publish one event (from flags or --json) or many (--file events.jsonl)."""
    flags = {
        "id": event_id,
        "type": event_type,
        "tenant": tenant,
        "to": to,
        "cc": cc,
        "bcc": bcc,
        "sender": sender,
        "locale": locale,
        "data": data,
        "not_after": not_after if _instant(not_after, "--not-after") else None,
        "lane": lane,
    }
    scheduled = _instant(send_at, "--send-at")
    given = [name for name, used in (("--file", file), ("--json", json_file)) if used is not None]
    if any(value not in (None, []) for value in flags.values()):
        given.append("event flags")
    if not given:
        raise typer.BadParameter(
            "nothing to publish: give --file, --json or event flags (--type, --to, --sender)"
        )
    if len(given) > 1:
        raise typer.BadParameter(f"give one of --file, --json or event flags, not {' and '.join(given)}")
    if file is not None and send_at is not None:
        raise typer.BadParameter(
            "applies to one event; put send_at in each line instead", param_hint="--send-at"
        )
    try:
        settings = _settings()
        if file is not None:
            _run_file(
                file, settings=settings, quiet=quiet, check=_checks(settings, templates=check_templates)
            )
            return
        document = (
            _json_argument(f"@{json_file}", "--json") if json_file is not None else _event_from_flags(flags)
        )
        if not isinstance(document, dict):
            raise InvalidEvent(f"expected a JSON object, got {type(document).__name__}")
        event = parse_event(json.dumps(document))
        _checks(settings, templates=check_templates)(event)
        message_id = asyncio.run(_publish_one(settings, ScheduledEvent(event, scheduled)))
    except PostbusError as exc:
        typer.echo(f"postbus: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    if not quiet:
        typer.echo(message_id)


def _log_level(settings: Settings) -> str:
    # The ids on stdout and the summary or error line say what the publisher's info and warning
    # lines would; a command that fails says so in one line. Debug shows everything.
    return "debug" if settings.log_level == "debug" else "error"


def _settings() -> Settings:
    settings = load_settings()
    settings.require_servicebus("postbus publish")
    configure_logging(level=_log_level(settings), fmt=settings.log_format)
    configure_telemetry(settings)
    return settings


def _open_text(path: Path) -> TextIO:
    """``path`` as UTF-8 text, ``-`` for stdin; a leading byte-order mark (Windows editors) is dropped."""
    if str(path) == STDIN:
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
    return path.open(encoding="utf-8-sig")


def _checks(settings: Settings, *, templates: bool) -> EventCheck:
    check = publish_checks(settings)
    if not templates:
        return check
    if template_check_factory is None:
        raise typer.BadParameter(
            "needs the worker's templates, which this installation lacks", param_hint="--check"
        )
    return all_of(check, template_check_factory(settings))


def _run_file(path: Path, *, settings: Settings, quiet: bool, check: EventCheck) -> None:
    name = "stdin" if str(path) == STDIN else repr(str(path))
    try:
        with _open_text(path) as handle:
            contents = read_jsonl(handle, check=check)
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {name}: {exc.strerror}", param_hint="--file") from None
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{name} is not UTF-8 text", param_hint="--file") from None
    err = _stderr()
    for bad in contents.bad:
        err.print(str(bad), markup=False)
    summary = FileSummary(lines=len(contents.good) + len(contents.bad), failed=len(contents.bad))
    if contents.good:
        asyncio.run(_publish_file(settings, contents.good, summary, quiet))
    if summary.error is not None:
        err.print(f"postbus: error: {summary.error}", markup=False)
    err.print(str(summary), markup=False)
    raise typer.Exit(summary.exit_code)
