"""``postbus emulator email``: run the ACS Email emulator as a standalone process.

Prints the endpoint on the first line of stdout and the connection string on the second (then the
certificate path with ``--tls``), flushes, and serves until SIGINT/SIGTERM, exiting 0. The access
key is kept in ``--state-dir`` so it survives restarts (``--new-key`` replaces it). A problem it
can name (a port in use, a mailbox that is a file) is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from postbus.binding import exposure_warning
from postbus.emulators.acs_email.keys import stable_access_key
from postbus.emulators.acs_email.quota import QuotaConfig
from postbus.emulators.acs_email.reports import DeliveryMix, ReportSchema
from postbus.emulators.acs_email.server import EmulatorServer, ServerConfig
from postbus.emulators.errors import ListenError, StartError, start_error
from postbus.errors import SettingsError
from postbus.logs import configure_logging

__all__ = [
    "DEFAULT_STATE_DIR",
    "access_key_for",
    "app",
    "build_server",
    "mailbox_option",
    "main",
    "new_key_option",
    "quota_option",
    "run",
    "state_dir_option",
]

DEFAULT_STATE_DIR = Path(".postbus")

quota_option = typer.Option(
    "--quota", help="azure-default, azure-managed, unlimited, or SENDS_PER_MIN,SENDS_PER_HOUR."
)
mailbox_option = typer.Option("--mailbox", help="Write every accepted email here as .eml and .json.")
state_dir_option = typer.Option(
    "--state-dir", help="Keeps the access key across restarts (git-ignored by default)."
)
new_key_option = typer.Option("--new-key", help="Replace the stored access key with a fresh one.")


def _quota(value: str) -> QuotaConfig:
    try:
        return QuotaConfig.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quota") from exc


def _mix(value: str | None) -> DeliveryMix | None:
    if value is None:
        return None
    try:
        return DeliveryMix.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--delivery") from exc


def access_key_for(state_dir: Path, *, new_key: bool) -> str:
    """The stored key (or a fresh one with ``new_key``), or one line naming ``--state-dir``."""
    try:
        return stable_access_key(state_dir, rotate=new_key)
    except ValueError as exc:
        raise SettingsError(f"--state-dir {state_dir}: {exc}; delete it or pass --new-key") from exc
    except OSError as exc:
        raise SettingsError(
            f"--state-dir {state_dir}: cannot keep the access key there: {_why(exc)}"
        ) from exc


def build_server(config: ServerConfig) -> EmulatorServer:
    """The server, or one line naming ``--mailbox`` when its directory cannot take files."""
    try:
        return EmulatorServer(config)
    except OSError as exc:
        raise SettingsError(f"--mailbox {config.mailbox_dir}: {_why(exc)}") from exc


def _why(exc: OSError) -> str:
    if isinstance(exc, FileExistsError | NotADirectoryError):
        return "not a directory"  # mkdir over a file, or a file in the middle of the path
    reason = exc.strerror or str(exc)
    return reason[0].lower() + reason[1:] if reason else "unusable"


def run(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 = any free port).")] = 8025,
    access_key: Annotated[
        str | None, typer.Option("--access-key", help="Base64 access key (default: the stored one).")
    ] = None,
    quota: Annotated[str, quota_option] = "unlimited",
    mailbox: Annotated[Path | None, mailbox_option] = None,
    tls: Annotated[bool, typer.Option("--tls", help="Serve HTTPS with a self-signed certificate.")] = False,
    fail_rate: Annotated[
        float, typer.Option("--fail-rate", min=0.0, max=1.0, help="Probability of a 500/502/503 per send.")
    ] = 0.0,
    latency_ms: Annotated[
        float, typer.Option("--latency-ms", min=0.0, help="Added latency per request.")
    ] = 0.0,
    succeed_after: Annotated[
        float, typer.Option("--succeed-after", min=0.0, help="Seconds an operation stays Running.")
    ] = 0.0,
    state_dir: Annotated[Path, state_dir_option] = DEFAULT_STATE_DIR,
    new_key: Annotated[bool, new_key_option] = False,
    report_servicebus: Annotated[
        str | None,
        typer.Option(
            "--report-servicebus",
            metavar="CONNECTION_STRING",
            help="Send a delivery report per recipient to this Service Bus namespace, as Event Grid does.",
        ),
    ] = None,
    report_queue: Annotated[
        str, typer.Option("--report-queue", help="The queue delivery reports go to.")
    ] = "email-events",
    report_webhook: Annotated[
        str | None,
        typer.Option(
            "--report-webhook",
            metavar="URL",
            help="POST delivery reports here (after Event Grid's handshake).",
        ),
    ] = None,
    report_delay: Annotated[
        float, typer.Option("--report-delay", min=0.0, help="Seconds from acceptance to the report.")
    ] = 1.0,
    delivery: Annotated[
        str | None,
        typer.Option(
            "--delivery",
            metavar="MIX",
            help="Random outcomes for other recipients, e.g. delivered=0.97,bounced=0.02,suppressed=0.01.",
        ),
    ] = None,
    report_schema: Annotated[
        str, typer.Option("--report-schema", help="eventgrid or cloudevents.")
    ] = "eventgrid",
) -> None:
    """Serve the ACS Email data-plane API until SIGINT/SIGTERM."""
    if access_key is not None and new_key:
        raise typer.BadParameter("give --access-key or --new-key, not both", param_hint="--new-key")
    quota_config = _quota(quota)
    mix = _mix(delivery)
    if report_schema not in ("eventgrid", "cloudevents"):
        raise typer.BadParameter("use eventgrid or cloudevents", param_hint="--report-schema")
    schema: ReportSchema = "cloudevents" if report_schema == "cloudevents" else "eventgrid"
    try:
        config = ServerConfig(
            access_key=access_key or access_key_for(state_dir, new_key=new_key),
            host=host,
            port=port,
            quota=quota_config,
            tls=tls,
            mailbox_dir=mailbox,
            succeed_after=succeed_after,
            fail_rate=fail_rate,
            latency_ms=latency_ms,
            report_servicebus=report_servicebus,
            report_queue=report_queue,
            report_webhook=report_webhook,
            report_delay=report_delay,
            delivery_mix=mix,
            report_schema=schema,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--access-key") from exc
    server = build_server(config)
    warning = exposure_warning(host, "the captured mailbox (its console and inspection API)")
    if warning:
        typer.echo(warning, err=True)
    # stdout carries the endpoint lines; log events go to stderr.
    configure_logging(stream=sys.stderr)
    try:
        asyncio.run(_serve(server))
    except ListenError as exc:
        raise start_error(exc, port_option="--port") from exc
    except OSError as exc:  # the TLS certificate could not be written
        raise StartError(f"ACS Email emulator did not start: {_why(exc)}") from exc
    except ValueError as exc:  # the report webhook did not validate its subscription
        raise StartError(f"ACS Email emulator did not start: {exc}") from exc


async def _serve(server: EmulatorServer) -> None:
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lines = [server.endpoint, f"endpoint={server.endpoint}/;accesskey={server.config.access_key}"]
    if server.cert_path is not None:
        lines.append(str(server.cert_path))
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
app.command()(run)


def main() -> None:
    """``python -m postbus.emulators.acs_email``: the same command, with the same one-line errors."""
    from postbus.cli import main as postbus_main

    sys.exit(postbus_main(["emulator", "email", *sys.argv[1:]]))
