"""What the templates compute from their parameters, evaluated on pycep's parse (see bicep_eval.py).

Each decision the issue tracker found wrong is pinned here as a table of parameter values and results:
the send quota follows the sending domain, sender usernames wait for a verified domain with raised limits,
the backlog alert is sized from the quota, and private networking switches the tiers that need Premium.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.bicep_eval import Scope, accessor, evaluate
from tests.infra.conftest import module_body

CUSTOM = "notify.contoso.com"

# (custom domain, verified, raised per minute, raised per hour) -> (per minute, per hour, sender usernames created)
QUOTAS = [
    pytest.param(("", False, 0, 0), (5, 10, False), id="azure-managed"),
    pytest.param((CUSTOM, False, 0, 0), (5, 10, False), id="custom-not-yet-verified"),
    pytest.param((CUSTOM, True, 0, 0), (30, 100, False), id="custom-verified-default-limits"),
    pytest.param((CUSTOM, True, 1000, 60000), (1000, 60000, True), id="custom-verified-raised"),
    pytest.param((CUSTOM, True, 1000, 0), (30, 100, False), id="custom-raised-half-given"),
    pytest.param((CUSTOM, False, 1000, 60000), (5, 10, False), id="raised-but-not-verified"),
    pytest.param(("", False, 1000, 60000), (5, 10, False), id="raised-without-custom-domain"),
]


def _email(
    parsed: dict[str, dict[str, Any]], domain: str, verified: bool, per_minute: int, per_hour: int
) -> Scope:
    return Scope(
        parsed["modules/email.bicep"],
        customDomainName=domain,
        customDomainVerified=verified,
        raisedQuotaPerMinute=per_minute,
        raisedQuotaPerHour=per_hour,
        senderUsernames=[{"username": "orders", "displayName": "Contoso Orders"}],
    )


def _output(parsed: dict[str, dict[str, Any]], file: str, name: str, scope: Scope) -> Any:
    return evaluate(parsed[file]["outputs"][name]["value"], scope)


@pytest.mark.parametrize(("given", "expected"), QUOTAS)
def test_the_worker_quota_is_that_of_the_domain_it_sends_from(
    parsed: dict[str, dict[str, Any]], given: tuple[str, bool, int, int], expected: tuple[int, int, bool]
) -> None:
    scope = _email(parsed, *given)
    per_minute = _output(parsed, "modules/email.bicep", "quotaPerMinute", scope)
    per_hour = _output(parsed, "modules/email.bicep", "quotaPerHour", scope)
    assert (per_minute, per_hour) == expected[:2]


@pytest.mark.parametrize(("given", "expected"), QUOTAS)
def test_sender_usernames_wait_for_a_verified_domain_with_raised_limits(
    parsed: dict[str, dict[str, Any]], given: tuple[str, bool, int, int], expected: tuple[int, int, bool]
) -> None:
    # ACS refuses custom sender usernames on a domain that still has the default limits; creating them earlier
    # would fail the whole provisioning run.
    scope = _email(parsed, *given)
    loop = parsed["modules/email.bicep"]["resources"]["customSenders"]["config"]["loop_type"]["detail"]
    created = evaluate(loop["array_name"], scope)
    assert bool(created) is expected[2]
    assert _output(parsed, "modules/email.bicep", "senderUsernamesCreated", scope) is expected[2]


def test_main_passes_the_domain_quota_to_the_worker_and_the_alerts(parsed: dict[str, dict[str, Any]]) -> None:
    modules = parsed["main.bicep"]["modules"]
    for module in ("worker", "alerts"):
        params = module_body(modules[module])["params"]
        assert accessor(params["quotaPerMinute"]) == ["email", "outputs", "quotaPerMinute"], module
        assert accessor(params["quotaPerHour"]) == ["email", "outputs", "quotaPerHour"], module
    # No parameter of main.bicep sets the worker's quota directly any more: it would drift from the domain.
    assert not {"acsQuotaPerMinute", "acsQuotaPerHour"} & set(parsed["main.bicep"]["parameters"])
    worker_params = parsed["modules/worker.bicep"]["parameters"]
    assert worker_params["quotaPerMinute"]["default"] is None
    assert worker_params["quotaPerHour"]["default"] is None


@pytest.mark.parametrize(
    ("quota", "override", "expected"),
    [
        pytest.param((5, 10), 0, 2, id="azure-managed: 10/hour drains 2 in 15 min"),
        pytest.param((30, 100), 0, 25, id="custom default: 100/hour drains 25"),
        pytest.param((1000, 60000), 0, 15000, id="raised: 1000/min drains 15000"),
        pytest.param((1000, 600000), 0, 15000, id="per-minute limit binds"),
        pytest.param((1, 1), 0, 1, id="never below one"),
        pytest.param((5, 10), 500, 500, id="explicit threshold wins"),
    ],
)
def test_the_backlog_alert_fires_on_what_the_quota_cannot_drain_in_15_minutes(
    parsed: dict[str, dict[str, Any]], quota: tuple[int, int], override: int, expected: int
) -> None:
    alerts = parsed["modules/alerts.bicep"]
    scope = Scope(alerts, quotaPerMinute=quota[0], quotaPerHour=quota[1], backlogThresholdOverride=override)
    assert scope["backlogThreshold"] == expected
    backlogs = {
        name: r
        for name, r in alerts["resources"].items()
        if r["config"]["properties"].get("criteria", {}).get("allOf", [{}])[0].get("metricName")
        == "ActiveMessages"
    }
    # The normal and bulk lanes drain at the quota; the critical lane has its own bound (test_monitoring).
    assert set(backlogs) == {"backlogAlert", "bulkBacklogAlert", "criticalBacklogAlert"}
    for name in ("backlogAlert", "bulkBacklogAlert"):
        criterion = backlogs[name]["config"]["properties"]["criteria"]["allOf"][0]
        assert criterion["threshold"] == "backlogThreshold"
        assert criterion["timeAggregation"] == "Minimum"
    assert parsed["main.bicep"]["parameters"]["backlogAlertThreshold"]["default"] == 0


@pytest.mark.parametrize("private", [False, True])
def test_private_networking_moves_service_bus_and_the_registry_to_premium(
    parsed: dict[str, dict[str, Any]], private: bool
) -> None:
    main = Scope(parsed["main.bicep"], privateNetworking=private, serviceBusSku="Standard")
    assert main["effectiveServiceBusSku"] == ("Premium" if private else "Standard")
    assert main["registryTier"] == ("Premium" if private else "Standard")
    modules = parsed["main.bicep"]["modules"]
    assert module_body(modules["messaging"])["params"]["sku"] == "effectiveServiceBusSku"
    assert module_body(modules["registry"])["params"]["registrySku"] == "registryTier"
    # Service Bus refuses public traffic only when it has a private endpoint, which needs Premium.
    messaging = Scope(
        parsed["modules/messaging.bicep"], privateOnly=private, sku=main["effectiveServiceBusSku"]
    )
    namespace = parsed["modules/messaging.bicep"]["resources"]["namespace"]["config"]
    assert evaluate(namespace["properties"]["publicNetworkAccess"], messaging) == (
        "Disabled" if private else "Enabled"
    )
    standard_private = Scope(parsed["modules/messaging.bicep"], privateOnly=True, sku="Standard")
    assert evaluate(namespace["properties"]["publicNetworkAccess"], standard_private) == "Enabled"


def test_private_networking_gives_service_bus_and_the_registry_endpoints_in_the_vnet(
    parsed: dict[str, dict[str, Any]],
) -> None:
    modules = parsed["main.bicep"]["modules"]
    endpoints = {
        name: module
        for name, module in modules.items()
        if module["detail"]["path"] == "modules/private-endpoint.bicep"
    }
    assert {module_body(m)["params"]["groupId"] for m in endpoints.values()} == {"namespace", "registry"}
    for name, module in [*endpoints.items(), ("network", modules["network"])]:
        assert module["config"]["condition"] == "privateNetworking", name
    # The environment joins the network's apps subnet; without private networking it gets none.
    assert "appsSubnetId" in str(module_body(modules["worker"])["params"]["infrastructureSubnetId"])
    network = parsed["modules/network.bicep"]
    [vnet] = [r for r in network["resources"].values() if r["type"] == "Microsoft.Network/virtualNetworks"]
    subnets = {s["name"]: s["properties"] for s in vnet["config"]["properties"]["subnets"]}
    assert subnets["apps"]["delegations"][0]["properties"]["serviceName"] == "Microsoft.App/environments"
    assert subnets["endpoints"]["privateEndpointNetworkPolicies"] == "Disabled"
    assert all("networkSecurityGroup" in s for s in subnets.values())
    zones = Scope(network)["zoneList"]
    assert len(zones) == len(set(zones)) == 4
    # One zone id output per service, for the endpoints main.bicep (and modules added later) create.
    assert set(network["outputs"]["zoneIds"]["value"]) == {"serviceBus", "registry", "blob", "table"}
