"""Suite-wide fixtures.

Every test starts with none of our environment variables set and reads no ``.env`` file, so a
developer's shell or checkout cannot change what a test sees (httpx's ``clean_environ`` idea).
``acs`` is an ACS Email emulator with its defaults; folders that need another configuration define
their own.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from postbus.emulators.acs_email import EmailEmulator

_OURS = ("POSTBUS_", "APPLICATIONINSIGHTS_", "OTEL_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for name in list(os.environ):
        if name.startswith(_OURS):
            monkeypatch.delenv(name)
    # Nor can a ./.env (say one `postbus emulator up` wrote), here or in the workers tests start.
    monkeypatch.setenv("POSTBUS_ENV_FILE", "")
    # Workers write delivery records; each test gets its own file, never the checkout's default one.
    records = tmp_path_factory.mktemp("records") / "records.db"
    monkeypatch.setenv("POSTBUS_RECORD_URL", f"sqlite:///{records}")


@pytest.fixture
async def acs() -> AsyncIterator[EmailEmulator]:
    async with EmailEmulator() as emulator:
        yield emulator
