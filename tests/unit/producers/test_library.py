"""The producer as a library inside someone else's app: one public API, and silence unless asked.

Each scenario runs in a fresh interpreter, as an app importing Postbus would: nothing configured
logging or structlog before. The real ``Publisher`` runs over a stand-in for the SDK client (its
connection seam), so its own log lines -- a success and a failure -- are really written.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import postbus.producers

APP = textwrap.dedent(
    """
    import asyncio, logging, sys

    {setup}

    root = logging.getLogger()
    before = (list(root.handlers), root.level)

    import structlog
    from azure.core.exceptions import AzureError
    from azure.servicebus import ServiceBusMessageBatch
    from postbus.bus import ServiceBusConnection
    from postbus.producers import FakePublisher, NotificationEvent, Publisher, PublishError

    class Sender:
        sent = 0
        async def create_message_batch(self, max_size_in_bytes=None):
            return ServiceBusMessageBatch(max_size_in_bytes=max_size_in_bytes or 262144)
        async def send_messages(self, batch):
            Sender.sent += 1
            if Sender.sent > 1:
                raise AzureError("connection lost; SharedAccessKey=c2VjcmV0")
        async def close(self):
            pass

    class Client:
        def get_queue_sender(self, queue, **options):
            return Sender()
        async def close(self):
            pass

    class Connection(ServiceBusConnection):
        client = Client()

    def event(event_id):
        return NotificationEvent(
            id=event_id, type="order.confirmation", to=["jane@example.com"], sender="orders", data={{}}
        )

    async def main():
        async with FakePublisher() as fake:
            await fake.publish(event("order-1"))
        async with Publisher(Connection("sb.local", connection_string=None), queue="notifications") as publisher:
            await publisher.publish(event("order-2"))
            try:
                await publisher.publish(event("order-3"))
            except PublishError:
                pass
            else:
                raise SystemExit("the second send should have failed")

    asyncio.run(main())
    {check}
    """
)
UNTOUCHED = textwrap.dedent(
    """
    assert (list(root.handlers), root.level) == before, "root logger changed"
    assert not structlog.is_configured(), "structlog configured by a library"
    """
)


def _run(setup: str = "", check: str = UNTOUCHED) -> subprocess.CompletedProcess[str]:
    script = APP.format(setup=setup, check=check)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_publishing_from_an_app_that_configured_nothing_prints_nothing() -> None:
    result = _run()
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


def test_an_app_with_plain_logging_gets_readable_redacted_lines_from_our_loggers() -> None:
    # Given an app that configured the standard library, as Django's LOGGING or uvicorn does
    setup = "logging.basicConfig(stream=sys.stderr, level=logging.INFO, format='%(levelname)s %(name)s %(message)s')"
    result = _run(setup, check="")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # Then our lines arrive through its handler, named after our modules, as `event key=value ...`
    assert result.stdout == ""
    assert lines[0].startswith("INFO postbus.producers.publisher publish queue=notifications count=1 ")
    assert lines[1].startswith("WARNING postbus.producers.publisher publish_failed queue=notifications ")
    assert "SharedAccessKey=***" in lines[1]
    assert "c2VjcmV0" not in result.stderr


def test_an_app_that_configured_structlog_its_own_way_still_gets_our_lines_only_through_logging() -> None:
    # structlog's own default and many app setups print to stdout; our lines must not follow them.
    setup = "import structlog; structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stdout))"
    result = _run(setup, check="assert root.handlers == before[0]")
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


def test_the_public_producer_api_is_exactly_this() -> None:
    assert sorted(postbus.producers.__all__) == [
        "Address",
        "Attachment",
        "EventCheck",
        "EventLike",
        "FakePublisher",
        "InvalidEvent",
        "NotificationEvent",
        "PublishError",
        "Publisher",
        "ScheduledEvent",
        "Settings",
        "SettingsError",
        "SyncPublisher",
        "all_of",
        "known_sender",
        "load_settings",
        "not_expired",
        "publish_checks",
    ]
    for name in postbus.producers.__all__:
        assert getattr(postbus.producers, name) is not None


@pytest.mark.parametrize(
    "name", ["Publisher", "SyncPublisher", "FakePublisher", "PublishError", "ScheduledEvent"]
)
def test_public_classes_have_docstrings(name: str) -> None:
    assert (getattr(postbus.producers, name).__doc__ or "").strip()
