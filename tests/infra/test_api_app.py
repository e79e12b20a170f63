"""The ingest API's Container App, identity, alerts and workbook tile (infra/modules/api.bicep and friends)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.infra.conftest import module_body

REPO_ROOT = Path(__file__).resolve().parents[2]


def _api_app(resources: list[Any]) -> Any:
    [app] = [
        r for r in resources if r.type == "Microsoft.App/containerApps" and r.file == "modules/api.bicep"
    ]
    return app


def _env(app: Any) -> dict[str, Any]:
    env = app.config["properties"]["template"]["containers"][0]["env"]
    items = env["function"]["parameters"]["arg_1"] if isinstance(env, dict) else env
    return {e["name"]: e.get("value", e.get("secretRef")) for e in items}


def test_the_api_has_https_only_external_ingress_on_the_port_it_listens_on(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    app = _api_app(resources)
    ingress = app.config["properties"]["configuration"]["ingress"]
    assert ingress["external"] is True
    assert ingress["allowInsecure"] is False
    assert ingress["targetPort"] == "apiPort"
    assert parsed["modules/api.bicep"]["variables"]["apiPort"]["value"] == 8080
    env = _env(app)
    assert env["POSTBUS_API_HOST"] == "0.0.0.0"
    assert "apiPort" in json.dumps(env["POSTBUS_API_PORT"])
    assert app.config["properties"]["template"]["containers"][0]["args"] == ["api"]


def test_the_api_scales_on_http_concurrency_from_one_replica(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    scale = _api_app(resources).config["properties"]["template"]["scale"]
    assert scale["minReplicas"] == "minReplicas"
    params = parsed["modules/api.bicep"]["parameters"]
    assert params["minReplicas"]["default"] == 1
    [rule] = scale["rules"]
    assert "concurrentRequests" in rule["http"]["metadata"]
    assert "custom" not in rule


def test_the_api_sees_only_its_own_identity_and_no_connection_string(resources: list[Any]) -> None:
    app = _api_app(resources)
    config = app.config["properties"]["configuration"]
    lifecycles = {s["identity"]: s["lifecycle"] for s in config["identitySettings"]}
    assert lifecycles == {"apiIdentityId": "Main", "pullIdentityId": "None"}
    assert len(app.config["identity"]["userAssignedIdentities"]) == 2
    env = _env(app)
    assert env["AZURE_CLIENT_ID"] == "apiClientId"
    assert (
        env["POSTBUS_API_CLIENTS"] == "registrySecretName"
    )  # a secret reference, never a value in the template
    assert not {"POSTBUS_SERVICEBUS_CONNECTION_STRING", "POSTBUS_RECORD_ACCOUNT_KEY"} & set(env)


def test_the_registry_comes_from_key_vault_or_a_secure_parameter(parsed: dict[str, dict[str, Any]]) -> None:
    params = parsed["modules/api.bicep"]["parameters"]
    assert any(d["type"] == "secure" for d in params["clientsJson"]["decorators"])
    text = (REPO_ROOT / "infra" / "modules" / "api.bicep").read_text()
    assert "keyVaultUrl: clientsSecretUri" in text
    assert "identity: apiIdentityId" in text


def test_main_deploys_the_api_into_the_worker_environment_and_opens_it_to_https(
    parsed: dict[str, dict[str, Any]],
) -> None:
    modules = parsed["main.bicep"]["modules"]
    api = module_body(modules["api"])["params"]
    assert "worker" in json.dumps(api["environmentId"])
    assert module_body(modules["worker"])["params"]["publicIngress"] is True
    outputs = parsed["main.bicep"]["outputs"]
    assert {"SERVICE_API_NAME", "POSTBUS_API_URL", "POSTBUS_API_IDENTITY_CLIENT_ID"} <= set(outputs)
    # The environment is public only for ingress and never when it joins a private network.
    text = (REPO_ROOT / "infra" / "modules" / "worker.bicep").read_text()
    assert "publicIngress && empty(infrastructureSubnetId) ? 'Enabled' : 'Disabled'" in text


def _alert(resources: list[Any], name: str) -> dict[str, Any]:
    [alert] = [r for r in resources if r.type == "Microsoft.Insights/scheduledQueryRules" and r.name == name]
    props: dict[str, Any] = alert.config["properties"]
    return props


def test_the_api_alerts_on_its_5xx_rate_and_p95_latency(resources: list[Any]) -> None:
    errors = _alert(resources, "api5xxAlert")
    latency = _alert(resources, "apiLatencyAlert")
    for alert, column in ((errors, "failedPercent"), (latency, "p95")):
        [criterion] = alert["criteria"]["allOf"]
        query = json.dumps(criterion["query"])
        assert "requests" in query
        assert 'cloud_RoleName == \\"postbus-api\\"' in query
        assert criterion["metricMeasureColumn"] == column
        assert "actionGroupId" in json.dumps(alert["actions"])
    assert "resultCode) >= 500" in json.dumps(errors["criteria"]["allOf"][0]["query"])
    assert "percentile(duration, 95)" in json.dumps(latency["criteria"]["allOf"][0]["query"])


def test_status_reads_a_record_store_the_container_can_open(parsed: dict[str, dict[str, Any]]) -> None:
    # The image's working directory belongs to root, so the default ./.postbus/records.db cannot be created.
    [record] = parsed["modules/api.bicep"]["variables"]["recordEnv"]["value"]
    assert record["name"] == "POSTBUS_RECORD_URL"
    assert "sqlite:////tmp/" in json.dumps(record["value"])


def test_the_role_name_the_alerts_query_is_the_one_the_api_reports(resources: list[Any]) -> None:
    assert _env(_api_app(resources))["POSTBUS_SERVICE_NAME"] == "postbus-api"


def test_the_workbook_has_an_api_tile() -> None:
    workbook = json.loads((REPO_ROOT / "infra" / "postbus-workbook.json").read_text())
    items = {item["name"]: item for item in workbook["items"]}
    assert 'cloud_RoleName == "postbus-api"' in items["api"]["content"]["query"]
    assert items["api-replicas"]["content"]["resourceIds"] == ["__API_APP_ID__"]


def test_azd_deploys_the_api_service_with_the_same_api_version() -> None:
    text = (REPO_ROOT / "azure.yaml").read_text()
    api = text[text.index("  api:") :]
    assert 'apiVersion: "2026-01-01"' in api[: api.index("hooks:")]
    assert "'azd-service-name': 'api'" in (REPO_ROOT / "infra" / "modules" / "api.bicep").read_text()
