"""Alerts, diagnostic settings and the action group: what pages whom, and where the logs land."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.infra.bicep_eval import Scope, accessor, evaluate
from tests.infra.conftest import module_body

CONTRACT_METRICS = {
    "postbus.messages.processed",
    "postbus.acs.send.duration",
    "postbus.e2e.latency",
    "postbus.retries.scheduled",
    "postbus.throttle.events",
    "postbus.send.rate",
    "postbus.deadletters",
    "postbus.inflight",
    "postbus.breaker.state",
    "postbus.events.published",
    "postbus.records.writes",
    "postbus.records.write.failures",
    "postbus.reports.received",
    "postbus.delivery.latency",
}


def _of_type(resources: list[Any], arm_type: str) -> list[Any]:
    return [r for r in resources if r.type.lower() == arm_type.lower()]


def _log_alerts(resources: list[Any]) -> dict[str, Any]:
    return {
        a.name: a.config["properties"] for a in _of_type(resources, "Microsoft.Insights/scheduledQueryRules")
    }


def _query(alert: dict[str, Any]) -> str:
    return json.dumps(alert["criteria"]["allOf"][0]["query"])


def test_every_alert_notifies_the_action_group(resources: list[Any]) -> None:
    alerts = [
        *_of_type(resources, "Microsoft.Insights/metricAlerts"),
        *_of_type(resources, "Microsoft.Insights/scheduledQueryRules"),
    ]
    # Eight on the pipeline (the backlog alert is one per lane), two on delivery reports (bounce
    # share, delivery SLO), two on the ingest API (test_api_app.py).
    assert len(alerts) == 12
    for alert in alerts:
        assert "actionGroupId" in json.dumps(alert.config["properties"]["actions"]), alert.name
        assert alert.config["properties"]["enabled"] is True, alert.name


def test_alert_queries_read_only_metrics_the_pipeline_emits(resources: list[Any]) -> None:
    text = " ".join(_query(alert) for alert in _log_alerts(resources).values())
    names = set(re.findall(r"postbus\.[a-z0-9_.]*[a-z0-9]", text))
    assert {
        "postbus.throttle.events",
        "postbus.e2e.latency",
        "postbus.deadletters",
        "postbus.breaker.state",
    } <= names
    assert names <= CONTRACT_METRICS


def test_dead_letters_alert_on_each_new_one_not_on_a_count_that_stays_up(resources: list[Any]) -> None:
    # A metric alert on DeadletteredMessages fires once and stays fired while the DLQ holds anything.
    assert not [
        a
        for a in _of_type(resources, "Microsoft.Insights/metricAlerts")
        if "DeadletteredMessages" in json.dumps(a.config["properties"]["criteria"])
    ]
    alert = _log_alerts(resources)["deadLetterAlert"]
    [criterion] = alert["criteria"]["allOf"]
    assert "postbus.deadletters" in criterion["query"]
    assert "sum(valueSum)" in criterion["query"]  # the counter's increments in the window, not a level
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0)
    # One alert per reason: a second cause notifies while the first is still open.
    assert criterion["dimensions"] == [{"name": "reason", "operator": "Include", "values": ["*"]}]
    assert alert["windowSize"] == alert["evaluationFrequency"] == "PT5M"


def test_messages_waiting_with_no_worker_page_within_minutes(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    alerts = parsed["modules/alerts.bicep"]
    alert = _log_alerts(resources)["stalledAlert"]
    # Given the queue depth (namespace metrics in the workspace) and the workers' heartbeat (their metrics)
    assert alert["scopes"] == ["workspaceId"]
    assert accessor(module_body(parsed["main.bicep"]["modules"]["alerts"])["params"]["workspaceId"]) == [
        "monitoring",
        "outputs",
        "workspaceId",
    ]
    query = _query(alert)
    for needed in ("AzureMetrics", "ActiveMessages", "AppMetrics", "postbus.breaker.state", "namespaceId"):
        assert needed in query, needed
    # Then it fires within minutes, long before the backlog alert's 15-minute minimum could
    window = Scope(alerts)["stalledMinutes"]
    assert 5 <= window <= 15
    assert alert["windowSize"] == "PT${stalledMinutes}M"
    assert alert["evaluationFrequency"] == "PT5M"
    assert alert["severity"] <= 1
    [criterion] = alert["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == (
        "Count",
        "GreaterThan",
        0,
    )


def test_the_latency_alert_says_it_is_silent_when_nothing_is_sent(resources: list[Any]) -> None:
    alert = _log_alerts(resources)["latencySloAlert"]
    assert "postbus.e2e.latency" in _query(alert)
    assert "stalled" in alert["description"]


def test_the_throttle_and_exception_alerts_remain(resources: list[Any]) -> None:
    alerts = _log_alerts(resources)
    assert "postbus.throttle.events" in _query(alerts["throttleAlert"])
    assert json.loads(_query(alerts["exceptionAlert"])).strip().startswith("exceptions")


def _diagnostics(resources: list[Any]) -> dict[str, Any]:
    return {
        f"{d.file}:{d.config['scope']}": d.config["properties"]
        for d in _of_type(resources, "Microsoft.Insights/diagnosticSettings")
    }


def test_every_diagnostic_setting_writes_to_the_workspace(resources: list[Any]) -> None:
    settings = _diagnostics(resources)
    assert set(settings) == {
        "modules/messaging.bicep:namespace",
        "modules/email.bicep:communicationService",
        "modules/worker.bicep:environment",
        # Reads and writes of the delivery record, and Event Grid's dead-letter blobs.
        "modules/records.bicep:tableService",
        "modules/records.bicep:blobService",
    }
    assert {s["workspaceId"] for s in settings.values()} == {"workspaceId"}


def test_service_bus_logs_go_to_resource_specific_tables(resources: list[Any]) -> None:
    # Not the legacy AzureDiagnostics table that every resource shares.
    assert (
        _diagnostics(resources)["modules/messaging.bicep:namespace"]["logAnalyticsDestinationType"]
        == "Dedicated"
    )


def test_email_send_and_delivery_logs_reach_log_analytics(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    categories = {
        log["category"] for log in _diagnostics(resources)["modules/email.bicep:communicationService"]["logs"]
    }
    assert {"EmailSendMailOperational", "EmailStatusUpdateOperational"} <= categories
    params = module_body(parsed["main.bicep"]["modules"]["email"])["params"]
    assert accessor(params["workspaceId"]) == ["monitoring", "outputs", "workspaceId"]


@pytest.mark.parametrize(("email", "receivers"), [("", 0), ("oncall@contoso.com", 1)])
def test_an_action_group_without_receivers_is_an_output(
    parsed: dict[str, dict[str, Any]], email: str, receivers: int
) -> None:
    monitoring = parsed["modules/monitoring.bicep"]
    scope = Scope(monitoring, alertEmail=email)
    assert evaluate(monitoring["outputs"]["actionGroupReceivers"]["value"], scope) == receivers
    output = parsed["main.bicep"]["outputs"]["POSTBUS_ALERT_RECEIVERS"]["value"]
    assert accessor(output) == ["monitoring", "outputs", "actionGroupReceivers"]


def test_each_lane_has_a_backlog_alert_and_critical_its_own_tighter_one(resources: list[Any]) -> None:
    backlog = {
        alert.name: alert.config["properties"]
        for alert in _of_type(resources, "Microsoft.Insights/metricAlerts")
        if alert.config["properties"]["criteria"]["allOf"][0]["metricName"] == "ActiveMessages"
    }
    lanes = {
        name: props["criteria"]["allOf"][0]["dimensions"][0]["values"] for name, props in backlog.items()
    }
    assert lanes == {
        "backlogAlert": ["queueName"],
        "bulkBacklogAlert": ["bulkQueueName"],
        "criticalBacklogAlert": ["criticalQueueName"],
    }
    critical = backlog["criticalBacklogAlert"]
    criterion = critical["criteria"]["allOf"][0]
    # Any critical message left waiting for the whole window fires it, checked every minute, at a higher severity.
    assert (criterion["threshold"], criterion["timeAggregation"]) == (0, "Minimum")
    assert critical["evaluationFrequency"] == "PT1M"
    assert critical["severity"] < backlog["backlogAlert"]["severity"]


def test_delivery_outcomes_alert_on_the_bounce_share_and_the_delivery_slo(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    alerts = _log_alerts(resources)
    scope = Scope(parsed["modules/alerts.bicep"])
    bounce = alerts["bounceAlert"]
    [criterion] = bounce["criteria"]["allOf"]
    query = _query(bounce)
    assert "postbus.reports.received" in query
    assert "sumif(valueSum, status in (" in query  # the numerator: bounced and failed reports
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", "bounceAlertPermille")
    assert scope["bounceAlertPermille"] == 20  # 2 %
    slo = alerts["deliverySloAlert"]
    [criterion] = slo["criteria"]["allOf"]
    query = _query(slo)
    # The within-SLO count is the histogram's exact count with slo_met, not an estimate from buckets
    assert "postbus.delivery.latency" in query
    assert "slo_met" in query
    assert (criterion["operator"], criterion["threshold"]) == ("LessThan", "sloTargetPermille")
    assert scope["sloTargetPermille"] == 970  # 97 %
    for alert in (bounce, slo):
        assert alert["windowSize"] == "PT1H"
