"""Suite-wide fixtures, and where the time of an integration test goes.

Every test (autouse):

- ``clean_environ``: none of our environment variables set and no ``.env`` file read, so a
  developer's shell or checkout cannot change what a test sees (httpx's ``clean_environ`` idea) —
  except ``POSTBUS_SERVICEBUS_KEEP_ALIVE_SECONDS=0``: settings a test loads give its Service Bus
  links no keep-alive task, so closing them does not wait for one (see below). A test about the
  keep-alive sets the variable (or the setting) itself.
- ``structlog_through_logging``: structlog routed through the standard library, as the CLI
  routes it, so no module's lines land on stdout however the tests before it left things.
- ``isolated_telemetry``: a test may configure telemetry (a CLI command run in-process does), but
  the OpenTelemetry globals stay unset and the process's telemetry is put back afterwards. The
  globals can be set only once per process; a test that set them would make every later
  publisher add trace headers, so results would depend on the order tests run in.

Parallel runs: ``make test`` runs the suite in four processes (pytest-xdist, ``-n 4 --dist
loadgroup``): it mostly waits on sockets, so this cuts its time to under half on 2 cores. Tests
must not depend on each other or on running alone. ``tests/infra``, ``tests/browser`` and the
tests that start an Azurite each stay in one process (``_ONE_PROCESS`` below: one Bicep parse, one
Azurite each, one Chromium at a time); a new file with a costly shared fixture belongs there too.
``pytest`` without ``-n`` runs serially.

Shared fixtures: ``acs`` is an ACS Email emulator with its defaults on the test's event loop;
folders that need another configuration define their own (``tests/e2e/conftest.py``,
``tests/contract/*/conftest.py``). ``tests.support`` holds helpers (``eventually``, ``running``,
``WorkerProcess``, ``open_side_by_side``).

Where the time goes, and how to keep a test fast (measured against the local emulator, which
answers within milliseconds): opening an azure-servicebus sender or receiver takes about 0.5 s,
because the SDK sleeps 50 ms between the frames of each handshake; closing one waits up to 1 s for
its keep-alive task unless ``keep_alive=0`` (a receiver without prefetch always has one, every 5 s).
So: open as few links as the test needs and reuse them within the test; pass ``keep_alive=0`` to
senders the test builds with the SDK directly; open independent links side by side
(``open_side_by_side``); await the emulators' own signals (``servicebus.wait_for``,
``acs.mailbox.wait_for``) instead of polling. An emulator itself starts and stops in milliseconds:
a fresh one per test costs nothing worth sharing.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
import structlog
from opentelemetry import metrics, trace

import postbus.logs as postbus_logs
from postbus.emulators.acs_email import EmailEmulator
from postbus.telemetry import configure as telemetry_configure

_OURS = ("POSTBUS_", "APPLICATIONINSIGHTS_", "OTEL_")

# Folders and files whose tests share one costly resource: under ``--dist loadgroup`` each runs in
# one process, so each Azurite (session- or module-scoped) starts once, the Bicep files are parsed
# once, and no two Chromiums compete for the two cores.
_ONE_PROCESS = {
    "tests/infra/": "infra",
    "tests/contract/records/": "azurite-tables",
    "tests/contract/attachments/test_attachment_store.py": "azurite-blob-contract",
    "tests/e2e/test_claim_check.py": "azurite-blob-e2e",
    "tests/browser/": "browser",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.pluginmanager.hasplugin("xdist"):
        return
    for item in items:
        for folder, group in _ONE_PROCESS.items():
            if item.nodeid.startswith(folder):
                item.add_marker(pytest.mark.xdist_group(group))


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
    monkeypatch.setenv("POSTBUS_SERVICEBUS_KEEP_ALIVE_SECONDS", "0")


@pytest.fixture(autouse=True)
def structlog_through_logging() -> None:
    # Modules that call structlog.get_logger (the emulators) print to stdout while structlog is
    # unconfigured: a test reading a command's stdout would then pass or fail depending on
    # whether an earlier test had run a CLI command (which configures it). Every test starts
    # with structlog routed through the standard library, as the CLI routes it.
    structlog.configure(
        processors=postbus_logs._CHAIN,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


@pytest.fixture(autouse=True)
def isolated_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    # configure_telemetry builds its providers as usual; only installing them globally is skipped.
    monkeypatch.setattr(trace, "set_tracer_provider", lambda provider: None)
    monkeypatch.setattr(metrics, "set_meter_provider", lambda provider: None)
    # Restored when the test ends: whatever the test configured goes with it.
    monkeypatch.setattr(telemetry_configure, "_current", telemetry_configure._current)
    monkeypatch.setattr(telemetry_configure, "_configured", telemetry_configure._configured)


@pytest.fixture
async def acs() -> AsyncIterator[EmailEmulator]:
    async with EmailEmulator() as emulator:
        yield emulator
