"""Why an emulator could not start, keyed on what the person who ran it does next.

::

    OSError
    └── ListenError        a listener could not be opened; says which one, where and why
    PostbusError (postbus.errors)
    ├── SettingsError      a bad option, file or directory: fix the command (exit 2)
    └── StartError         a port is taken or not ours to bind: free it or pick another (exit 1)

The embedding API raises :class:`ListenError` (an ``OSError``, so existing handlers still catch
it); the command line turns it into a :class:`StartError` whose message names the option to change.
"""

from __future__ import annotations

import errno
import socket

from postbus.errors import PostbusError

__all__ = ["AMQP", "HTTP", "SB_ADMIN", "ListenError", "StartError", "start_error"]

AMQP = "Service Bus AMQP"
SB_ADMIN = "Service Bus admin"
HTTP = "ACS Email HTTP"


class ListenError(OSError):
    """``listener`` (``AMQP``, ``SB_ADMIN`` or ``HTTP``) could not listen on ``host``:``port``.

    Example::

        try:
            sb.start()
        except ListenError as exc:
            print(exc.listener, exc.port, exc.strerror)
    """

    def __init__(self, listener: str, host: str, port: int, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.listener = listener
        self.host = host
        self.port = port

    def __str__(self) -> str:
        where = f"{self.host}:{self.port}" if self.port else f"{self.host} (any free port)"
        return f"{self.listener}: cannot listen on {where}: {self.strerror}"


class StartError(PostbusError):
    """An emulator did not start because of the machine, not the command: a port in use."""


def start_error(exc: ListenError, *, port_option: str, host_option: str = "--host") -> StartError:
    """One line for a person: which listener, which option to change, and why."""
    reason = (exc.strerror or "").rstrip(".")
    if isinstance(exc.__cause__, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return StartError(f"cannot listen on host {exc.host!r} ({host_option}): {reason}")
    if exc.errno == errno.EADDRINUSE:
        return StartError(
            f"{exc.listener} port {exc.port} on {exc.host} is already in use ({port_option}); "
            "stop what holds it or choose another port"
        )
    if exc.errno == errno.EACCES:
        return StartError(
            f"{exc.listener} port {exc.port} on {exc.host} needs privileges ({port_option}); "
            "choose a port above 1023"
        )
    return StartError(f"{exc} ({port_option})")
