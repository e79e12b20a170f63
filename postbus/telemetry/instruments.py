"""The tracer and the ``postbus`` meter of one process: :class:`Telemetry`.

Metric names are a contract with the workbook and alerts in ``infra/`` and with ``docs/runbook.md``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind

from postbus.telemetry.spans import (
    Processing,
    PublishTrace,
    SendCall,
    acs_request_attributes,
    parent_context,
)

__all__ = ["BREAKER_STATE_CODES", "METER_NAME", "SLO_SECONDS", "TRACER_NAME", "Exporter", "Telemetry"]

#: Where telemetry goes: chosen once per process by ``configure_telemetry``.
Exporter = Literal["azure_monitor", "otlp", "none"]

METER_NAME: Final = "postbus"
TRACER_NAME: Final = "postbus"
#: The latency objective of the healthcare reminders: 97 % of events at ACS within five minutes.
SLO_SECONDS: Final = 300.0
#: Values of the ``postbus.breaker.state`` gauge, by ``worker.breaker.BreakerState`` value.
BREAKER_STATE_CODES: Final = {"closed": 0, "half_open": 1, "open": 2}

# Buckets for exporters that keep them (OTLP); Application Insights keeps count/sum/min/max only.
_ACS_BUCKETS_MS: Final = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000)
_E2E_BUCKETS_MS: Final = (1000, 5000, 15_000, 30_000, 60_000, 120_000, 240_000, 300_000, 600_000, 1_800_000)


class _Watched:
    __slots__ = ("breaker_state", "send_rate")

    def __init__(self, send_rate: Callable[[], float], breaker_state: Callable[[], int]) -> None:
        self.send_rate = send_rate
        self.breaker_state = breaker_state


class Telemetry:
    """The tracer and the ``postbus`` instruments of one process (see the module docstring).

    Example::

        telemetry = configure_telemetry(settings)
        with telemetry.processing(queue="notifications", properties=props, message_id="o-1",
                                  delivery_count=0) as processing:
            ...
            processing.finish(outcome="sent", event_id="o-1", event_type="order.confirmation")
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider,
        meter_provider: metrics.MeterProvider,
        exporter: Exporter = "none",
        shutdown: Sequence[Callable[[], object]] = (),
        acs_endpoint: str | None = None,
    ) -> None:
        self.exporter: Exporter = exporter
        #: Where ACS requests go (``https://<name>.communication.azure.com``); names the dependency.
        self.acs_endpoint = acs_endpoint
        self.tracer_provider = tracer_provider
        self.meter_provider = meter_provider
        self.tracer = tracer_provider.get_tracer(TRACER_NAME)
        self._shutdown = tuple(shutdown)
        self._watched: list[_Watched] = []
        self._lock = threading.Lock()
        meter = meter_provider.get_meter(METER_NAME)
        self.messages_processed = meter.create_counter(
            "postbus.messages.processed", unit="{message}", description="Messages processed, by outcome."
        )
        self.acs_send_duration = meter.create_histogram(
            "postbus.acs.send.duration",
            unit="ms",
            description="Duration of one ACS send request.",
            explicit_bucket_boundaries_advisory=_ACS_BUCKETS_MS,
        )
        self.e2e_latency = meter.create_histogram(
            "postbus.e2e.latency",
            unit="ms",
            description="From the first enqueue of an event to ACS accepting its email (SLO metric).",
            explicit_bucket_boundaries_advisory=_E2E_BUCKETS_MS,
        )
        self.retries_scheduled = meter.create_counter(
            "postbus.retries.scheduled", unit="{message}", description="Delayed retries scheduled, by reason."
        )
        self.throttle_events = meter.create_counter(
            "postbus.throttle.events", unit="{response}", description="ACS 429 answers."
        )
        self.deadletters = meter.create_counter(
            "postbus.deadletters", unit="{message}", description="Messages dead-lettered, by reason."
        )
        #: Messages being processed now; observed at collection time, so the hot path only counts.
        self.inflight_count = 0
        # Only a process that consumes reports in-flight work: a producer's gauge would be a flat zero.
        self._consuming = False
        meter.create_observable_up_down_counter(
            "postbus.inflight",
            callbacks=[self._observe_inflight],
            unit="{message}",
            description="Messages being processed now.",
        )
        self.reconnects = meter.create_counter(
            "postbus.reconnects",
            unit="{reconnect}",
            description="Times a worker replaced its Service Bus links, by cause.",
        )
        self.events_published = meter.create_counter(
            "postbus.events.published", unit="{event}", description="Events published to the queue."
        )
        self.record_writes = meter.create_counter(
            "postbus.records.writes",
            unit="{write}",
            description="Delivery-record writes by the worker, by record outcome.",
        )
        self.record_write_failures = meter.create_counter(
            "postbus.records.write.failures",
            unit="{write}",
            description="Delivery-record writes that failed after every try (the message was settled anyway).",
        )
        self.reports_received = meter.create_counter(
            "postbus.reports.received",
            unit="{report}",
            description="ACS delivery and engagement reports consumed, by status, type and tenant.",
        )
        self.delivery_latency = meter.create_histogram(
            "postbus.delivery.latency",
            unit="ms",
            description="From the first enqueue of an event to ACS reporting it delivered (SLO metric).",
            explicit_bucket_boundaries_advisory=_E2E_BUCKETS_MS,
        )
        meter.create_observable_gauge(
            "postbus.send.rate",
            callbacks=[self._observe_send_rate],
            unit="{email}/s",
            description="Sends per second the rate gate currently permits.",
        )
        meter.create_observable_gauge(
            "postbus.breaker.state",
            callbacks=[self._observe_breaker],
            unit="1",
            description="Circuit breaker: 0 closed, 1 half-open, 2 open.",
        )

    # ---- consumer side ---------------------------------------------------------------------------

    def processing(
        self, *, queue: str, properties: Mapping[Any, Any], message_id: str, delivery_count: int
    ) -> Processing:
        """The ``<queue> process`` span of one received message, parented to its producer."""
        self._consuming = True
        span = self.tracer.start_span(
            f"{queue} process",
            context=parent_context(properties),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "servicebus",
                "messaging.destination.name": queue,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.message.id": message_id,
                "messaging.servicebus.message.delivery_count": delivery_count,
                # messaging.* attributes are not copied to Application Insights' customDimensions.
                "postbus.message_id": message_id,
            },
        )
        return Processing(self, span)

    def acs_send(self, *, operation_id: str, server: str | None = None) -> SendCall:
        """The ``acs send`` CLIENT span around one ACS request (``POST <endpoint>/emails:send``).

        ``server`` is the ACS endpoint (URL or host name) the request goes to; by default the one the
        settings name (:attr:`acs_endpoint`). With an endpoint the span carries the HTTP client
        attributes (``server.address``, ``url.full``, ``http.request.method``, and the response
        status on exit), so Application Insights records an HTTP dependency on the ACS host and the
        application map draws it as a node.
        """
        attributes: dict[str, str | int] = {"postbus.operation_id": operation_id}
        attributes |= acs_request_attributes(server or self.acs_endpoint)
        return SendCall(self, self.tracer.start_span("acs send", kind=SpanKind.CLIENT, attributes=attributes))

    def record_accepted(
        self, first_enqueued: datetime | None, *, event_type: str, tenant: str, lane: str = ""
    ) -> None:
        """ACS accepted an email: record the end-to-end latency from the event's first enqueue (by lane, with lanes)."""
        if first_enqueued is None:
            return
        latency_ms = max(0.0, (datetime.now(UTC) - first_enqueued).total_seconds() * 1000)
        self.e2e_latency.record(
            latency_ms,
            {
                "type": event_type,
                "tenant": tenant,
                "slo_met": "true" if latency_ms <= SLO_SECONDS * 1000 else "false",
                **({"lane": lane} if lane else {}),
            },
        )

    def record_write(self, outcome: str, *, ok: bool) -> None:
        """The worker wrote (or, after every try, failed to write) a delivery-record update."""
        (self.record_writes if ok else self.record_write_failures).add(1, {"outcome": outcome})

    def record_report(
        self, status: str, *, latency_seconds: float | None = None, event_type: str = "", tenant: str = ""
    ) -> None:
        """A delivery or engagement report was consumed (``status``: ``Delivered``, ``view``, ...).

        ``latency_seconds`` (first enqueue to delivery) goes to ``postbus.delivery.latency`` with
        ``slo_met``, so the within-SLO count is exact: it is the histogram's count for ``slo_met=true``,
        never an estimate from buckets.
        """
        self.reports_received.add(1, {"status": status, "type": event_type, "tenant": tenant})
        if latency_seconds is None:
            return
        latency_ms = max(0.0, latency_seconds * 1000)
        self.delivery_latency.record(
            latency_ms,
            {
                "type": event_type,
                "tenant": tenant,
                "slo_met": "true" if latency_ms <= SLO_SECONDS * 1000 else "false",
            },
        )

    def record_throttle(self) -> None:
        """ACS answered 429."""
        self.throttle_events.add(1)

    def record_reconnect(self, cause: str) -> None:
        """The worker replaced its Service Bus links (``receive_failed``, ``stalled``, ``open_failed``)."""
        self.reconnects.add(1, {"cause": cause})

    # ---- producer side ---------------------------------------------------------------------------

    def publishing(self, queue: str) -> PublishTrace:
        """Producer spans for one publish call (see :class:`PublishTrace`)."""
        return PublishTrace(self, queue)

    # ---- gauges ----------------------------------------------------------------------------------

    def watch(
        self, *, send_rate: Callable[[], float], breaker_state: Callable[[], int]
    ) -> Callable[[], None]:
        """Observe a worker's gate rate and breaker state; returns the function that stops it."""
        watched = _Watched(send_rate, breaker_state)
        with self._lock:
            self._watched.append(watched)

        def unwatch() -> None:
            with self._lock:
                if watched in self._watched:
                    self._watched.remove(watched)

        return unwatch

    def _observe_send_rate(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            rates = [watched.send_rate() for watched in self._watched]
        # "Unlimited" (no quota configured) has no number to chart.
        return [Observation(rate) for rate in rates if math.isfinite(rate)]

    def _observe_inflight(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(self.inflight_count)] if self._consuming else []

    def _observe_breaker(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            return [Observation(watched.breaker_state()) for watched in self._watched]

    def shutdown(self) -> None:
        """Flush and stop the providers this object created (nothing for providers passed in)."""
        for stop in self._shutdown:
            stop()
