"""``postbus emulator``: run the Service Bus and ACS Email emulators as standalone processes.

Each subcommand is imported when it runs, so ``postbus emulator servicebus`` loads neither aiohttp
nor the email emulator, and ``postbus emulator --help`` loads neither emulator.
"""

from __future__ import annotations

from typing import ClassVar

import typer

from postbus.cli import LazyCommand, LazyGroup

__all__ = ["app"]


class _EmulatorCommands(LazyGroup):
    lazy: ClassVar[dict[str, LazyCommand]] = {
        "servicebus": LazyCommand(
            "postbus.emulators.servicebus.cli:app", "AMQP 1.0 broker with Service Bus queue semantics."
        ),
        "email": LazyCommand(
            "postbus.emulators.acs_email.cli:app", "HTTP server with the ACS Email data-plane API."
        ),
        "up": LazyCommand(
            "postbus.emulators.up:app",
            "Both emulators in one process; prints (or writes) the POSTBUS_* settings that point at them.",
        ),
    }


app = typer.Typer(
    cls=_EmulatorCommands, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False
)


@app.callback()
def emulator() -> None:
    """Run the local Service Bus and ACS Email emulators."""
