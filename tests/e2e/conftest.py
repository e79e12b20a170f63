"""End-to-end fixtures: both emulators on 127.0.0.1, a worker on the test's event loop, a publisher.

Everything the worker does goes through the real azure-servicebus and azure-communication-email
SDKs over real sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.producers.publisher import Publisher
from postbus.settings import Settings, load_settings
from postbus.worker.runner import Worker
from tests.support import SENDERS, running


@pytest.fixture
async def servicebus() -> AsyncIterator[ServiceBusEmulator]:
    async with ServiceBusEmulator() as emulator:
        yield emulator


@pytest.fixture
def settings(servicebus: ServiceBusEmulator, acs: EmailEmulator) -> Settings:
    return load_settings(
        servicebus_connection_string=servicebus.connection_string,
        acs_endpoint=acs.endpoint,
        acs_access_key=acs.access_key,
        senders=SENDERS,
        quota_per_minute=0,
        quota_per_hour=0,
        health_port=0,
        concurrency=8,
        prefetch=16,
        retry_backoff_base_seconds=0.2,
        retry_backoff_cap_seconds=1.0,
        log_format="json",
    )


@pytest.fixture
async def worker(settings: Settings) -> AsyncIterator[Worker]:
    async with running(Worker(settings)) as started:
        yield started


@pytest.fixture
async def publisher(settings: Settings) -> AsyncIterator[Publisher]:
    # No publish checks: these tests publish what the worker itself must refuse.
    async with Publisher.from_settings(settings, check=None) as opened:
        yield opened
