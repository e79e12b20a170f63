"""CPU microseconds per message of the per-message work around the SDKs, before and after each saving.

Each pair runs in this one process, interleaved (A, B, A, B, ...) so that a busy machine weighs on
both alike, and the median of the rounds is printed as JSON. "before" is the previous way of doing
the same work, kept here (and only here) for comparison:

- ``telemetry``: a message's spans and metrics (consumer span, ACS span, render span, counters and
  histograms) with the SDK providers and no exporter, against the unrecorded tracer and no-op meter;
- ``log_line``: the canonical ``message processed`` line through the CLI's JSON handler, redacting
  every value with all patterns twice, against redacting once and only what can hold a secret;
- ``size_check``: ``len(json.dumps(payload))`` against the bound from string lengths;
- ``lock_hold``: a task per held message (created, cancelled, awaited) against a dict entry in the
  one renewal task.

    .venv/bin/python bench/hotpath.py [--rounds 7] [--n 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from postbus import logs
from postbus.bus import Delivery
from postbus.bus.renewal import LockKeeper
from postbus.logs import configure_logging, get_logger
from postbus.telemetry import Telemetry
from postbus.telemetry.unrecorded import UnrecordedTracerProvider
from postbus.worker.mailer import oversize

EVENT_TYPE = "order.confirmation"
FIELDS = {
    "outcome": "sent",
    "message_id": "order-12345",
    "delivery_count": 0,
    "duration_ms": 123.45,
    "gate_wait_ms": 0.0,
    "acs_ms": 101.2,
    "event_id": "order-12345",
    "type": EVENT_TYPE,
    "tenant": "contoso",
    "attempt": 0,
    "recipient_domain": "example.com",
    "operation_id": "6f0b7c8e-3f4a-5d2b-9c1e-2a7d4b8e9f10",
}
PAYLOAD = {
    "senderAddress": "DoNotReply@contoso.com",
    "recipients": {"to": [{"address": "jane.doe@example.com", "displayName": "Jane Doe"}]},
    "content": {
        "subject": "Your order 12345 is confirmed",
        "html": "<html><body>" + "<p>Thank you for your order, Jane. Déjà vu.</p>" * 120 + "</body></html>",
        "plainText": "Thank you for your order, Jane.\n" * 120,
    },
    "headers": {"X-Postbus-Event-Id": "order-12345"},
    "userEngagementTrackingDisabled": True,
}


# -- telemetry ----------------------------------------------------------------------------------


def _telemetry(recorded: bool) -> Telemetry:
    if recorded:
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from opentelemetry.sdk.trace import TracerProvider

        return Telemetry(
            tracer_provider=TracerProvider(),
            meter_provider=MeterProvider(exemplar_filter=AlwaysOffExemplarFilter()),
        )
    from opentelemetry import metrics

    return Telemetry(tracer_provider=UnrecordedTracerProvider(), meter_provider=metrics.NoOpMeterProvider())


def _message_telemetry(telemetry: Telemetry, *, render_span: bool) -> None:
    properties = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    with telemetry.processing(
        queue="notifications", properties=properties, message_id="order-12345", delivery_count=0
    ) as processing:
        if render_span:
            with telemetry.tracer.start_as_current_span(f"render {EVENT_TYPE}"):
                pass
        with telemetry.acs_send(operation_id="op") as call:
            call.result = "accepted"
        telemetry.record_accepted(datetime.now(UTC), event_type=EVENT_TYPE, tenant="contoso")
        processing.finish(outcome="sent", event_id="order-12345", event_type=EVENT_TYPE, tenant="contoso")


# -- log line -----------------------------------------------------------------------------------


def _redact_every_value_with_every_pattern(text: str) -> str:
    for pattern in logs._SECRET_PATTERNS:
        text = pattern.sub(logs._redacted, text)
    if "@" in text:
        text = logs._EMAIL_IN_TEXT.sub(r"\1***@\2", text)
    return text


@contextlib.contextmanager
def _old_redaction() -> Iterator[None]:
    """The previous log path: every pattern on every value, in the chain and again in the formatter."""
    redact, foreign = logs.redact, logs._redact_foreign
    logs.redact = _redact_every_value_with_every_pattern
    logs._redact_foreign = logs._redact_values
    configure_logging(level="info", fmt="json", stream=_devnull())
    try:
        yield
    finally:
        logs.redact, logs._redact_foreign = redact, foreign
        configure_logging(level="info", fmt="json", stream=_devnull())


def _devnull() -> Any:
    return open(os.devnull, "w")


# -- one measurement ----------------------------------------------------------------------------


def _us_per_call(call: Callable[[], object], n: int) -> float:
    started = time.process_time()
    for _ in range(n):
        call()
    return (time.process_time() - started) * 1e6 / n


async def _lock_holds(n: int, *, per_message_task: bool) -> float:
    """Microseconds to hold and release one message's lock, for ``n`` messages 256 at a time."""
    locked_until = datetime.now(UTC) + timedelta(minutes=1)

    class _Message:
        locked_until_utc = locked_until

    deliveries = [
        Delivery(
            body=b"", content_type=None, application_properties={}, message_id=f"m{i}", handle=_Message()
        )
        for i in range(256)
    ]

    async def renew(_delivery: Delivery) -> None:
        return None

    async def sleeper() -> None:
        await asyncio.sleep(30)

    keeper = LockKeeper(renew)
    started = time.process_time()
    for start in range(0, n, 256):
        batch = deliveries[: min(256, n - start)]
        if per_message_task:
            tasks = [asyncio.create_task(sleeper()) for _ in batch]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        else:
            holds = [keeper.hold(delivery, up_to=300) for delivery in batch]
            for hold in holds:
                await hold.__aenter__()
            await asyncio.sleep(0)
            for hold in holds:
                await hold.__aexit__(None, None, None)
    elapsed = time.process_time() - started
    await keeper.close()
    return elapsed * 1e6 / n


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    configure_logging(level="info", fmt="json", stream=_devnull())
    logging.getLogger("postbus.bench").setLevel(logging.INFO)
    log = get_logger("postbus.bench")
    old_tel, new_tel = _telemetry(recorded=True), _telemetry(recorded=False)

    def log_line() -> None:
        log.info("message processed", **FIELDS)

    pairs: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {
        "telemetry": (
            lambda: _us_per_call(lambda: _message_telemetry(old_tel, render_span=True), args.n),
            lambda: _us_per_call(lambda: _message_telemetry(new_tel, render_span=False), args.n),
        ),
        "log_line": (
            lambda: _with(_old_redaction, lambda: _us_per_call(log_line, args.n)),
            lambda: _us_per_call(log_line, args.n),
        ),
        "size_check": (
            lambda: _us_per_call(lambda: len(json.dumps(PAYLOAD)), args.n),
            lambda: _us_per_call(lambda: oversize(PAYLOAD, 10 * 1024 * 1024), args.n),
        ),
        "lock_hold": (
            lambda: asyncio.run(_lock_holds(args.n, per_message_task=True)),
            lambda: asyncio.run(_lock_holds(args.n, per_message_task=False)),
        ),
    }
    samples: dict[str, dict[str, list[float]]] = {name: {"before": [], "after": []} for name in pairs}
    with structlog.contextvars.bound_contextvars(message_id="order-12345", delivery_count=0):
        for round_no in range(args.rounds):
            for name, (before, after) in pairs.items():
                order = [("before", before), ("after", after)]
                for label, measure in order if round_no % 2 == 0 else order[::-1]:
                    samples[name][label].append(measure())
    report: dict[str, Any] = {
        "benchmark": "hotpath",
        "unit": "us_per_message",
        "load_average": os.getloadavg(),
    }
    for name, runs in samples.items():
        before, after = statistics.median(runs["before"]), statistics.median(runs["after"])
        report[name] = {
            "before": round(before, 1),
            "after": round(after, 1),
            "saved": round(before - after, 1),
        }
    print(json.dumps(report, indent=2))


def _with(
    context: Callable[[], contextlib.AbstractContextManager[None]], measure: Callable[[], float]
) -> float:
    with context():
        return measure()


if __name__ == "__main__":
    main()
