"""The SDK's error records reach the log as warnings without a traceback; Postbus's own are untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from postbus.bus import route_sdk_logs
from postbus.bus.sdk_logs import SDK_LOGGERS


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected() -> Iterator[_Collect]:
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    saved = {
        name: (logging.getLogger(name).propagate, list(logging.getLogger(name).handlers))
        for name in SDK_LOGGERS
    }
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, (propagate, handlers) in saved.items():
            logging.getLogger(name).propagate = propagate
            logging.getLogger(name).handlers = handlers


def test_an_sdk_error_with_a_traceback_becomes_a_one_line_warning(collected: _Collect) -> None:
    route_sdk_logs()
    route_sdk_logs()  # idempotent: still one relay, one record
    sdk = logging.getLogger("azure.servicebus.aio._base_handler_async")
    try:
        raise AttributeError("'NoneType' object has no attribute '_connection'")
    except AttributeError:
        sdk.exception("Unexpected error occurred (%s). Handler shutting down.", "AttributeError")
    (record,) = [r for r in collected.records if r.name.startswith("azure")]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage() == (
        "Unexpected error occurred (AttributeError). Handler shutting down. "
        "(AttributeError: 'NoneType' object has no attribute '_connection')"
    )


def test_warnings_pass_unchanged_and_other_loggers_are_not_relayed(collected: _Collect) -> None:
    route_sdk_logs()
    logging.getLogger("azure.core.pipeline").warning("retrying %d", 2)
    logging.getLogger("postbus.worker").error("our own error keeps its level")
    by_name = {record.name: record for record in collected.records}
    assert by_name["azure.core.pipeline"].levelno == logging.WARNING
    assert by_name["azure.core.pipeline"].getMessage() == "retrying 2"
    assert by_name["postbus.worker"].levelno == logging.ERROR


def test_an_sdk_warning_with_a_traceback_loses_the_traceback_and_keeps_its_level(collected: _Collect) -> None:
    # The SDK's async close logs this warning with exc_info after a dropped connection.
    route_sdk_logs()
    sdk = logging.getLogger("azure.servicebus.aio._async_utils")
    try:
        raise ConnectionResetError(104, "Connection reset by peer")
    except ConnectionResetError:
        sdk.warning("Handler cleanup did not complete; preserving the original error.", exc_info=True)
    (record,) = [r for r in collected.records if r.name.startswith("azure")]
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage() == (
        "Handler cleanup did not complete; preserving the original error. "
        "(ConnectionResetError: [Errno 104] Connection reset by peer)"
    )
