"""Logging: JSON lines, masked recipients, secrets redacted, trace context attached."""

from __future__ import annotations

import io
import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from postbus.logs import capture_lines, configure_logging, get_logger, mask_address, recipient_domain, redact


@pytest.fixture
def stream() -> io.StringIO:
    buffer = io.StringIO()
    configure_logging(fmt="json", stream=buffer)
    yield buffer
    logging.getLogger().handlers = [h for h in logging.getLogger().handlers if h.get_name() != "postbus"]


def _lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_lines_are_json_with_event_level_and_fields(stream: io.StringIO) -> None:
    get_logger("postbus.test").info("message processed", outcome="sent", attempt=0)
    (line,) = _lines(stream)
    assert line["event"] == "message processed"
    assert line["level"] == "info"
    assert line["outcome"] == "sent"
    assert "timestamp" in line


@pytest.mark.parametrize(
    "secret",
    [
        "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;SharedAccessKey=c2VjcmV0LWtleQ==;UseDevelopmentEmulator=true",
        "endpoint=https://x.communication.azure.com/;accesskey=c2VjcmV0LWtleQ==",
        "https://acct.blob.core.windows.net/c?sv=2024&sig=c2VjcmV0LWtleQ%3D%3D&se=2026",
        "Authorization: Bearer c2VjcmV0LWtleQ.eyJ.sig",
        "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=c2VjcmV0LWtleQ==",
        "InstrumentationKey=c2VjcmV0LWtleQ;IngestionEndpoint=https://x",
    ],
)
def test_secrets_are_redacted_from_structured_and_stdlib_lines(stream: io.StringIO, secret: str) -> None:
    get_logger("postbus.test").warning("connecting", detail=secret)
    logging.getLogger("azure.test").error("failed with %s", secret)
    assert "c2VjcmV0LWtleQ" not in stream.getvalue()
    assert len(_lines(stream)) == 2


def test_trace_context_is_added_inside_a_span(stream: io.StringIO) -> None:
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        get_logger("postbus.test").info("inside")
    (line,) = _lines(stream)
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert line["span_id"] == format(span.get_span_context().span_id, "016x")


def test_masking_keeps_the_domain_only() -> None:
    assert mask_address("jane.doe@contoso.com") == "j***@contoso.com"
    assert mask_address("nonsense") == "***"
    assert recipient_domain("Jane@Contoso.COM") == "contoso.com"


@given(st.text(min_size=1, max_size=40).filter(lambda s: "@" not in s and ";" not in s and not s.isspace()))
def test_masked_address_never_contains_the_local_part_beyond_its_first_letter(local: str) -> None:
    masked = mask_address(f"{local}@example.com")
    assert masked == f"{local[0]}***@example.com"


def test_addresses_in_free_text_are_masked() -> None:
    assert (
        redact("to.0.address: not valid: 'jane.doe@contoso.com'")
        == "to.0.address: not valid: 'j***@contoso.com'"
    )
    assert redact("sent to j***@contoso.com") == "sent to j***@contoso.com"


def test_redact_leaves_ordinary_text_alone() -> None:
    assert redact("order 1001 sent to j***@contoso.com") == "order 1001 sent to j***@contoso.com"


def test_lines_name_their_logger_and_render_exceptions(stream: io.StringIO) -> None:
    try:
        raise RuntimeError("refused with accesskey=c2VjcmV0LWtleQ==")
    except RuntimeError:
        get_logger("postbus.test").exception("send failed", event_id="order-1")
    (line,) = _lines(stream)
    assert (line["logger"], line["level"], line["event_id"]) == ("postbus.test", "error", "order-1")
    assert "RuntimeError: refused with accesskey=***" in str(line["exception"])
    assert "c2VjcmV0LWtleQ" not in stream.getvalue()


def test_without_configuration_a_plain_stdlib_handler_reads_our_lines() -> None:
    # Given an app's own handler and formatter on our logger, and no configure_logging
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("postbus.plain")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        get_logger("postbus.plain").debug("too detailed")
        get_logger("postbus.plain").info(
            "publish", queue="notifications", note="two words", to="jane@contoso.com"
        )
        try:
            raise ValueError("boom")
        except ValueError:
            get_logger("postbus.plain").exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    # Then below-level lines never reach it, and the rest read as `event key=value`, redacted
    first, second = records
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    assert formatter.format(first) == (
        "INFO postbus.plain publish queue=notifications note='two words' to=j***@contoso.com"
    )
    assert second.exc_info is not None
    assert formatter.format(second).startswith("ERROR postbus.plain failed\nTraceback")


def test_capture_lines_collects_every_level_and_restores_the_logger() -> None:
    logger = logging.getLogger("postbus.capture")
    with capture_lines("postbus.capture") as lines:
        get_logger("postbus.capture.child").debug("detail", n=1)
        logging.getLogger("postbus.capture").warning("plain %s", "text")
    assert lines == [
        {"event": "detail", "n": 1, "level": "debug", "logger": "postbus.capture.child"},
        {"event": "plain text", "level": "warning", "logger": "postbus.capture"},
    ]
    assert logger.level == logging.NOTSET
    assert logger.handlers == []
