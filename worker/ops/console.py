"""What the operations commands share on the terminal: settings, output, interrupts.

Tables and summaries go to stdout (``--json`` for machines), progress to stderr. Bad input,
missing configuration and unreachable services end with one ``postbus: error: ...`` line and a
non-zero exit code (the root command prints it).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from postbus.bus import route_sdk_logs
from postbus.errors import Interrupted
from postbus.logs import configure_logging
from postbus.settings import Settings, load_settings

__all__ = ["AsJson", "echo_json", "keep_whole", "ops_settings", "run_interruptible", "stdout"]

T = TypeVar("T")

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def stdout() -> Console:
    """The console for tables: as wide as the terminal, or 200 columns into a pipe."""
    return Console(soft_wrap=False, width=None if sys.stdout.isatty() else 200)


def keep_whole(table: Table, *headers: str) -> Table:
    """Never cut or wrap the named columns (ids, names: what the next command is given).

    On a narrow terminal rich shrinks every column and ends ids with an ellipsis; with a minimum
    width of their longest cell, only the other columns (descriptions, fixes) give way, and they
    wrap, folding a word longer than the column instead of cutting it.
    """
    for column in table.columns:
        if str(column.header) in headers:
            column.min_width = max(_width(column.header), *(_width(cell) for cell in column.cells))
            column.no_wrap = True
        else:
            column.overflow = "fold"
    return table


def _width(cell: object) -> int:
    return Text.from_markup(cell).cell_len if isinstance(cell, str) else cell_len(str(cell))


def echo_json(document: Any) -> None:
    """Print ``document`` as indented JSON on stdout."""
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def ops_settings() -> Settings:
    """The settings, with logging quiet enough for a table and a progress bar."""
    settings = load_settings()
    # Per-message log lines would bury the table and the progress bar; warnings and errors still show.
    level = "debug" if settings.log_level == "debug" else "warning"
    configure_logging(level=level, fmt=settings.log_format)
    route_sdk_logs()
    return settings


def run_interruptible(
    main: Callable[[asyncio.Event], Coroutine[Any, Any, T]],
    *,
    done_so_far: Callable[[], str] = lambda: "nothing more was done",
    report: Callable[[T], None] = lambda _result: None,
) -> T:
    """Run ``main(stop)``, then ``report(result)``: the first SIGINT/SIGTERM sets ``stop``, the second cancels.

    The second signal raises :class:`~postbus.errors.Interrupted` with ``done_so_far()``, so the
    operator reads what happened before it. (Not ``KeyboardInterrupt``: the installed typer turns
    that into a silent exit 130 before the root command could print anything.) ``report`` runs
    while the signals are still ours, so a signal that lands while it prints the summary, which
    already says what was done, cannot cut it short.
    """

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
            try:
                result = await task
            except asyncio.CancelledError:
                # The second signal: what was in hand has been abandoned; the root prints one line.
                raise Interrupted(f"stopped at the second signal; {done_so_far()}") from None
            report(result)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        return result

    return asyncio.run(runner())
