"""``postbus worker``: consume the queue and send email until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Annotated, Any

import typer

from postbus.bus import AccessDenied, AuthenticationFailed, QueueNotFound
from postbus.eventloop import run
from postbus.logs import configure_logging, get_logger
from postbus.settings import Settings, load_settings
from postbus.telemetry import configure_telemetry
from postbus.worker.errors import CannotStart

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=1024, help="Override POSTBUS_CONCURRENCY.")
    ] = None,
    prefetch: Annotated[int | None, typer.Option(min=0, max=5000, help="Override POSTBUS_PREFETCH.")] = None,
    health_port: Annotated[
        int | None, typer.Option(min=0, max=65535, help="Override POSTBUS_HEALTH_PORT (0 disables).")
    ] = None,
) -> None:
    """Run a worker: receive, render, send through ACS Email, settle. Stops cleanly on SIGTERM/SIGINT."""
    overrides = {
        name: value
        for name, value in (
            ("concurrency", concurrency),
            ("prefetch", prefetch),
            ("health_port", health_port),
        )
        if value is not None
    }
    settings = load_settings(**overrides)
    settings.require_servicebus("the worker")
    settings.require_acs("the worker")
    settings.require_senders("the worker")
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    configure_telemetry(settings)
    try:
        run(_run(settings), choice=settings.event_loop)
    except QueueNotFound as exc:
        raise CannotStart(f"{exc}; set POSTBUS_QUEUE to a queue of this namespace") from None
    except (AuthenticationFailed, AccessDenied) as exc:
        credential = (
            "the key in POSTBUS_SERVICEBUS_CONNECTION_STRING"
            if settings.servicebus_connection_string
            else "the identity's Service Bus role on POSTBUS_SERVICEBUS_NAMESPACE"
        )
        raise CannotStart(f"{exc}; check {credential}") from None


async def _run(settings: Settings) -> None:
    from postbus.worker.runner import Worker
    from postbus.worker.watchdog import loop_watchdog

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    # `kill -USR1 <pid>` logs where every task is waiting: the first question about a stuck worker.
    loop.add_signal_handler(signal.SIGUSR1, _dump_tasks)
    async with loop_watchdog():
        await Worker(settings).run(stop)


def _dump_tasks() -> None:
    log = get_logger("postbus.worker")
    for task in asyncio.all_tasks():
        frames: list[str] = []
        awaited: Any = task.get_coro()
        # Follow the await chain: a suspended task's own stack shows only its outermost frame.
        while awaited is not None and len(frames) < 30:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                frames.append(f"{frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
        log.warning("task stack", task=task.get_name(), frames=frames)


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def handler() -> None:
        if not stop.is_set():
            get_logger("postbus.worker").info("shutdown requested", signal=signal.Signals(signum).name)
        stop.set()

    return handler
