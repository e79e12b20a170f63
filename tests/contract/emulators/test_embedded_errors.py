"""Embedded, an emulator that cannot start raises an OSError that says which listener failed, and
leaves nothing running."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.errors import AMQP, HTTP, SB_ADMIN, ListenError
from postbus.emulators.servicebus import ServiceBusEmulator

from .conftest import free_port, port_is_free

pytestmark = pytest.mark.timeout(60)


def _emulator_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("servicebus-emulator", "acs-email-emulator")]


def test_servicebus_busy_admin_port_closes_the_amqp_listener_again(busy_port: int) -> None:
    amqp = free_port()
    emulator = ServiceBusEmulator(port=amqp, admin_port=busy_port)
    with pytest.raises(ListenError) as caught:
        emulator.start()
    assert (caught.value.listener, caught.value.port) == (SB_ADMIN, busy_port)
    assert port_is_free(amqp)
    assert _emulator_threads() == []


def test_servicebus_busy_amqp_port(busy_port: int) -> None:
    with pytest.raises(ListenError) as caught:
        ServiceBusEmulator(port=busy_port).start()
    assert (caught.value.listener, caught.value.port) == (AMQP, busy_port)
    assert isinstance(caught.value, OSError)


def test_email_busy_port(busy_port: int) -> None:
    with pytest.raises(ListenError) as caught:
        EmailEmulator(port=busy_port).start()
    assert (caught.value.listener, caught.value.port) == (HTTP, busy_port)
    assert _emulator_threads() == []


def test_email_mailbox_that_is_a_file_fails_at_construction(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("", encoding="utf-8")
    with pytest.raises(FileExistsError):
        EmailEmulator(mailbox_dir=a_file)
