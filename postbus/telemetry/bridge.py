"""The bridge from the standard ``logging`` stream (structlog's lines included) to OpenTelemetry logs."""

from __future__ import annotations

import logging
import re
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry._logs import LoggerProvider, LogRecord, SeverityNumber

from postbus.logs import redact
from postbus.telemetry.spans import MAX_EXCEPTION_TEXT

__all__ = ["LOG_HANDLER_NAME", "OtelLogHandler", "install_log_handler", "log_fields"]

#: Name of the root-logger handler that forwards log records to OpenTelemetry.
LOG_HANDLER_NAME: Final = "postbus-otel"
#: Loggers whose records are not forwarded: the exporters' own complaints would feed back into them.
_UNBRIDGED: Final = ("opentelemetry", "azure.monitor", "urllib3")

#: Keys of a structlog event dict that are not fields of the line (or are carried otherwise).
_NOT_FIELDS: Final = frozenset(
    {"event", "_record", "_from_structlog", "exc_info", "stack_info", "timestamp", "level", "logger"}
)
_SEVERITY: Final = (
    (logging.ERROR, SeverityNumber.ERROR, "ERROR"),
    (logging.WARNING, SeverityNumber.WARN, "WARN"),
    (logging.INFO, SeverityNumber.INFO, "INFO"),
    (logging.NOTSET, SeverityNumber.DEBUG, "DEBUG"),
)


#: What every secret pattern of :func:`postbus.logs.redact` needs; most values (ids, names) have none.
_MAY_NEED_REDACTING: Final = re.compile(r"[=@]|(?i:bearer|hmac)")


def _attribute(value: object) -> str | int | float | bool:
    if isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    return redact(text) if _MAY_NEED_REDACTING.search(text) else text


def log_fields(record: logging.LogRecord) -> tuple[str, dict[str, str | int | float | bool]]:
    """The body and attributes a log record is exported with: the event name and its redacted fields."""
    message = record.msg
    attributes: dict[str, str | int | float | bool] = {}
    if isinstance(message, dict):  # a structlog line: the event dict, before rendering
        body = redact(str(message.get("event", "")))
        for key, value in message.items():
            if key not in _NOT_FIELDS and value is not None:
                attributes[str(key)] = _attribute(value)
    else:
        body = redact(record.getMessage())
    attributes["logger"] = record.name
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        attributes["exception.type"] = type(error).__qualname__
        attributes["exception.message"] = redact(str(error))[:MAX_EXCEPTION_TEXT]
    return body, attributes


class OtelLogHandler(logging.Handler):
    """Forwards standard-library records (structlog's included) to an OpenTelemetry logger provider.

    A structlog line arrives as its event dict; the event name becomes the body (``message`` in
    Application Insights) and every field an attribute (``customDimensions``), redacted like the
    JSON line on stderr. Records are emitted in the caller's context, so a line written inside a
    span carries its trace and span id (``operation_Id``/``operation_ParentId``).
    """

    def __init__(self, provider: LoggerProvider, *, level: int = logging.NOTSET) -> None:
        super().__init__(level=level)
        self._provider = provider
        self.set_name(LOG_HANDLER_NAME)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_UNBRIDGED):
            return
        try:
            body, attributes = log_fields(record)
            severity, text = next(
                (number, name) for floor, number, name in _SEVERITY if record.levelno >= floor
            )
            self._provider.get_logger(record.name).emit(
                LogRecord(
                    timestamp=int(record.created * 1e9),
                    context=otel_context.get_current(),
                    severity_text=text,
                    severity_number=severity,
                    body=body,
                    attributes=attributes,
                )
            )
        except Exception:  # a telemetry failure must never break the caller's logging
            self.handleError(record)


def install_log_handler(provider: LoggerProvider) -> OtelLogHandler:
    """Attach an :class:`OtelLogHandler` to the root logger (replacing an earlier one)."""
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == LOG_HANDLER_NAME]:
        root.removeHandler(existing)
    handler = OtelLogHandler(provider)
    root.addHandler(handler)
    return handler
