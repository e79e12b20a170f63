"""The aiohttp application and its lifecycle on the current event loop.

:func:`build_app` wires route groups (data plane, inspection); a later group (e.g. ARM-shaped
management responses) is one more ``add_*_routes(app)`` call. :class:`EmulatorServer` binds a socket,
optionally with TLS, and serves until :meth:`EmulatorServer.stop`. The embedding API and the CLI
both drive it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from postbus.emulators.acs_email.auth import DEFAULT_MAX_SKEW_S, HmacVerifier
from postbus.emulators.acs_email.dataplane import STATE_KEY, add_data_plane_routes
from postbus.emulators.acs_email.faults import Faults
from postbus.emulators.acs_email.inspection import add_inspection_routes
from postbus.emulators.acs_email.mailbox import Mailbox
from postbus.emulators.acs_email.mailbox_ui import add_mailbox_ui_routes
from postbus.emulators.acs_email.management import add_management_routes
from postbus.emulators.acs_email.quota import PRESETS, QuotaConfig, QuotaLimiter
from postbus.emulators.acs_email.reports import (
    DeliveryMix,
    Reporter,
    ReportSchema,
    ReportSink,
    ServiceBusSink,
    WebhookSink,
)
from postbus.emulators.acs_email.state import EmulatorState
from postbus.emulators.acs_email.tls import server_ssl_context, write_self_signed
from postbus.emulators.acs_email.validation import MAX_REQUEST_BYTES
from postbus.emulators.errors import HTTP, ListenError
from postbus.logs import get_logger

__all__ = ["EmulatorServer", "ServerConfig", "build_app", "new_access_key"]

log = get_logger(__name__)

# Bodies up to twice the service limit reach the validator, which answers the service's 400;
# beyond that aiohttp's own 413 protects the process.
_CLIENT_MAX_SIZE = 2 * MAX_REQUEST_BYTES
UNLIMITED = PRESETS["unlimited"]


def new_access_key() -> str:
    """A random key in the shape of an ACS access key (base64 of 64 random bytes)."""
    return base64.b64encode(secrets.token_bytes(64)).decode("ascii")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """How to start one emulator; every field is keyword-passed from the embedding API or the CLI."""

    access_key: str
    host: str = "127.0.0.1"
    port: int = 0
    quota: QuotaConfig = UNLIMITED
    tls: bool = False
    mailbox_dir: Path | None = None
    succeed_after: float = 0.0
    bearer_token: str | None = None
    max_skew_s: float = DEFAULT_MAX_SKEW_S
    fail_rate: float = 0.0
    latency_ms: float = 0.0
    #: Delivery reports: a Service Bus connection string and queue, and/or a webhook URL; the
    #: delay after acceptance, the random mix of outcomes and the event schema (see ``reports``).
    report_servicebus: str | None = None
    report_queue: str = "email-events"
    report_webhook: str | None = None
    report_delay: float = 0.0
    delivery_mix: DeliveryMix | None = None
    report_schema: ReportSchema = "eventgrid"

    def __post_init__(self) -> None:
        try:
            base64.b64decode(self.access_key, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("access key must be base64 (as ACS keys are)") from exc
        if self.succeed_after < 0:
            raise ValueError("succeed_after must be >= 0")
        if self.report_delay < 0:
            raise ValueError("report_delay must be >= 0")

    def reporter(self) -> Reporter | None:
        """The reporter these settings ask for, or ``None`` when reports go nowhere."""
        sinks: list[ReportSink] = []
        if self.report_servicebus:
            sinks.append(ServiceBusSink(self.report_servicebus, self.report_queue))
        if self.report_webhook:
            sinks.append(WebhookSink(self.report_webhook))
        if not sinks:
            return None
        return Reporter(sinks, delay=self.report_delay, mix=self.delivery_mix, schema=self.report_schema)


def build_app(state: EmulatorState) -> web.Application:
    app = web.Application(client_max_size=_CLIENT_MAX_SIZE)
    app[STATE_KEY] = state
    add_data_plane_routes(app)
    add_inspection_routes(app)
    add_management_routes(app)
    add_mailbox_ui_routes(app)
    return app


def new_state(config: ServerConfig) -> EmulatorState:
    return EmulatorState(
        verifier=HmacVerifier(config.access_key, config.bearer_token, config.max_skew_s),
        quota=QuotaLimiter(config.quota),
        mailbox=Mailbox(config.mailbox_dir),
        faults=Faults(fail_rate=config.fail_rate, latency_ms=config.latency_ms),
        succeed_after=config.succeed_after,
    )


class EmulatorServer:
    """One emulator serving on the running event loop.

    Example::

        server = EmulatorServer(ServerConfig(access_key=new_access_key()))
        await server.start()
        print(server.endpoint)
        await server.stop()
    """

    def __init__(self, config: ServerConfig, state: EmulatorState | None = None) -> None:
        self.config = config
        self.state = state or new_state(config)
        self.cert_path: Path | None = None
        self.port: int = 0
        self._runner: web.AppRunner | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._announced = False

    @property
    def endpoint(self) -> str:
        scheme = "https" if self.config.tls else "http"
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        return f"{scheme}://{host}:{self.port}"

    async def start(self) -> None:
        self.state.stopping = asyncio.Event()
        if self.state.reporter is None and (reporter := self.config.reporter()) is not None:
            await reporter.start()
            self.state.reporter = reporter
        ssl_context = None
        if self.config.tls:
            cert_dir = self.config.mailbox_dir
            if cert_dir is None:
                self._tmp = tempfile.TemporaryDirectory(prefix="acs-emulator-")
                cert_dir = Path(self._tmp.name)
            # Key generation is CPU work; keep the loop responsive.
            cert_path, key_path = await asyncio.to_thread(
                write_self_signed, cert_dir, hosts=(self.config.host,)
            )
            ssl_context = server_ssl_context(cert_path, key_path)
            self.cert_path = cert_path
        sock = socket.socket(
            socket.AF_INET6 if ":" in self.config.host else socket.AF_INET, socket.SOCK_STREAM
        )
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.config.host, self.config.port))
            except OSError as exc:
                raise ListenError(HTTP, self.config.host, self.config.port, exc) from exc
            self.port = sock.getsockname()[1]
            # A short shutdown timeout: stalled sends must not hold a stop for a minute.
            self._runner = web.AppRunner(
                build_app(self.state), access_log=None, handle_signals=False, shutdown_timeout=1.0
            )
            await self._runner.setup()
            site = web.SockSite(self._runner, sock, ssl_context=ssl_context)
            await site.start()
        except BaseException:
            sock.close()
            await self.stop()
            raise
        log.info(
            "acs_email.started", endpoint=self.endpoint, quota=self.config.quota.name, tls=self.config.tls
        )
        self._announced = True

    async def stop(self) -> None:
        if self.state.stopping is not None:
            self.state.stopping.set()
        if self.state.reporter is not None:
            await self.state.reporter.close()
            self.state.reporter = None
        if self._runner is not None:
            server = self._runner.server
            transports = [h.transport for h in server.connections if h.transport] if server else []
            await self._runner.cleanup()
            self._runner = None
            # Clients that keep idle keep-alive connections would hold a TLS close handshake open
            # past the loop's end (ResourceWarning); abort whatever is left.
            for transport in transports:
                transport.abort()
            await asyncio.sleep(0)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        if self._announced:  # a start that failed says so itself, not with a "stopped" line
            log.info("acs_email.stopped", endpoint=self.endpoint)
            self._announced = False
