"""What Application Insights shows for an ACS send, a producer, and live metrics, through the real distro.

Each scenario runs in a fresh interpreter configured only by its connection string, exporting to the
stand-in ingestion endpoint (``ingestion.py``). The test reads the envelopes that arrived, which are
what the portal's application map, dependency list and metrics charts are built from.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.unit.telemetry.ingestion import run_child, stand_in_ingestion

IKEY = "InstrumentationKey=00000000-0000-4000-8000-000000000000"
ACS_ENDPOINT = "https://contoso-mail.communication.azure.com"

_WORKER_SENDS = textwrap.dedent(
    """
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry

    class Throttled(Exception):
        pass

    class SdkError(Exception):
        status_code = 429

    telemetry = configure_telemetry(load_settings())
    with telemetry.processing(queue="notifications", properties={}, message_id="o-1", delivery_count=0) as p:
        with telemetry.acs_send(operation_id="op-1") as call:
            call.result = "accepted"
        try:
            with telemetry.acs_send(operation_id="op-2"):
                try:
                    raise SdkError("Too many requests")
                except SdkError as exc:
                    raise Throttled("ACS throttled the send (429)") from exc
        except Throttled:
            pass
        p.finish(outcome="sent", event_id="o-1", event_type="order.confirmation", tenant="contoso")
    telemetry.shutdown()
    """
)

_PRODUCER_PUBLISHES = textwrap.dedent(
    """
    from postbus.events import parse_event
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry

    telemetry = configure_telemetry(load_settings())
    event = parse_event({"id": "o-1", "type": "order.confirmation", "tenant": "contoso",
                         "to": ["jane@example.com"], "sender": "orders", "data": {}})
    publishing = telemetry.publishing("notifications")
    publishing.properties(event)
    publishing.finish({"o-1"})
    telemetry.shutdown()
    """
)

_LIVE_METRICS_PROBE = textwrap.dedent(
    """
    import json, os, sys
    from azure.monitor.opentelemetry.exporter._quickpulse._state import get_quickpulse_manager
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry

    configure_telemetry(load_settings())
    sys.stdout.write(json.dumps({"live_metrics": get_quickpulse_manager().is_initialized()}))
    sys.stdout.flush()
    os._exit(0)  # nothing to flush: only the decision is under test
    """
)


def test_an_acs_send_is_an_http_dependency_on_the_acs_host() -> None:
    # Given a worker whose settings name the ACS endpoint, sending once and being throttled once
    with stand_in_ingestion() as ingestion:
        done = run_child(
            _WORKER_SENDS,
            f"{IKEY};IngestionEndpoint={ingestion.endpoint}",
            POSTBUS_ACS_ENDPOINT=ACS_ENDPOINT,
            POSTBUS_SERVICE_NAME="postbus-worker",
        )
    assert done.returncode == 0, done.stderr
    # Then each send is an HTTP dependency whose target is the ACS host: a node on the application map
    dependencies = {
        item["data"]["baseData"]["properties"]["postbus.operation_id"]: item["data"]["baseData"]
        for item in ingestion.by_type()["RemoteDependencyData"]
    }
    accepted, throttled = dependencies["op-1"], dependencies["op-2"]
    for dependency in (accepted, throttled):
        assert dependency["type"] == "HTTP"
        assert dependency["target"] == "contoso-mail.communication.azure.com"
        assert dependency["name"] == "POST /emails:send"
        assert dependency["data"] == f"{ACS_ENDPOINT}/emails:send"
    assert (accepted["resultCode"], accepted["success"]) == ("202", True)
    assert (throttled["resultCode"], throttled["success"]) == ("429", False)
    assert throttled["properties"]["postbus.acs.result"] == "Throttled"
    # And the consumer span that holds them is the request in the same operation
    (request,) = ingestion.by_type()["RequestData"]
    assert request["data"]["baseData"]["name"] == "notifications process"


def test_a_producer_exports_no_in_flight_gauge() -> None:
    # Given a process that only publishes
    with stand_in_ingestion() as ingestion:
        done = run_child(_PRODUCER_PUBLISHES, f"{IKEY};IngestionEndpoint={ingestion.endpoint}")
    assert done.returncode == 0, done.stderr
    # Then its metrics count what it published and hold no always-zero worker gauge
    metrics = ingestion.metrics()
    assert metrics["postbus.events.published"] == {"type": "order.confirmation", "tenant": "contoso"}
    assert "postbus.inflight" not in metrics
    assert not any(name.startswith(("postbus.breaker", "postbus.send.rate")) for name in metrics)


@pytest.mark.parametrize(
    ("live_endpoint", "expected"),
    [("", False), (";LiveEndpoint=http://127.0.0.1:9/", True)],
    ids=["no-live-endpoint", "live-endpoint"],
)
def test_live_metrics_run_only_when_the_connection_string_names_an_endpoint(
    live_endpoint: str, expected: bool
) -> None:
    # Without a LiveEndpoint the exporter would poll a global host it may not reach, logging an
    # error with a traceback every few seconds; so live metrics stay off unless one is named.
    done = run_child(_LIVE_METRICS_PROBE, f"{IKEY};IngestionEndpoint=http://127.0.0.1:9/{live_endpoint}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"live_metrics": expected}
