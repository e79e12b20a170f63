"""``postbus emulator``: run the Service Bus and ACS Email emulators as standalone processes."""

from __future__ import annotations

import typer

from postbus.emulators.acs_email.cli import run as email_run
from postbus.emulators.servicebus.cli import run as servicebus_run

__all__ = ["app"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Run the local Service Bus and ACS Email emulators.",
)
app.command("servicebus", help="AMQP 1.0 broker with Service Bus queue semantics.")(servicebus_run)
app.command("email", help="HTTP server with the ACS Email data-plane API.")(email_run)
