"""``postbus report``: delivery outcomes over a time range, by status, tenant and type, from the record.

Counts the records first written in ``[--since, --until)``, with the two shares the alerts watch:
bounce + failed (ACS limits senders above a few percent) and delivered within 5 minutes of first
enqueue (the reminders' objective). ``--prune`` first deletes the records older than
``POSTBUS_RECORD_RETENTION_DAYS``.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from postbus.worker.ops.console import AsJson, echo_json, ops_settings, stdout
from postbus.worker.ops.errors import BadInput

__all__ = ["parse_instant", "report_app"]

report_app = typer.Typer(add_completion=False)

_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_instant(value: str, *, now: datetime, option: str) -> datetime:
    """``24h``/``90m``/``7d`` ago, or an ISO 8601 time (UTC when it has no offset)."""
    text = value.strip()
    if match := _DURATION.fullmatch(text):
        return now - timedelta(seconds=float(match["n"]) * _UNITS[match["unit"]])
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{option} {value!r}: use a duration ago (24h, 90m, 7d) or an ISO 8601 time") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


@report_app.command()
def report(
    since: Annotated[
        str, typer.Option(metavar="WHEN", help="Start: a duration ago (24h, 90m, 7d) or an ISO 8601 time.")
    ] = "24h",
    until: Annotated[str | None, typer.Option(metavar="WHEN", help="End (exclusive); default now.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant.")] = None,
    type_: Annotated[str | None, typer.Option("--type", help="Only this event type.")] = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="First delete records older than POSTBUS_RECORD_RETENTION_DAYS.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Summarise delivery outcomes by status, tenant and type over a time range."""
    now = datetime.now(UTC)
    start = parse_instant(since, now=now, option="--since")
    end = parse_instant(until, now=now, option="--until") if until is not None else now
    if end < start:
        raise BadInput("--until is before --since")
    settings = ops_settings()
    summary, pruned = asyncio.run(_summary(settings, start, end, prune=prune))
    rows = [
        row
        for row in summary.rows
        if (tenant is None or row.tenant == tenant) and (type_ is None or row.type == type_)
    ]
    total = sum(row.count for row in rows)
    by_outcome: dict[str, int] = {}
    for row in rows:
        by_outcome[row.outcome.value] = by_outcome.get(row.outcome.value, 0) + row.count
    bounced = by_outcome.get("bounced", 0) + by_outcome.get("failed", 0)
    within = sum(row.delivered_within_slo for row in rows)
    document: dict[str, Any] = summary.to_json()
    document |= {
        "tenant": tenant,
        "type": type_,
        "total": total,
        "by_outcome": dict(sorted(by_outcome.items())),
        "bounce_failed_share": bounced / total if total else None,
        "delivered_within_slo": within,
        "delivered_within_slo_share": within / total if total else None,
        "rows": [
            r
            for r in document["rows"]
            if (tenant is None or r["tenant"] == tenant) and (type_ is None or r["type"] == type_)
        ],
        "pruned": pruned,
    }
    if as_json:
        echo_json(document)
        return
    console = stdout()
    table = Table(
        "tenant",
        "type",
        "outcome",
        "count",
        "delivered ≤ 5 min",
        title=f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC",
    )
    for row in rows:
        table.add_row(
            row.tenant or "-",
            row.type or "-",
            row.outcome.value,
            str(row.count),
            str(row.delivered_within_slo),
        )
    console.print(table)
    parts = [f"{total} records"]
    if by_outcome:
        parts.append(", ".join(f"{name} {count}" for name, count in sorted(by_outcome.items())))
    parts.append(f"bounced+failed {_share(document['bounce_failed_share'])}")
    parts.append(f"delivered within 5 minutes {_share(document['delivered_within_slo_share'])}")
    console.print("; ".join(parts))
    if prune:
        console.print(f"pruned {pruned} records older than {settings.record_retention_days} days")


async def _summary(settings: Any, start: datetime, end: datetime, *, prune: bool) -> tuple[Any, int | None]:
    from postbus.records import record_store

    async with record_store(settings) as store:
        pruned = None
        if prune:
            pruned = await store.prune(
                before=datetime.now(UTC) - timedelta(days=settings.record_retention_days)
            )
        return await store.summary(since=start, until=end), pruned
