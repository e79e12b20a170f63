"""Structured logging: structlog lines that travel through the standard ``logging`` hierarchy.

Library code (the publisher inside a Django or FastAPI app, the worker's modules) logs through
:func:`get_logger`: each line is a structlog event dict handed to the stdlib logger of its module
(``postbus.producers.publisher``, ...). Nothing here configures a handler, a level or structlog
itself at import, and the ``postbus`` logger carries only a ``NullHandler``, as the logging
HOWTO asks of libraries: in someone else's app, Postbus is silent unless that app's logging
configuration says otherwise, and then a plain formatter shows ``publish queue=notifications
count=1 ...``.

Only the command line calls :func:`configure_logging`: JSON lines when stderr is not a terminal,
human-readable when it is, Azure SDK records in the same stream. Every line carries the current
OpenTelemetry ``trace_id``/``span_id`` when a span is active, and is redacted before it leaves
the library, so connection strings, access keys, SAS signatures and bearer tokens reach no sink.
Recipient addresses are logged masked (:func:`mask_address`) or as a domain
(:func:`recipient_domain`), never in full.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any, Final, Literal, TextIO

import structlog
from opentelemetry import trace

__all__ = [
    "capture_lines",
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
#: Keys a stdlib record carries itself, left out of a line's plain-text form.
_NOT_SHOWN: Final = frozenset({"event", "exc_info", "stack_info"})

# The logging HOWTO's advice for libraries: without the app's own configuration, Python's
# last-resort handler would print our warnings to stderr.
logging.getLogger("postbus").addHandler(logging.NullHandler())


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
    # Every secret pattern needs a "=" or whitespace: most values (ids, names, outcomes) have
    # neither and skip the regular expressions, which are most of a log line's cost.
    if "=" in text or any(c.isspace() for c in text):
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


def _redact_foreign(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Redact what the handler's formatter adds or receives unredacted.

    Our own lines were redacted when they were logged (the chain above); only their rendered
    traceback is new. Records of other libraries (the Azure SDKs) are redacted whole.
    """
    if event_dict.get("_from_structlog"):
        exception = event_dict.get("exception")
        if isinstance(exception, str):
            event_dict["exception"] = redact(exception)
        return event_dict
    return _redact_values(_logger, _method, event_dict)


def _add_trace_context(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict


class _Line(dict[str, Any]):
    """A structlog event dict as a stdlib record's ``msg``: a plain formatter shows ``event key=value ...``.

    ``ProcessorFormatter`` (the CLI's) and the OpenTelemetry bridge read it as the dict it is.
    """

    def __str__(self) -> str:
        fields = " ".join(f"{key}={_plain(value)}" for key, value in self.items() if key not in _NOT_SHOWN)
        return f"{self.get('event', '')} {fields}".rstrip()


def _plain(value: Any) -> str:
    text = str(value)
    return repr(text) if not text or any(c.isspace() for c in text) else text


def _to_stdlib(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> tuple[tuple[_Line], dict[str, Any]]:
    kwargs: dict[str, Any] = {"extra": {"_logger": logger, "_name": method}}
    if event_dict.get("exc_info"):
        # Handed on too, so an app's plain formatter prints the traceback (ours renders the dict's).
        kwargs["exc_info"] = event_dict["exc_info"]
    return (_Line(event_dict),), kwargs


#: What runs when library code logs: drop what no handler wants, then capture what only the
#: moment of the call knows (bound context, the current span), redact, and hand over to stdlib.
_CHAIN: Final[list[Any]] = [
    structlog.stdlib.filter_by_level,
    structlog.contextvars.merge_contextvars,
    _add_trace_context,
    _redact_values,
    _to_stdlib,
]


def configure_logging(
    *,
    level: str = "info",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Give the root logger Postbus's handler on ``stream`` (default stderr); for the CLI only.

    Idempotent: a second call replaces the handler. Also points structlog's global configuration
    at the same chain, for modules that call ``structlog.get_logger`` directly.
    """
    stream = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=_CHAIN,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # Records from other libraries (the Azure SDKs) get what ours got when they were logged.
        foreign_pre_chain=[structlog.contextvars.merge_contextvars, _add_trace_context],
        processors=[
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact_foreign,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
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
    """A structlog logger that writes to the stdlib logger ``name`` (usually ``__name__``).

    It does not depend on structlog's global configuration, so an app that configures structlog
    for itself -- or not at all -- gets our lines through ``logging`` all the same.
    """
    return structlog.stdlib.BoundLogger(logging.getLogger(name), _CHAIN, {})


@contextlib.contextmanager
def capture_lines(name: str = "postbus") -> Iterator[list[dict[str, Any]]]:
    """Collect the lines logged under ``name`` (every level) as dicts, for tests.

    Each dict is the line's fields plus ``event``, ``level`` and ``logger``::

        with capture_lines() as lines:
            await publisher.publish(event)
        [line] = [entry for entry in lines if entry["event"] == "publish"]
    """
    lines: list[dict[str, Any]] = []
    handler = _Collector(lines)
    logger = logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class _Collector(logging.Handler):
    """Appends each record's fields to a list (see :func:`capture_lines`)."""

    def __init__(self, lines: list[dict[str, Any]]) -> None:
        super().__init__(logging.DEBUG)
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        fields = dict(record.msg) if isinstance(record.msg, dict) else {"event": record.getMessage()}
        fields.update(level=record.levelname.lower(), logger=record.name)
        self._lines.append(fields)
