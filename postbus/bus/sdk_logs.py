"""The Azure SDK's own log records, at the level they deserve in a Postbus process.

When a connection drops, the Service Bus SDK logs every operation that was using it at ERROR
with a traceback (``Unexpected error occurred (...). Handler shutting down.``), four to seven of
them per cut, although the adapter translates the exception it then raises and the worker
reconnects. Error-based alerting would page for each. :func:`route_sdk_logs` sends the records of
the SDK loggers Postbus drives through one relay: an error becomes a warning, and any record keeps its
exception's type and first line instead of the traceback. Whatever the SDK then raises reaches
Postbus as a :class:`~postbus.bus.errors.BusError`, which the caller logs or reports itself.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["SDK_LOGGERS", "route_sdk_logs"]

#: The SDK loggers whose records the relay rewrites (their children included).
SDK_LOGGERS: Final = ("azure.servicebus", "azure.core", "azure.identity", "uamqp")
_RELAY_NAME: Final = "postbus-sdk-relay"


class _Relay(logging.Handler):
    """Hands an SDK record to the root logger's handlers, demoted to a warning without a traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.set_name(_RELAY_NAME)

    def emit(self, record: logging.LogRecord) -> None:
        # Warnings carry tracebacks too ("Handler cleanup did not complete; preserving the original
        # error."), so every record loses its traceback, and errors become warnings.
        if record.exc_info or record.stack_info or record.levelno > logging.WARNING:
            message = record.getMessage().splitlines()[0] if record.getMessage() else ""
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                message = (
                    f"{message} ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
                )
            record.msg, record.args = message, None
            record.exc_info = record.exc_text = None
            record.stack_info = None
        if record.levelno > logging.WARNING:
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        logging.getLogger().handle(record)


def route_sdk_logs() -> None:
    """Route the SDK loggers through the relay (idempotent; keeps their levels)."""
    for name in SDK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(handler.get_name() == _RELAY_NAME for handler in logger.handlers):
            logger.addHandler(_Relay())
        # The relay hands each record to the root's handlers itself; propagating it too would log it twice.
        logger.propagate = False
