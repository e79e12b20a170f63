"""``postbus emulator up``: both emulators in one process, and the settings that point at them.

It starts the Service Bus emulator and the ACS Email emulator, prints on stdout exactly the
``POSTBUS_*`` lines a worker and the CLI need (and writes them into ``--env-file`` when asked,
keeping every other line of that file), then serves until SIGINT or SIGTERM and stops both. If
either cannot start, the other is stopped and the exit is non-zero with one line on stderr. When
the Service Bus configuration has an ``email-events`` queue (the packaged one does), the email
emulator sends a delivery report of every accepted send to it, as ACS does through Event Grid.

The ACS access key comes from ``--state-dir`` (kept across restarts; ``--new-key`` replaces it)
and the Service Bus connection string depends only on the host and port, so a ``.env`` written
once keeps working after a restart. ``POSTBUS_QUOTA_PER_MINUTE``/``_PER_HOUR`` are the email
emulator's own send limits (0 where it has none), so the worker paces itself to the emulator.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from postbus.binding import exposure_warning
from postbus.emulators.acs_email.cli import (
    DEFAULT_STATE_DIR,
    access_key_for,
    build_server,
    mailbox_option,
    new_key_option,
    quota_option,
    state_dir_option,
)
from postbus.emulators.acs_email.quota import QuotaConfig
from postbus.emulators.acs_email.reports import Reporter, ServiceBusSink
from postbus.emulators.acs_email.server import EmulatorServer, ServerConfig
from postbus.emulators.envfile import format_env, merge_env_file
from postbus.emulators.errors import ListenError, start_error
from postbus.emulators.servicebus.config import load_config
from postbus.emulators.servicebus.emulator import ServiceBusEmulator
from postbus.errors import SettingsError
from postbus.logs import configure_logging

__all__ = ["REPORT_QUEUE", "SENDERS", "SUPERSEDED", "app", "local_settings", "up"]

# The demo's sender aliases, so the demo's events and `postbus publish --sender orders` just work.
SENDERS = {
    "orders": "orders@shop.example.com",
    "returns": "returns@shop.example.com",
    "care": "care@clinic.example.org",
    "permits": "permits@city.example.net",
}
# Settings that contradict the ones written (a second way to reach the same service): an env file
# keeping them would make the worker refuse to start, so they are removed from it.
SUPERSEDED = ("POSTBUS_SERVICEBUS_NAMESPACE", "POSTBUS_ACS_ENDPOINT", "POSTBUS_ACS_ACCESS_KEY")
_DEFAULT_QUEUE = "notifications"
#: Where the email emulator's delivery reports go, when the Service Bus config has this queue.
REPORT_QUEUE = "email-events"


def local_settings(
    *, servicebus_connection_string: str, queue: str, acs_endpoint: str, access_key: str, quota: QuotaConfig
) -> dict[str, str]:
    """The ``POSTBUS_*`` variables of a worker and CLI that use these emulators, in print order."""
    return {
        "POSTBUS_SERVICEBUS_CONNECTION_STRING": servicebus_connection_string,
        "POSTBUS_QUEUE": queue,
        "POSTBUS_ACS_CONNECTION_STRING": f"endpoint={acs_endpoint}/;accesskey={access_key}",
        "POSTBUS_SENDERS": json.dumps(SENDERS),
        "POSTBUS_QUOTA_PER_MINUTE": str(quota.sends_per_minute or 0),
        "POSTBUS_QUOTA_PER_HOUR": str(quota.sends_per_hour or 0),
    }


def up(
    host: Annotated[str, typer.Option(help="Interface both emulators bind.")] = "127.0.0.1",
    servicebus_port: Annotated[
        int, typer.Option("--servicebus-port", min=0, max=65535, help="AMQP port (0 = any free port).")
    ] = 5672,
    email_port: Annotated[
        int, typer.Option("--email-port", min=0, max=65535, help="ACS Email HTTP port (0 = any free port).")
    ] = 8025,
    config: Annotated[
        Path | None,
        typer.Option("--config", help="Service Bus Config.json in the official emulator's format."),
    ] = None,
    quota: Annotated[str, quota_option] = "unlimited",
    mailbox: Annotated[Path | None, mailbox_option] = None,
    env_file: Annotated[
        Path | None,
        typer.Option("--env-file", help="Also write the settings into this file, keeping its other lines."),
    ] = None,
    state_dir: Annotated[Path, state_dir_option] = DEFAULT_STATE_DIR,
    new_key: Annotated[bool, new_key_option] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error (emulator logs on stderr).")
    ] = "warning",
) -> None:
    """Start both emulators and print the POSTBUS_* settings that point at them."""
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    try:
        quota_config = QuotaConfig.parse(quota)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quota") from exc
    sb_config = load_config(config)  # SettingsError names the file and key
    if env_file is not None and env_file.is_dir():
        raise SettingsError(f"--env-file {env_file}: is a directory")
    acs = build_server(
        ServerConfig(
            access_key=access_key_for(state_dir, new_key=new_key),
            host=host,
            port=email_port,
            quota=quota_config,
            mailbox_dir=mailbox,
        )
    )
    sb = ServiceBusEmulator(sb_config, host=host, port=servicebus_port)
    warning = exposure_warning(host, "the emulators (the captured mailbox, the queues)")
    if warning:
        typer.echo(warning, err=True)
    configure_logging(level=log_level, stream=sys.stderr)  # stdout carries only the settings
    asyncio.run(_run(sb, acs, env_file=env_file))


async def _run(sb: ServiceBusEmulator, acs: EmulatorServer, *, env_file: Path | None) -> None:
    try:
        await asyncio.to_thread(sb.start)
    except ListenError as exc:
        raise start_error(exc, port_option="--servicebus-port") from exc
    if REPORT_QUEUE in sb.config.queues and acs.state.reporter is None:
        # ACS reports each accepted send to the events queue a second later, as Event Grid would.
        reporter = Reporter([ServiceBusSink(sb.connection_string, REPORT_QUEUE)], delay=1.0)
        await reporter.start()
        acs.state.reporter = reporter
    try:
        try:
            await acs.start()
        except ListenError as exc:
            raise start_error(exc, port_option="--email-port") from exc
        try:
            await _serve(sb, acs, env_file=env_file)
        finally:
            await acs.stop()
    finally:
        await asyncio.to_thread(sb.stop)


async def _serve(sb: ServiceBusEmulator, acs: EmulatorServer, *, env_file: Path | None) -> None:
    queues = sb.config.queues
    values = local_settings(
        servicebus_connection_string=sb.connection_string,
        queue=_DEFAULT_QUEUE if _DEFAULT_QUEUE in queues else next(iter(queues), _DEFAULT_QUEUE),
        acs_endpoint=acs.endpoint,
        access_key=acs.config.access_key,
        quota=acs.config.quota,
    )
    if env_file is not None:
        try:
            merge_env_file(env_file, values, remove=SUPERSEDED)
        except OSError as exc:
            raise SettingsError(f"--env-file {env_file}: cannot write it: {exc.strerror or exc}") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sys.stdout.write(format_env(values))
    sys.stdout.flush()
    wrote = f"; wrote {env_file}" if env_file is not None else ""
    typer.echo(
        f"postbus: emulators up: Service Bus {sb.host}:{sb.port}, ACS Email {acs.endpoint} "
        f"(mailbox {acs.endpoint}/_emulator/ui/){wrote}; Ctrl-C stops both",
        err=True,
    )
    await stop.wait()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(up)
