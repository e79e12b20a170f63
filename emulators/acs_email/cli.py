"""``postbus emulator email``: run the ACS Email emulator as a standalone process.

Prints the endpoint on the first line of stdout and the connection string on the second (then the
certificate path with ``--tls``), flushes, and serves until SIGINT/SIGTERM, exiting 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from postbus.emulators.acs_email.quota import QuotaConfig
from postbus.emulators.acs_email.server import EmulatorServer, ServerConfig, new_access_key
from postbus.logs import configure_logging

__all__ = ["main", "run"]


def _quota(value: str) -> QuotaConfig:
    try:
        return QuotaConfig.parse(value)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--quota") from exc


def run(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0 = any free port).")] = 8025,
    access_key: Annotated[
        str | None, typer.Option("--access-key", help="Base64 access key (default: random).")
    ] = None,
    quota: Annotated[
        str,
        typer.Option(help="azure-default, azure-managed, unlimited, or SENDS_PER_MIN,SENDS_PER_HOUR."),
    ] = "unlimited",
    mailbox: Annotated[
        Path | None, typer.Option(help="Write every accepted email here as .eml and .json.")
    ] = None,
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
) -> None:
    """Serve the ACS Email data-plane API until SIGINT/SIGTERM."""
    try:
        config = ServerConfig(
            access_key=access_key or new_access_key(),
            host=host,
            port=port,
            quota=_quota(quota),
            tls=tls,
            mailbox_dir=mailbox,
            succeed_after=succeed_after,
            fail_rate=fail_rate,
            latency_ms=latency_ms,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    # stdout carries the endpoint lines; log events go to stderr.
    configure_logging(stream=sys.stderr)
    try:
        asyncio.run(_serve(config))
    except OSError as exc:
        typer.echo(f"postbus: error: cannot serve on {host}:{port}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from exc


async def _serve(config: ServerConfig) -> None:
    server = EmulatorServer(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    lines = [server.endpoint, f"endpoint={server.endpoint}/;accesskey={config.access_key}"]
    if server.cert_path is not None:
        lines.append(str(server.cert_path))
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> None:
    """``python -m emulators.acs_email`` without the ``postbus`` root command."""
    typer.run(run)
