"""Run the emulator in its own thread and event loop, for tests, the demo and benchmarks.

The server must not share the caller's loop: tests drive it with the *sync* SDK client, which
would block that loop and deadlock.

Example::

    async with EmailEmulator(quota="azure-default") as acs:
        client = EmailClient(acs.endpoint, AzureKeyCredential(acs.access_key))
        ...
        assert acs.mailbox.messages(recipient="ann@contoso.test")

    with EmailEmulator() as acs:   # plain sync use works too (acs.start() / acs.stop())
        ...

    # Delivery reports, as Event Grid would deliver them to a Service Bus queue:
    async with EmailEmulator(report_servicebus=sb.connection_string, report_delay=0.5) as acs:
        ...
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from postbus.emulators.acs_email.faults import Faults
from postbus.emulators.acs_email.mailbox import Mailbox
from postbus.emulators.acs_email.operations import FailureRule
from postbus.emulators.acs_email.quota import QuotaConfig
from postbus.emulators.acs_email.reports import DeliveryMix, ReportSchema
from postbus.emulators.acs_email.server import EmulatorServer, ServerConfig, new_access_key

__all__ = ["EmailEmulator"]

_START_TIMEOUT_S = 30.0


class EmailEmulator:
    """An ACS Email emulator on a free port, served from a background thread."""

    def __init__(
        self,
        access_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        quota: str | QuotaConfig = "unlimited",
        tls: bool = False,
        mailbox_dir: Path | None = None,
        succeed_after: float = 0.0,
        bearer_token: str | None = None,
        *,
        report_servicebus: str | None = None,
        report_queue: str = "email-events",
        report_webhook: str | None = None,
        report_delay: float = 0.0,
        delivery_mix: str | DeliveryMix | None = None,
        report_schema: ReportSchema = "eventgrid",
    ) -> None:
        if isinstance(delivery_mix, str):
            delivery_mix = DeliveryMix.parse(delivery_mix)
        config = ServerConfig(
            access_key=access_key or new_access_key(),
            host=host,
            port=port,
            quota=quota if isinstance(quota, QuotaConfig) else QuotaConfig.parse(quota),
            tls=tls,
            mailbox_dir=mailbox_dir,
            succeed_after=succeed_after,
            bearer_token=bearer_token,
            report_servicebus=report_servicebus,
            report_queue=report_queue,
            report_webhook=report_webhook,
            report_delay=report_delay,
            delivery_mix=delivery_mix,
            report_schema=report_schema,
        )
        self._server = EmulatorServer(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_event: asyncio.Event | None = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> EmailEmulator:
        """Start serving; returns once the socket is bound (raises if it could not start)."""
        if self._thread is not None:
            raise RuntimeError("emulator already started")
        self._thread = threading.Thread(target=self._run, name="acs-email-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_S):
            raise RuntimeError("ACS Email emulator did not start in time")
        if self._error is not None:
            self._thread.join()
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and join the thread; idempotent."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop_event.set)
        thread.join()
        self._thread = None

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            await self._server.start()
        except BaseException as exc:  # reported to the starting thread, which re-raises it
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            await self._server.stop()

    def __enter__(self) -> EmailEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def __aenter__(self) -> EmailEmulator:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await asyncio.to_thread(self.stop)

    # -- what callers read -----------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:<port>`` (``https`` with TLS), no trailing slash."""
        return self._server.endpoint

    @property
    def access_key(self) -> str:
        return self._server.config.access_key

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.endpoint}/;accesskey={self.access_key}"

    @property
    def cert_path(self) -> Path | None:
        return self._server.cert_path

    @property
    def mailbox(self) -> Mailbox:
        return self._server.state.mailbox

    @property
    def faults(self) -> Faults:
        return self._server.state.faults

    @property
    def failure_rules(self) -> tuple[FailureRule, ...]:
        return self._server.state.failure_rules

    @failure_rules.setter
    def failure_rules(self, rules: Sequence[FailureRule | Sequence[str]]) -> None:
        self._server.state.set_failure_rules(rules)

    @property
    def conflict_status(self) -> int:
        """Answer to a reused ``Operation-Id`` with a different body: 409 (default) or 400."""
        return self._server.state.conflict_status

    @conflict_status.setter
    def conflict_status(self, status: int) -> None:
        if status not in (400, 409):
            raise ValueError("conflict_status must be 400 or 409")
        self._server.state.conflict_status = status

    @property
    def succeed_after(self) -> float:
        return self._server.state.succeed_after

    @succeed_after.setter
    def succeed_after(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("succeed_after must be >= 0")
        self._server.state.succeed_after = float(seconds)

    @property
    def quota(self) -> QuotaConfig:
        return self._server.state.quota.config

    def set_quota(self, quota: str | QuotaConfig) -> None:
        """Change the limits while running (thread-safe)."""
        self._server.state.quota.set_config(
            quota if isinstance(quota, QuotaConfig) else QuotaConfig.parse(quota)
        )

    @property
    def reports_sent(self) -> dict[str, int]:
        """Delivery reports handed to every sink so far, by status (empty without a sink)."""
        reporter = self._server.state.reporter
        return reporter.delivered if reporter is not None else {}

    def stats(self) -> dict[str, object]:
        """Accepted, replayed, rejected by reason, throttled, status reads, per-minute rate, latency."""
        snap = self._server.state.stats.snapshot()
        snap["stored"] = len(self.mailbox)
        snap["quota"] = self.quota.to_dict()
        return snap
