"""``postbus templates``: list the notification templates and preview one rendered.

::

    postbus templates list [--templates-dir DIR] [--json]
    postbus templates check events.jsonl          # what a worker would dead-letter, before publishing
    postbus templates render order.confirmation --locale de-DE --data order.json --html-out preview.html

``render`` prints the subject and the plain-text body to stdout; ``--html-out`` writes the HTML
body to a file to open in a browser. Without ``--data`` the type's ``sample.json`` is used.
Errors (unknown type, unreadable or invalid JSON, a template that fails) are one line on stderr
and a non-zero exit code, reported by the root command.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from postbus.worker.rendering import TemplateRenderer

__all__ = ["app"]

app = typer.Typer(
    name="templates",
    help="List the email templates and preview one rendered with sample or your own data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TemplatesDir = Annotated[
    Path | None,
    typer.Option(
        "--templates-dir",
        envvar="POSTBUS_TEMPLATES_DIR",
        help="Your own templates, laid over the shipped ones (same layout; see docs/templates.md).",
        show_default=False,
    ),
]


def _renderer(templates_dir: Path | None) -> TemplateRenderer:
    if templates_dir is not None and not templates_dir.is_dir():
        raise typer.BadParameter(f"{templates_dir} is not a directory", param_hint="'--templates-dir'")
    return TemplateRenderer(user_dir=templates_dir)


def _load_data(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a Windows editor's BOM is no JSON error
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise typer.BadParameter(f"cannot read {path}: {reason}", param_hint="'--data'") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(
            f"{path} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
            param_hint="'--data'",
        ) from exc
    if not isinstance(data, dict):
        raise typer.BadParameter(
            f"{path} must hold a JSON object of template variables, not {type(data).__name__}",
            param_hint="'--data'",
        )
    return data


@app.command("list")
def list_templates(
    templates_dir: TemplatesDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Show every notification type, its default lane, its locales and where it comes from (shipped or user)."""
    from postbus.lanes import default_lane

    renderer = _renderer(templates_dir)
    if as_json:
        listing = [
            {
                "type": t,
                "lane": default_lane(t, templates_dir=templates_dir).value,
                "locales": renderer.locales(t),
                "source": renderer.source(t),
            }
            for t in renderer.types()
        ]
        typer.echo(json.dumps(listing, indent=2, ensure_ascii=False))
        return
    table = Table(title="Notification templates", title_justify="left")
    table.add_column("Type", style="bold")
    table.add_column("Lane")
    table.add_column("Locales")
    table.add_column("Source")
    for event_type in renderer.types():
        lane = default_lane(event_type, templates_dir=templates_dir).value
        table.add_row(event_type, lane, ", ".join(renderer.locales(event_type)), renderer.source(event_type))
    Console(soft_wrap=True).print(table)


@app.command("check")
def check_events(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="EVENTS.JSONL", help="JSON Lines of events (as for publish --file); - reads stdin."
        ),
    ],
    templates_dir: TemplatesDir = None,
) -> None:
    """Render every event of a JSON Lines file; report the ones a worker would dead-letter.

    A type with no template and data the templates cannot render are found here, before
    `postbus publish --file` puts them on the queue. Exit 1 if any line fails.
    """
    import sys

    from postbus.errors import InvalidEvent
    from postbus.events import parse_event
    from postbus.worker.rendering import template_check

    check = template_check(_renderer(templates_dir))
    try:
        handle = (
            io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig")
            if str(file) == "-"
            else file.open(encoding="utf-8-sig")
        )
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot read {file}: {exc.strerror or exc}", param_hint="EVENTS.JSONL"
        ) from None
    checked = failed = 0
    with handle:
        for number, line in enumerate(handle, start=1):
            text = line.strip()
            if not text:
                continue
            checked += 1
            try:
                document = json.loads(text)
                if isinstance(document, dict) and "event" in document:
                    document = document["event"]
                check(parse_event(document))
            except json.JSONDecodeError as exc:
                failed += 1
                typer.echo(f"line {number}: not valid JSON: {exc.msg} (column {exc.colno})", err=True)
            except InvalidEvent as exc:
                failed += 1
                typer.echo(f"line {number}: {exc}", err=True)
    typer.echo(f"checked {checked}, failed {failed}", err=True)
    if failed:
        raise typer.Exit(1)


@app.command("render")
def render_template(
    event_type: Annotated[
        str, typer.Argument(metavar="TYPE", help="Notification type, e.g. order.confirmation.")
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            metavar="FILE",
            help="JSON object of template variables (default: the type's sample.json).",
            show_default=False,
        ),
    ] = None,
    locale: Annotated[str, typer.Option("--locale", help="Locale, with fallback de-DE -> de -> en.")] = "en",
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant name the layout may show.")] = "",
    html_out: Annotated[
        Path | None,
        typer.Option("--html-out", metavar="FILE", help="Write the HTML body to FILE.", show_default=False),
    ] = None,
    templates_dir: TemplatesDir = None,
) -> None:
    """Render TYPE and print the subject and plain-text body; optionally write the HTML body."""
    renderer = _renderer(templates_dir)
    variables = _load_data(data) if data is not None else renderer.sample_data(event_type)
    email = renderer.render(event_type, locale=locale, data=variables, tenant=tenant)
    if html_out is not None:
        try:
            html_out.write_text(email.html, encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(
                f"cannot write {html_out}: {exc.strerror or exc}", param_hint="'--html-out'"
            ) from exc
    used = renderer.resolve_locale(event_type, locale)
    typer.echo(f"Subject: {email.subject}")
    typer.echo("")
    typer.echo(email.text, nl=False)
    note = f"rendered {event_type} with locale {used}" + (f" (asked for {locale})" if used != locale else "")
    if html_out is not None:
        note += f"; HTML written to {html_out}"
    typer.echo(note, err=True)
