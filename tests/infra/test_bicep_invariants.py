"""Invariants of the Bicep templates, asserted on pycep's parse (identities, roles, network and alert rules; docs/deploy-azure.md).

What a reviewer would otherwise check by eye: queue safety settings, Entra-only auth, the KEDA rule shape,
least-privilege role assignments with documented built-in roles, no secrets, and the shutdown grace ordering.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"
EMULATOR_CONFIG = REPO_ROOT / "emulators" / "servicebus" / "Config.json"

# The only built-in role definitions any assignment may use (docs/deploy-azure.md lists who gets which).
BUILT_IN_ROLES = {
    "4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0": "Azure Service Bus Data Receiver",
    "69a216fc-b8fb-44d8-bc22-1f3c2cd27a39": "Azure Service Bus Data Sender",
    "090c5cfd-751d-490a-894a-3ce6f1109419": "Azure Service Bus Data Owner",
    "09976791-48a7-449e-bb21-39d1a415f350": "Communication and Email Service Owner",
    "7f951dda-4ed3-4680-a7ca-43fe172d538d": "AcrPull",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    # The ingest API reads the delivery record's table (docs/deploy-azure.md, identities and roles).
    "76199698-9eea-4c19-bc75-cec21354c6b6": "Storage Table Data Reader",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1": "Storage Blob Data Reader",
}
GUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.IGNORECASE)
ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")


def _seconds(duration: str) -> int:
    match = ISO_DURATION.match(duration)
    assert match, f"not an ISO 8601 duration: {duration!r}"
    days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return ((days * 24 + hours) * 60 + minutes) * 60 + seconds


def _of_type(resources: list[Any], arm_type: str) -> list[Any]:
    return [r for r in resources if r.type.lower() == arm_type.lower()]


def _accessor(expr: Any) -> list[str] | None:
    """`a.b.c` as ['a', 'b', 'c'] (pycep nests property accessors to the right)."""
    if isinstance(expr, str):
        return [expr]
    op = expr.get("operator", {}) if isinstance(expr, dict) else {}
    if op.get("type") == "property_accessor":
        head = op["operands"]["operand_1"]
        rest = _accessor(op["operands"]["operand_2"])
        if isinstance(head, str) and rest is not None:
            return [head, *rest]
    return None


def _possible_values(expr: Any, variables: dict[str, Any]) -> set[str]:
    """Every literal an expression can evaluate to, following variables and both branches of a conditional."""
    if isinstance(expr, str):
        if expr in variables:
            return _possible_values(variables[expr]["value"], variables)
        return {expr}
    path = _accessor(expr)
    if path and path[0] in variables:
        value = variables[path[0]]["value"]
        for key in path[1:]:
            value = value[key]
        return _possible_values(value, variables)
    op = expr.get("operator", {}) if isinstance(expr, dict) else {}
    if op.get("type") == "conditional":
        branches = op["operands"]
        return _possible_values(branches["true_value"], variables) | _possible_values(
            branches["false_value"], variables
        )
    raise AssertionError(f"cannot resolve {json.dumps(expr)[:300]}")


# --- Service Bus ------------------------------------------------------------------------------------------


def test_every_queue_is_safe_for_notifications(resources: list[Any]) -> None:
    queues = _of_type(resources, "Microsoft.ServiceBus/namespaces/queues")
    assert queues, "no queue declared"
    for queue in queues:
        props = queue.config["properties"]
        where = f"{queue.file}:{queue.name}"
        assert props["requiresDuplicateDetection"] is True, where
        assert props["deadLetteringOnMessageExpiration"] is True, where
        assert isinstance(props["maxDeliveryCount"], int), where
        assert 1 <= props["maxDeliveryCount"] <= 10, where
        assert 0 < _seconds(props["lockDuration"]) <= _seconds("PT5M"), where
        # Sessions are create-time only and Basic has none; the worker does not use them.
        assert props["requiresSession"] is False, where


def test_every_namespace_is_entra_only(resources: list[Any]) -> None:
    namespaces = _of_type(resources, "Microsoft.ServiceBus/namespaces")
    assert namespaces
    for ns in namespaces:
        assert ns.config["properties"]["disableLocalAuth"] is True, ns.name
        assert ns.config["properties"]["minimumTlsVersion"] == "1.2", ns.name


def _camel(pascal: str) -> str:
    return pascal[0].lower() + pascal[1:]


def test_queue_matches_the_emulator_config(parsed: dict[str, dict[str, Any]], resources: list[Any]) -> None:
    # Given the emulator's queue definition (PascalCase) and the Bicep queue (camelCase)
    config = json.loads(EMULATOR_CONFIG.read_text())
    emulator_queues = {
        q["Name"]: q["Properties"] for ns in config["UserConfig"]["Namespaces"] for q in ns["Queues"]
    }
    messaging = parsed["modules/messaging.bicep"]
    queue_name = messaging["parameters"]["queueName"]["default"]
    reports_queue_name = messaging["parameters"]["reportsQueueName"]["default"]
    queues = {q.name: q for q in _of_type(resources, "Microsoft.ServiceBus/namespaces/queues")}
    # normal, then critical and bulk in a loop, and the delivery reports' queue
    assert set(queues) == {"queue", "laneQueues", "reportsQueue"}
    other_lanes = messaging["variables"]["otherLanes"]["value"]
    assert other_lanes == ["critical", "bulk"]

    # Then every queue exists in both, under the same name (and main.bicep deploys that name)
    lane_names = [queue_name, *(f"{queue_name}-{lane}" for lane in other_lanes)]
    assert {*lane_names, reports_queue_name} <= set(emulator_queues)
    assert "var queueName = '" + queue_name + "'" in (INFRA / "main.bicep").read_text()

    # And every emulator property has the same value in Bicep; empty ones (no forwarding) are absent in Bicep
    for queue, name in (
        (queues["queue"], queue_name),
        *((queues["laneQueues"], n) for n in lane_names[1:]),
        (queues["reportsQueue"], reports_queue_name),
    ):
        bicep_props = queue.config["properties"]
        expected = emulator_queues[name]
        for pascal, value in expected.items():
            camel = _camel(pascal)
            if value == "":
                assert bicep_props.get(camel, "") == "", (
                    f"{name}.{camel} is set in Bicep but empty in Config.json"
                )
            else:
                assert camel in bicep_props, f"{name}.{camel} missing from messaging.bicep ({queue.name})"
                assert bicep_props[camel] == value, (
                    f"{name}.{camel}: Bicep {bicep_props[camel]!r} != Config.json {value!r}"
                )
        # And the properties the brief names are all covered by the comparison
        assert {
            "MaxDeliveryCount",
            "LockDuration",
            "RequiresDuplicateDetection",
            "DuplicateDetectionHistoryTimeWindow",
            "DeadLetteringOnMessageExpiration",
            "DefaultMessageTimeToLive",
            "MaxSizeInMegabytes",
            "RequiresSession",
        } <= set(expected)


# --- Container Apps and KEDA --------------------------------------------------------------------------------


def _worker_app(resources: list[Any]) -> Any:
    [app] = [
        a for a in _of_type(resources, "Microsoft.App/containerApps") if a.file == "modules/worker.bicep"
    ]
    return app


def test_every_queue_scale_rule_uses_an_identity_and_message_count(resources: list[Any]) -> None:
    # The ingest API scales on HTTP concurrency (test_api_app.py); every other rule is a queue rule.
    rules = [
        rule
        for app in _of_type(resources, "Microsoft.App/containerApps")
        for rule in app.config["properties"]["template"]["scale"]["rules"]
        if "http" not in rule
    ]
    assert rules
    for rule in rules:
        custom = rule["custom"]
        assert custom["type"] == "azure-servicebus", rule["name"]
        assert custom.get("identity"), f"{rule['name']}: scale rule without a managed identity"
        # Scale rules authenticate with the identity, never with a secret reference.
        assert "auth" not in custom
        assert "auth" not in rule
        metadata = custom["metadata"]
        assert "messageCount" in metadata, rule["name"]
        # queueLength is the KEDA 1.x name (and ACA's Storage-queue rule); azure-servicebus 2.x ignores it.
        assert "queueLength" not in metadata, rule["name"]
        assert {"namespace", "queueName"} <= set(metadata)
        assert "connection" not in metadata
        assert "connectionFromEnv" not in metadata


def test_each_lane_has_its_scale_rule_and_the_worker_consumes_all_three(resources: list[Any]) -> None:
    app = _worker_app(resources)
    rules = app.config["properties"]["template"]["scale"]["rules"]
    queues = [rule["custom"]["metadata"]["queueName"] for rule in rules]
    assert queues == ["queueName", "criticalQueueName", "bulkQueueName"]
    # A single critical message wakes a replica, as any other lane's does.
    assert {rule["custom"]["metadata"]["activationMessageCount"] for rule in rules} == {"0"}
    env = _env(app)
    assert env["POSTBUS_LANES"] == "true"
    assert (env["POSTBUS_QUEUE_CRITICAL"], env["POSTBUS_QUEUE_BULK"]) == (
        "criticalQueueName",
        "bulkQueueName",
    )


def test_scaler_and_pull_identities_are_hidden_from_the_container(resources: list[Any]) -> None:
    app = _worker_app(resources)
    config = app.config["properties"]["configuration"]
    lifecycles = {s["identity"]: s["lifecycle"] for s in config["identitySettings"]}
    rules = app.config["properties"]["template"]["scale"]["rules"]
    [registry] = config["registries"]
    assert {lifecycles[rule["custom"]["identity"]] for rule in rules} == {"None"}
    assert lifecycles[registry["identity"]] == "None"
    assert lifecycles["workerIdentityId"] == "Main"
    assert "passwordSecretRef" not in registry
    assert not config.get("secrets"), "the worker needs no Container Apps secrets"


def test_worker_scales_from_zero_to_a_parameter_bound(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    scale = _worker_app(resources).config["properties"]["template"]["scale"]
    assert scale["minReplicas"] == 0
    assert scale["maxReplicas"] == "maxReplicas"
    description = parsed["modules/worker.bicep"]["parameters"]["maxReplicas"]["decorators"][0]["argument"]
    assert "quota" in description
    assert "per-replica send rate" in description


def _env(app: Any) -> dict[str, Any]:
    env = app.config["properties"]["template"]["containers"][0]["env"]
    items = env["function"]["parameters"]["arg_1"] if isinstance(env, dict) else env
    return {e["name"]: e["value"] for e in items}


def test_worker_settings_are_passed_as_environment_variables(resources: list[Any]) -> None:
    env = _env(_worker_app(resources))
    assert {
        "AZURE_CLIENT_ID",
        "POSTBUS_SERVICEBUS_NAMESPACE",
        "POSTBUS_QUEUE",
        "POSTBUS_ACS_ENDPOINT",
        "POSTBUS_SENDERS",
        "POSTBUS_CONCURRENCY",
        "POSTBUS_PREFETCH",
        "POSTBUS_HEALTH_PORT",
        "POSTBUS_SHUTDOWN_GRACE_SECONDS",
        "POSTBUS_QUOTA_PER_MINUTE",
        "POSTBUS_QUOTA_PER_HOUR",
        "POSTBUS_ENVIRONMENT",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    } <= set(env)
    assert env["AZURE_CLIENT_ID"] == "workerClientId"
    # No connection strings or keys for Service Bus or ACS: the worker uses DefaultAzureCredential.
    assert not {
        "POSTBUS_SERVICEBUS_CONNECTION_STRING",
        "POSTBUS_ACS_CONNECTION_STRING",
        "POSTBUS_ACS_KEY",
    } & set(env)


def test_termination_grace_exceeds_the_worker_shutdown_grace(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    # Given the grace the worker is told (env) and the one Container Apps gives it before SIGKILL
    app = _worker_app(resources)
    params = parsed["modules/worker.bicep"]["parameters"]
    told = _env(app)["POSTBUS_SHUTDOWN_GRACE_SECONDS"]["function"]["parameters"]["value_to_convert"]
    given = app.config["properties"]["template"]["terminationGracePeriodSeconds"]["operator"]
    # Then Container Apps waits the worker's grace plus a headroom that cannot be set below 5 s
    assert given["type"] == "add"
    assert given["operands"]["operand_1"] == told == "shutdownGraceSeconds"
    headroom = params[given["operands"]["operand_2"]]
    min_headroom = next(d["argument"] for d in headroom["decorators"] if d["type"] == "min_value")
    assert min_headroom >= 5
    # And with the defaults main.bicep passes, the grace is the ACA default (30 s) or more
    main_default = parsed["main.bicep"]["parameters"]["workerShutdownGraceSeconds"]["default"]
    assert main_default == 25
    assert main_default + headroom["default"] >= 30
    assert "shutdownHeadroomSeconds" not in parsed["main.bicep"]["modules"]["worker"]["config"]["params"]


def test_probes_fit_the_worker_and_the_placeholder_alike(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    # `azd deploy` swaps only the image and keeps the probes, so the placeholder that runs until then must pass the
    # worker's own probes: same port, same path.
    worker = parsed["modules/worker.bicep"]["variables"]
    probes = _worker_app(resources).config["properties"]["template"]["containers"][0]["probes"]
    by_type = {p["type"]: p["httpGet"] for p in probes}
    # No readiness probe: without ingress it routes nothing, and /readyz fails while the breaker is open.
    assert set(by_type) == {"Startup", "Liveness"}
    assert {(g["path"], g["port"]) for g in by_type.values()} == {("livenessPath", "healthPort")}
    assert worker["livenessPath"]["value"] == "/healthz"
    assert worker["healthPort"]["value"] == 8080
    # The placeholder: ASP.NET Core's sample listens on 8080 and maps /healthz (the quickstart image listens on 80).
    assert worker["placeholderImage"]["value"] == "mcr.microsoft.com/dotnet/samples:aspnetapp"
    image = _worker_app(resources).config["properties"]["template"]["containers"][0]["image"]
    assert "placeholderImage" in json.dumps(image)
    # And the image's own port is the one the probes use.
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "POSTBUS_HEALTH_PORT=8080" in dockerfile
    assert re.search(r"^EXPOSE 8080$", dockerfile, re.M)


def test_the_worker_grace_setting_names_the_headroom_the_template_gives(
    parsed: dict[str, dict[str, Any]],
) -> None:
    # The settings description once said "keep below 30 s" while the template gave 35 s.
    from postbus.settings import Settings

    headroom = parsed["modules/worker.bicep"]["parameters"]["shutdownHeadroomSeconds"]["default"]
    description = Settings.model_fields["shutdown_grace_seconds"].description or ""
    assert f"plus {headroom} s" in description
    assert "30 s" not in description


def test_worker_has_no_ingress(resources: list[Any]) -> None:
    assert "ingress" not in _worker_app(resources).config["properties"]["configuration"]


# --- RBAC ---------------------------------------------------------------------------------------------------


CUSTOM_EMAIL_ROLE = "Postbus Email Sender (custom)"
CUSTOM_EMAIL_ROLE_ACTIONS = [
    "Microsoft.Communication/CommunicationServices/Read",
    "Microsoft.Communication/CommunicationServices/Write",
    "Microsoft.Communication/EmailServices/write",
]


def _role_definitions(expr: Any, variables: dict[str, Any]) -> set[str]:
    """Role names a roleDefinitionId expression can resolve to (built-in by GUID, or the one custom role)."""
    if isinstance(expr, str) and expr in variables:
        return _role_definitions(variables[expr]["value"], variables)
    if expr == "customSenderRoleDefinitionId":
        # A parameter: main.bicep passes the custom role defined there (checked in test_custom_email_role...).
        return {CUSTOM_EMAIL_ROLE}
    op = expr.get("operator", {}) if isinstance(expr, dict) else {}
    if op.get("type") == "conditional":
        branches = op["operands"]
        return _role_definitions(branches["true_value"], variables) | _role_definitions(
            branches["false_value"], variables
        )
    function = expr.get("function", {}) if isinstance(expr, dict) else {}
    assert function.get("type") == "subscription_resource_id", (
        f"unexpected role reference {json.dumps(expr)[:300]}"
    )
    assert function["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    guids = _possible_values(function["parameters"]["resource_name_1"], variables)
    unknown = guids - set(BUILT_IN_ROLES)
    assert not unknown, f"undocumented role GUID(s) {unknown}"
    return {BUILT_IN_ROLES[g] for g in guids}


def _assignments(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> list[tuple[str, str, str, set[str]]]:
    """(file, principalId expression, scope expression, possible role names) per role assignment."""
    found = []
    for res in _of_type(resources, "Microsoft.Authorization/roleAssignments"):
        props = res.config["properties"]
        roles = _role_definitions(props["roleDefinitionId"], parsed[res.file].get("variables") or {})
        assert props["principalType"] in {"ServicePrincipal", "deployerPrincipalType"}, res.name
        principal = props["principalId"]
        # A principal from a resource's own identity (`topic.identity.principalId`) reads as its path.
        path = _accessor(principal)
        found.append((res.file, ".".join(path) if path else principal, _scope(res.config["scope"]), roles))
    return found


def _scope(expr: Any) -> str:
    """A scope expression as text: ``queue``, or ``laneQueues[i]`` for a loop over the lane queues."""
    if isinstance(expr, dict) and expr.get("operator", {}).get("type") == "index_accessor":
        operands = expr["operator"]["operands"]
        return f"{operands['operand_1']}[{operands['operand_2']}]"
    assert isinstance(expr, str), expr
    return expr


def test_every_role_assignment_uses_a_documented_role(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    # _role_definitions fails on any GUID outside BUILT_IN_ROLES and on any other role reference.
    assignments = _assignments(parsed, resources)
    assert len(assignments) >= 8


def test_custom_email_role_is_limited_to_the_documented_actions(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    [definition] = _of_type(resources, "Microsoft.Authorization/roleDefinitions")
    assert definition.file == "main.bicep"
    props = definition.config["properties"]
    assert props["type"] == "CustomRole"
    [permission] = props["permissions"]
    assert permission["actions"] == CUSTOM_EMAIL_ROLE_ACTIONS
    assert not permission.get("dataActions")
    # assignableScopes: [ subscription().id ]
    [scope] = props["assignableScopes"]
    assert scope["operator"]["operands"]["operand_1"]["function"]["type"] == "subscription"
    assert scope["operator"]["operands"]["operand_2"] == "id"
    # And main.bicep hands exactly this definition to the email module, only when asked for
    passed = json.dumps(
        parsed["main.bicep"]["modules"]["email"]["config"]["params"]["customSenderRoleDefinitionId"]
    )
    assert definition.name in passed
    assert parsed["main.bicep"]["parameters"]["emailSenderRole"]["default"] == "BuiltIn"


def test_every_guid_literal_in_bicep_is_a_documented_role() -> None:
    for path in INFRA.rglob("*.bicep"):
        for guid in GUID.findall(path.read_text()):
            assert guid.lower() in BUILT_IN_ROLES, f"{path.name}: unexplained GUID {guid}"


def test_role_assignments_are_least_privilege(
    parsed: dict[str, dict[str, Any]], resources: list[Any]
) -> None:
    # Then exactly these (principal, roles, scope) grants exist - nothing broader, nothing extra.
    grants = {
        (principal, frozenset(roles), scope)
        for _file, principal, scope, roles in _assignments(parsed, resources)
    }
    assert grants == {
        ("workerPrincipalId", frozenset({"Azure Service Bus Data Receiver"}), "queue"),
        # Delayed retries are republished to the same queue.
        ("workerPrincipalId", frozenset({"Azure Service Bus Data Sender"}), "queue"),
        ("producerPrincipalId", frozenset({"Azure Service Bus Data Sender"}), "queue"),
        # Data Receiver first; Data Owner (still queue-scoped) is the documented fallback.
        (
            "scalerPrincipalId",
            frozenset({"Azure Service Bus Data Receiver", "Azure Service Bus Data Owner"}),
            "queue",
        ),
        # The same four on each other lane's queue, and nothing wider.
        ("workerPrincipalId", frozenset({"Azure Service Bus Data Receiver"}), "laneQueues[i]"),
        ("workerPrincipalId", frozenset({"Azure Service Bus Data Sender"}), "laneQueues[i]"),
        ("producerPrincipalId", frozenset({"Azure Service Bus Data Sender"}), "laneQueues[i]"),
        (
            "scalerPrincipalId",
            frozenset({"Azure Service Bus Data Receiver", "Azure Service Bus Data Owner"}),
            "laneQueues[i]",
        ),
        # Dev only, off unless grantDeployerDataAccess.
        ("deployerPrincipalId", frozenset({"Azure Service Bus Data Owner"}), "namespace"),
        (
            "workerPrincipalId",
            frozenset({"Communication and Email Service Owner", CUSTOM_EMAIL_ROLE}),
            "communicationService",
        ),
        ("workerPrincipalId", frozenset({"Monitoring Metrics Publisher"}), "appInsights"),
        ("pullPrincipalId", frozenset({"AcrPull"}), "registry"),
        # The report consumer only receives ACS reports; the record is one table.
        ("workerPrincipalId", frozenset({"Azure Service Bus Data Receiver"}), "reportsQueue"),
        ("workerPrincipalId", frozenset({"Storage Table Data Contributor"}), "table"),
        # The replica roster: its own table beside the record's, not the account.
        ("workerPrincipalId", frozenset({"Storage Table Data Contributor"}), "rosterTable"),
        # Event Grid's system topic delivers with its own identity: send to the reports queue, dead-letter into one
        # container. No SAS key anywhere.
        ("topic.identity.principalId", frozenset({"Azure Service Bus Data Sender"}), "reportsQueue"),
        ("topic.identity.principalId", frozenset({"Storage Blob Data Contributor"}), "deadLetterContainer"),
        # The ingest API queues and reads status, nothing else.
        ("apiPrincipalId", frozenset({"Azure Service Bus Data Sender"}), "queue"),
        ("apiPrincipalId", frozenset({"Azure Service Bus Data Sender"}), "laneQueues[i]"),
        ("apiPrincipalId", frozenset({"Storage Table Data Reader"}), "recordAccount"),
        # Claim check: producers write attachment blobs, the worker only reads them; the container, not the account.
        ("producerPrincipalId", frozenset({"Storage Blob Data Contributor"}), "container"),
        ("workerPrincipalId", frozenset({"Storage Blob Data Reader"}), "container"),
    }
    scaler = parsed["modules/messaging.bicep"]["parameters"]["scalerRole"]
    assert scaler["default"] == "DataReceiver"
    assert parsed["main.bicep"]["parameters"]["grantDeployerDataAccess"]["default"] is False


def test_the_scaler_role_says_why_it_is_enough() -> None:
    # KEDA documents Manage rights for its Service Bus scaler; the reason Data Receiver suffices with Entra
    # must stay next to the assignment, or someone will "fix" it to Data Owner.
    code = (INFRA / "modules" / "messaging.bicep").read_text()
    comment = code[: code.index("resource scalerReader")].rsplit("\n\n", 1)[-1]
    assert "queues/read" in comment
    assert "Manage" in comment
    assert "lifecycle 'None'" in comment


# --- Email --------------------------------------------------------------------------------------------------


def test_communication_service_is_entra_only_and_links_the_managed_domain(resources: list[Any]) -> None:
    [acs] = _of_type(resources, "Microsoft.Communication/communicationServices")
    assert acs.config["properties"]["disableLocalAuth"] is True
    linked = json.dumps(acs.config["properties"]["linkedDomains"])
    assert "managedDomain" in linked
    domains = {d.name: d.config for d in _of_type(resources, "Microsoft.Communication/emailServices/domains")}
    assert domains["managedDomain"]["name"] == "AzureManagedDomain"
    assert domains["managedDomain"]["properties"]["domainManagement"] == "AzureManaged"
    assert domains["customDomain"]["properties"]["domainManagement"] == "CustomerManaged"


def test_custom_domain_dns_records_are_an_output(parsed: dict[str, dict[str, Any]]) -> None:
    outputs = parsed["modules/email.bicep"]["outputs"]
    assert "verificationRecords" in json.dumps(outputs["customDomainVerificationRecords"])
    assert "POSTBUS_EMAIL_DOMAIN_RECORDS" in parsed["main.bicep"]["outputs"]


# --- Monitoring (alerts and diagnostics: test_monitoring.py) --------------------------------------------------


def test_app_insights_is_workspace_based(resources: list[Any]) -> None:
    [component] = _of_type(resources, "Microsoft.Insights/components")
    assert component.config["properties"]["WorkspaceResourceId"]
    assert component.config["properties"]["IngestionMode"] == "LogAnalytics"


# --- Secrets ------------------------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "storage/ACS key": re.compile(r"AccountKey\s*=", re.IGNORECASE),
    "SAS key": re.compile(r"SharedAccessKey(Name)?\s*=", re.IGNORECASE),
    "connection string": re.compile(
        r"Endpoint\s*=\s*sb://|DefaultEndpointsProtocol\s*=|accesskey\s*=", re.IGNORECASE
    ),
    "instrumentation key literal": re.compile(r"InstrumentationKey\s*=\s*[0-9a-f]{8}-", re.IGNORECASE),
    "password": re.compile(r"password['\"]?\s*[:=]\s*['\"][^'\"]+['\"]", re.IGNORECASE),
    "JWT": re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "key listing at deploy time": re.compile(r"\.list(Keys|ConnectionStrings|Credentials)\(|listKeys\("),
}


@pytest.mark.parametrize("pattern", SECRET_PATTERNS, ids=list(SECRET_PATTERNS))
def test_no_secret_literal_in_infra(pattern: str) -> None:
    files = [p for p in INFRA.rglob("*") if p.is_file()]
    assert len(files) >= 10
    for path in files:
        match = SECRET_PATTERNS[pattern].search(path.read_text())
        assert match is None, f"{path.relative_to(REPO_ROOT)}: {pattern}: {match.group(0)!r}"


def test_secret_patterns_catch_the_usual_suspects() -> None:
    # Given strings shaped like real leaks, Then each one trips a pattern (the scan above is not vacuous).
    samples = [
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=abc=",
        "endpoint=https://x.communication.azure.com/;accesskey=abc==",
        "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=abc==",
        "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://x",
        "password: 'hunter2'",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig",
        "storage.listKeys().keys[0].value",
    ]
    for sample in samples:
        assert any(p.search(sample) for p in SECRET_PATTERNS.values()), sample


def test_no_secure_parameter_has_a_default(parsed: dict[str, dict[str, Any]]) -> None:
    for file, tree in parsed.items():
        for name, spec in (tree.get("parameters") or {}).items():
            if any(d["type"] == "secure" for d in spec["decorators"]):
                assert spec["default"] is None, f"{file}:{name}"


# --- API versions -------------------------------------------------------------------------------------------

# The API version of every resource type in use: current GA versions, one per type.
API_VERSIONS = {
    "Microsoft.Resources/resourceGroups": "2024-03-01",
    "Microsoft.ServiceBus/namespaces": "2024-01-01",
    "Microsoft.ServiceBus/namespaces/queues": "2024-01-01",
    # GA; the preview version this used had nothing the template needs.
    "Microsoft.App/managedEnvironments": "2026-01-01",
    "Microsoft.App/containerApps": "2026-01-01",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "2024-11-30",
    "Microsoft.Authorization/roleAssignments": "2022-04-01",
    "Microsoft.Authorization/roleDefinitions": "2022-04-01",
    "Microsoft.Communication/emailServices": "2025-09-01",
    "Microsoft.Communication/emailServices/domains": "2025-09-01",
    "Microsoft.Communication/emailServices/domains/senderUsernames": "2025-09-01",
    "Microsoft.Communication/communicationServices": "2025-09-01",
    "Microsoft.OperationalInsights/workspaces": "2025-07-01",
    "Microsoft.Insights/components": "2020-02-02",
    "Microsoft.ContainerRegistry/registries": "2025-11-01",
    "Microsoft.Insights/metricAlerts": "2018-03-01",
    # The note lists 2025-01-01-preview (AVM) and 2023-12-01 (GA); GA is enough for these rules.
    "Microsoft.Insights/scheduledQueryRules": "2023-12-01",
    "Microsoft.Insights/actionGroups": "2023-01-01",
    "Microsoft.Insights/diagnosticSettings": "2021-05-01-preview",
    "Microsoft.Insights/workbooks": "2023-06-01",
    "Microsoft.Network/virtualNetworks": "2024-05-01",
    "Microsoft.Network/networkSecurityGroups": "2024-05-01",
    "Microsoft.Network/privateEndpoints": "2024-05-01",
    "Microsoft.Network/privateEndpoints/privateDnsZoneGroups": "2024-05-01",
    "Microsoft.Network/privateDnsZones": "2024-06-01",
    "Microsoft.Network/privateDnsZones/virtualNetworkLinks": "2024-06-01",
    # GA versions (Storage 2023-05-01; Event Grid 2022-06-15 has system-topic identities and delivery/dead-letter
    # with a resource identity). The record's account also holds the claim check (modules/claimcheck.bicep: a
    # container and its lifecycle rule) and is referenced as `existing` by the ingest API (its read role).
    "Microsoft.Storage/storageAccounts": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/blobServices/containers": "2023-05-01",
    "Microsoft.Storage/storageAccounts/managementPolicies": "2023-05-01",
    "Microsoft.Storage/storageAccounts/tableServices": "2023-05-01",
    "Microsoft.Storage/storageAccounts/tableServices/tables": "2023-05-01",
    "Microsoft.EventGrid/systemTopics": "2022-06-15",
    "Microsoft.EventGrid/systemTopics/eventSubscriptions": "2022-06-15",
}
#: Preview API versions in use, each with the reason no GA version serves.
PREVIEW_REASONS = {
    "Microsoft.Insights/diagnosticSettings": "the only GA version (2016-09-01) predates categoryGroup and "
    "logAnalyticsDestinationType, which route logs to resource-specific tables",
}


def test_api_versions_are_the_documented_ones(parsed: dict[str, dict[str, Any]]) -> None:
    # Scale-rule identity needs containerApps >= 2024-02-02-preview; identitySettings lifecycle needs a recent
    # API too. Pinning every type keeps a copy-paste from an older sample from silently dropping them.
    seen = {
        (res["type"], res["api_version"])
        for tree in parsed.values()
        for res in (tree.get("resources") or {}).values()
    }
    for arm_type, version in seen:
        assert arm_type in API_VERSIONS, f"{arm_type}: add it to API_VERSIONS with its source"
        assert version == API_VERSIONS[arm_type], f"{arm_type}@{version}, expected {API_VERSIONS[arm_type]}"


def test_a_preview_api_is_used_only_where_no_ga_version_serves() -> None:
    previews = {arm_type for arm_type, version in API_VERSIONS.items() if version.endswith("-preview")}
    assert previews == set(PREVIEW_REASONS)
