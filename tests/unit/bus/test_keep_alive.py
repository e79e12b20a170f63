"""The keep-alive setting reaches every sender and receiver the adapter builds (no I/O: links open lazily)."""

from __future__ import annotations

import pytest

from postbus.bus import ServiceBusConnection, SyncServiceBusConnection
from postbus.settings import Settings, load_settings

EMULATOR = (
    "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)


def settings(**overrides: object) -> Settings:
    return load_settings(servicebus_connection_string=EMULATOR, **overrides)


def test_the_default_is_the_sdks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTBUS_SERVICEBUS_KEEP_ALIVE_SECONDS")  # the suite turns it off
    assert load_settings().servicebus_keep_alive_seconds == 30


@pytest.mark.parametrize("seconds", [0, 7])
async def test_async_senders_and_receivers_get_the_setting(seconds: int) -> None:
    async with ServiceBusConnection.from_settings(
        settings(servicebus_keep_alive_seconds=seconds), purpose="the test"
    ) as bus:
        sender = bus.sender("notifications")
        receiver = bus.receiver("notifications", prefetch=16)
        # The SDK keeps the handler's keyword options on its configuration object.
        assert sender._config.keep_alive == seconds
        assert receiver._config.keep_alive == seconds


def test_the_sync_sender_gets_the_setting() -> None:
    bus = SyncServiceBusConnection.from_settings(
        settings(servicebus_keep_alive_seconds=5), purpose="the test"
    )
    try:
        assert bus.sender("notifications")._config.keep_alive == 5
    finally:
        bus.close()
