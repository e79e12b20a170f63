"""A worker that cannot begin says why in one line: a taken health port, a queue it never reached."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from postbus.bus import BusUnavailable, InMemoryBroker
from postbus.cli import main
from postbus.lanes import Lane
from postbus.settings import load_settings
from postbus.worker import cli as worker_cli
from postbus.worker import runner
from postbus.worker.errors import CannotStart
from postbus.worker.health import HealthServer, HealthStatus
from postbus.worker.mailer import FakeMailer
from postbus.worker.runner import Worker

KEY = "c2VjcmV0LWtleS12YWx1ZQ=="


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


async def test_a_taken_health_port_is_refused_naming_the_setting(taken_port: int) -> None:
    server = HealthServer(port=taken_port, status=lambda: HealthStatus(live=True, ready=True))
    with pytest.raises(CannotStart, match=f"port {taken_port}: .*POSTBUS_HEALTH_PORT"):
        await server.start()
    await server.stop()


def test_postbus_worker_on_a_taken_health_port_is_one_line_and_exit_1(
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, taken_port: int
) -> None:
    monkeypatch.setenv(
        "POSTBUS_SERVICEBUS_CONNECTION_STRING",
        f"Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=a;SharedAccessKey={KEY};UseDevelopmentEmulator=true",
    )
    monkeypatch.setenv("POSTBUS_ACS_CONNECTION_STRING", f"endpoint=http://127.0.0.1:9/;accesskey={KEY}")
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com"}')
    monkeypatch.setenv("POSTBUS_HEALTH_PORT", str(taken_port))
    monkeypatch.setenv("POSTBUS_LOG_FORMAT", "json")
    # The command would set the process's OpenTelemetry providers for good; later tests must not inherit them.
    monkeypatch.setattr(worker_cli, "configure_telemetry", lambda settings: None)
    assert main(["worker"]) == 1
    err = capfd.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("postbus: error:")]
    assert errors == [
        f"postbus: error: cannot serve /healthz and /readyz on port {taken_port}: address already in use; "
        "set POSTBUS_HEALTH_PORT (or --health-port) to a free port, or 0 to turn the endpoint off"
    ]
    assert "Traceback" not in err


class _Unreachable(InMemoryBroker):
    """A namespace no open ever reaches (a wrong host or port)."""

    async def open(self) -> object:  # type: ignore[override]
        self.opened += 1
        raise BusUnavailable("open queue 'notifications'", "Connect call failed ('127.0.0.1', 1)")


async def test_a_worker_that_never_reached_its_queue_gives_up_naming_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "RECONNECT_PAUSE", 0.01)
    settings = load_settings(
        senders={"orders": "orders@shop.example.com"}, quota_per_minute=0, quota_per_hour=0, health_port=0
    )
    broker = _Unreachable()
    worker = Worker(settings, source=broker, mailer=FakeMailer())
    with pytest.raises(CannotStart) as raised:
        await asyncio.wait_for(worker.run(asyncio.Event()), timeout=10)
    assert broker.opened == runner.STARTUP_ATTEMPTS
    assert str(raised.value) == (
        "could not open queue 'notifications': Connect call failed ('127.0.0.1', 1) "
        f"({runner.STARTUP_ATTEMPTS} tries); check the address in POSTBUS_SERVICEBUS_CONNECTION_STRING "
        "or POSTBUS_SERVICEBUS_NAMESPACE and that this machine can reach it"
    )


class _UnreachableLane(_Unreachable):
    """Unreachable too, and an open only fails once every lane's open has begun."""

    def __init__(self, together: asyncio.Barrier) -> None:
        super().__init__()
        self._together = together

    async def open(self) -> object:  # type: ignore[override]
        if self.opened == 0:
            await self._together.wait()  # one lane after another would wait here for ever
        return await super().open()


async def test_a_worker_with_lanes_tries_them_at_once_and_gives_up_as_soon_as_one_queue_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An unreachable namespace costs each open the SDK's whole retry budget (about 12 s), so the
    # lanes' first opens overlap and count as one attempt, as one queue's would.
    monkeypatch.setattr(runner, "RECONNECT_PAUSE", 0.01)
    settings = load_settings(
        senders={"orders": "orders@shop.example.com"}, quota_per_minute=0, quota_per_hour=0, health_port=0
    )
    together = asyncio.Barrier(len(Lane))
    brokers = {lane: _UnreachableLane(together) for lane in Lane}
    worker = Worker(settings, sources=brokers, mailer=FakeMailer())
    with pytest.raises(CannotStart, match=rf"\({runner.STARTUP_ATTEMPTS} tries\)"):
        await asyncio.wait_for(worker.run(asyncio.Event()), timeout=10)
    assert max(broker.opened for broker in brokers.values()) == runner.STARTUP_ATTEMPTS
