"""Structured logging: structlog on top of the standard library, one configuration for every process.

Lines are JSON when stderr is not a terminal and human-readable when it is. Every line carries
the current OpenTelemetry ``trace_id``/``span_id`` when a span is active, and passes through a
redaction step so that connection strings, access keys, SAS signatures and bearer tokens never
reach a log sink. Recipient addresses are logged masked (:func:`mask_address`) or as a domain
(:func:`recipient_domain`), never in full.

Records go through the standard ``logging`` module so that Azure SDK logs and the OpenTelemetry
log exporter see the same stream.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Final, Literal, TextIO

import structlog
from opentelemetry import trace

__all__ = [
    "configure_logging",
    "get_logger",
    "mask_address",
    "recipient_domain",
    "redact",
]

_SECRET_PATTERNS: Final = (
    # key=value pairs in connection strings and SAS tokens
    re.compile(
        r"(?i)\b(SharedAccessKey|SharedAccessSignature|AccountKey|accesskey|sig|InstrumentationKey)=([^;&\s\"']+)"
    ),
    re.compile(r"(?i)\b(Bearer|HMAC-SHA256)\s+[^\s\"']+"),
    re.compile(r"(?i)(Signature=)[^\s&\"']+"),
)
#: Addresses inside free text (error descriptions, SDK messages) are masked like recipients.
_EMAIL_IN_TEXT: Final = re.compile(
    r"(?<![\w.+-])([A-Za-z0-9])[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
_QUIET_LOGGERS: Final = ("azure", "uamqp", "urllib3", "aiohttp.access", "proton")


def mask_address(address: str) -> str:
    """``jane.doe@contoso.com`` -> ``j***@contoso.com``; anything without ``@`` -> ``***``."""
    local, at, domain = address.rpartition("@")
    if not at or not local:
        return "***"
    return f"{local[0]}***@{domain}"


def recipient_domain(address: str) -> str:
    """The domain part of an address, lower-cased (``""`` if there is none)."""
    _, at, domain = address.rpartition("@")
    return domain.lower() if at else ""


def redact(text: str) -> str:
    """Replace secret values in ``text`` with ``***`` and mask email addresses in it."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(_redacted, text)
    if "@" in text:
        text = _EMAIL_IN_TEXT.sub(r"\1***@\2", text)
    return text


def _redacted(match: re.Match[str]) -> str:
    if match.re is _SECRET_PATTERNS[0]:
        return f"{match.group(1)}=***"
    if match.re is _SECRET_PATTERNS[1]:
        return f"{match.group(1)} ***"
    return f"{match.group(1)}***"


def _redact_values(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
    return event_dict


def _add_trace_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the root logger once per process (idempotent)."""
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_trace_context,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            _redact_values,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.set_name("postbus")
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.get_name() == "postbus"]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # The SDKs log every frame and retry at INFO; their warnings still come through.
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A structlog logger for ``name`` (usually ``__name__``)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
