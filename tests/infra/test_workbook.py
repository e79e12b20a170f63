"""The Azure Monitor workbook (infra/postbus-workbook.json): valid, complete, and bound by dashboard.bicep."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKBOOK = REPO_ROOT / "infra" / "postbus-workbook.json"
DASHBOARD = REPO_ROOT / "infra" / "modules" / "dashboard.bicep"
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


def _workbook() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(WORKBOOK.read_text())
    return data


def test_workbook_is_a_notebook_with_the_pipeline_panels() -> None:
    workbook = _workbook()
    assert workbook["version"] == "Notebook/1.0"
    names = {item["name"] for item in workbook["items"]}
    assert {
        "published-vs-sent",
        "outcomes",
        "dead-letters",
        "throttling",
        "latency",
        "slo",
        "queue-depth",
        "replicas",
    } <= names
    assert len(names) == len(workbook["items"]), "item names must be unique"


def test_queries_use_only_contract_metric_names() -> None:
    queries = [i["content"]["query"] for i in _workbook()["items"] if i["type"] == 3]
    used = set(re.findall(r'"(postbus\.[a-z0-9_.]+)"', "\n".join(queries)))
    assert used <= CONTRACT_METRICS, used - CONTRACT_METRICS
    assert {"postbus.events.published", "postbus.messages.processed", "postbus.deadletters"} <= used
    assert {"postbus.throttle.events", "postbus.send.rate", "postbus.e2e.latency"} <= used


def test_metric_panels_show_queue_depth_and_replicas() -> None:
    metrics = {m["metric"] for i in _workbook()["items"] if i["type"] == 10 for m in i["content"]["metrics"]}
    assert "microsoft.servicebus/namespaces--ActiveMessages" in metrics
    assert "microsoft.app/containerapps--Replicas" in metrics


def test_every_placeholder_is_bound_by_dashboard_bicep() -> None:
    placeholders = set(re.findall(r"__[A-Z_]+__", WORKBOOK.read_text()))
    bound = set(re.findall(r"'(__[A-Z_]+__)'", DASHBOARD.read_text()))
    assert placeholders, "the workbook is not parameterised by the deployment"
    assert placeholders == bound
    assert "loadTextContent('../postbus-workbook.json')" in DASHBOARD.read_text()


def test_outcome_filters_use_the_worker_outcome_names() -> None:
    # The worker's canonical line and postbus.messages.processed carry outcome in
    # {sent, already_sent, retry_scheduled, dead_lettered, abandoned} (worker/runner.py _outcome_name).
    known = {"sent", "already_sent", "retry_scheduled", "dead_lettered", "abandoned"}
    lines = [
        line
        for item in _workbook()["items"]
        if item["type"] == 3
        for line in item["content"]["query"].splitlines()
        if "customDimensions.outcome) " in line
    ]
    compared = {value for line in lines for value in re.findall(r'"([a-z_]+)"', line)}
    assert compared, "no outcome filter found"
    assert compared <= known, compared - known


def test_each_lane_has_its_depth_and_latency_tiles() -> None:
    items = {item["name"]: item["content"] for item in _workbook()["items"]}
    depth = items["lane-depth"]
    [lanes] = [f["values"] for f in depth["filters"] if f["key"] == "EntityName"]
    assert lanes == ["__QUEUE_CRITICAL__", "__QUEUE__", "__QUEUE_BULK__"]
    assert {m["splitBy"] for m in depth["metrics"]} == {"EntityName"}
    assert "by lane" in items["lane-latency"]["query"]
    assert "customDimensions.lane" in items["lane-latency"]["query"]


def test_delivery_outcome_tiles_show_reports_over_time_by_tenant_and_type() -> None:
    items = {i["name"]: i for i in _workbook()["items"]}
    over_time = items["delivery-outcomes"]["content"]["query"]
    assert "postbus.reports.received" in over_time
    assert "bin(timestamp" in over_time
    by_tenant_type = items["delivery-outcomes-by-tenant-type"]["content"]["query"]
    assert "by tenant, type, status, bin(timestamp" in by_tenant_type
    shares = items["delivery-shares-by-tenant-type"]["content"]["query"]
    assert "slo_met" in shares
    assert "bounceFailedShare" in shares
