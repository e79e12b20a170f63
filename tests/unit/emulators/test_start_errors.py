"""The one line a person gets when an emulator cannot listen: which listener, which option, why."""

from __future__ import annotations

import errno
import socket

import pytest

from postbus.emulators.errors import AMQP, HTTP, SB_ADMIN, ListenError, StartError, start_error


def _listen_error(listener: str, host: str, port: int, cause: OSError) -> ListenError:
    try:
        raise ListenError(listener, host, port, cause) from cause
    except ListenError as exc:
        return exc


def test_a_port_in_use_names_the_listener_and_the_option() -> None:
    exc = _listen_error(SB_ADMIN, "127.0.0.1", 8026, OSError(errno.EADDRINUSE, "Address already in use"))
    error = start_error(exc, port_option="--admin-port")
    assert isinstance(error, StartError)
    assert str(error) == (
        "Service Bus admin port 8026 on 127.0.0.1 is already in use (--admin-port); "
        "stop what holds it or choose another port"
    )
    assert error.exit_code == 1


def test_a_host_that_does_not_resolve_blames_the_host_not_port_zero() -> None:
    cause = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    error = start_error(_listen_error(AMQP, "nowhere.invalid", 0, cause), port_option="--port")
    assert str(error) == "cannot listen on host 'nowhere.invalid' (--host): Name or service not known"


def test_an_address_that_is_not_ours_blames_the_host() -> None:
    cause = OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    error = start_error(_listen_error(HTTP, "10.9.9.9", 8025, cause), port_option="--port")
    assert "(--host)" in str(error)


def test_a_privileged_port_says_so() -> None:
    cause = OSError(errno.EACCES, "Permission denied")
    error = start_error(_listen_error(HTTP, "127.0.0.1", 80, cause), port_option="--email-port")
    assert str(error).startswith("ACS Email HTTP port 80 on 127.0.0.1 needs privileges (--email-port)")


@pytest.mark.parametrize(("port", "where"), [(0, "127.0.0.1 (any free port)"), (5672, "127.0.0.1:5672")])
def test_any_other_reason_keeps_the_system_message(port: int, where: str) -> None:
    exc = _listen_error(AMQP, "127.0.0.1", port, OSError(errno.EMFILE, "Too many open files"))
    assert isinstance(exc, OSError)  # embedding code that catches OSError still does
    assert str(start_error(exc, port_option="--port")) == (
        f"Service Bus AMQP: cannot listen on {where}: Too many open files (--port)"
    )
