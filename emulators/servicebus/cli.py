"""``postbus emulator servicebus``: run the Service Bus emulator as a standalone process.

Prints the connection string on the first line of stdout (then the admin URL with
``--admin-port``), flushes, and serves until SIGINT/SIGTERM, exiting 0. Logs go to stderr. A
problem it can name (a port in use, a bad config file) is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from postbus.emulators.errors import SB_ADMIN, ListenError, start_error
from postbus.emulators.servicebus.config import load_config
from postbus.emulators.servicebus.emulator import ServiceBusEmulator
from postbus.logs import configure_logging

__all__ = ["app", "main", "run"]


def run(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="AMQP port (0 = any free port).")] = 5672,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Config.json in the official emulator's format (default: built-in)."),
    ] = None,
    admin_port: Annotated[
        int | None,
        typer.Option("--admin-port", min=0, max=65535, help="Serve read-only JSON counts on this port."),
    ] = None,
) -> None:
    """Serve Service Bus queues over AMQP until SIGINT/SIGTERM."""
    emulator_config = load_config(config)  # SettingsError -> "postbus: error: ...", exit 2
    configure_logging(stream=sys.stderr)
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = ServiceBusEmulator(emulator_config, host=host, port=port, admin_port=admin_port)
    try:
        emulator.start()
    except ListenError as exc:
        option = "--admin-port" if exc.listener == SB_ADMIN else "--port"
        raise start_error(exc, port_option=option) from exc
    try:
        lines = [emulator.connection_string]
        if emulator.admin_url is not None:
            lines.append(emulator.admin_url)
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        emulator.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(run)


def main() -> None:
    """``python -m postbus.emulators.servicebus``: the same command, with the same one-line errors."""
    from postbus.cli import main as postbus_main

    sys.exit(postbus_main(["emulator", "servicebus", *sys.argv[1:]]))
