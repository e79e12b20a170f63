"""The azd manifest (azure.yaml) and the CI workflow `azd pipeline config` uses (.github/workflows/azure-dev.yml).

Both are YAML; the project has no YAML parser, so they are read with the one in checkov's own environment
(.tools/checkov, which `make tools` installs for test_checkov.py) and compared as JSON.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TOOLS_PYTHON = REPO_ROOT / ".tools" / "checkov" / "bin" / "python"
WORKFLOW = REPO_ROOT / ".github" / "workflows" / "azure-dev.yml"
_PINNED = re.compile(r"^[\w.-]+/[\w.-]+@[0-9a-f]{40}$")


def _yaml(path: Path) -> Any:
    if not TOOLS_PYTHON.exists():
        pytest.fail(
            f"{TOOLS_PYTHON} not found: run `make tools` (it installs checkov, whose PyYAML reads the file)"
        )
    done = subprocess.run(
        [
            str(TOOLS_PYTHON),
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
            path,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def azure_yaml() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(REPO_ROOT / "azure.yaml")
    return data


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(WORKFLOW)
    return data


def test_azure_yaml_names_the_worker_service_and_the_infra_path(azure_yaml: dict[str, Any]) -> None:
    assert azure_yaml["name"] == "postbus"
    assert azure_yaml["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}
    worker = azure_yaml["services"]["worker"]
    assert (worker["project"], worker["language"], worker["host"]) == (".", "py", "containerapp")
    assert worker["docker"]["path"] == "Dockerfile"
    assert worker["docker"]["remoteBuild"] is True
    # azd matches the service to the app by this tag.
    assert "'azd-service-name': 'worker'" in (REPO_ROOT / "infra" / "modules" / "worker.bicep").read_text()


def test_azd_deploys_the_app_with_the_api_version_the_template_uses(azure_yaml: dict[str, Any]) -> None:
    # `azd deploy` reads, changes and writes the app back; with an older API version it would drop the scale
    # rule's identity. A string, not a YAML date.
    api_version = azure_yaml["services"]["worker"]["apiVersion"]
    assert isinstance(api_version, str)
    worker_bicep = (REPO_ROOT / "infra" / "modules" / "worker.bicep").read_text()
    assert f"'Microsoft.App/containerApps@{api_version}'" in worker_bicep
    fetch_image = (REPO_ROOT / "infra" / "modules" / "fetch-image.bicep").read_text()
    assert f"'Microsoft.App/containerApps@{api_version}'" in fetch_image


def test_azure_yaml_requires_an_azd_that_honours_it(azure_yaml: dict[str, Any]) -> None:
    required = azure_yaml["requiredVersions"]["azd"]
    match = re.fullmatch(r">=\s*(\d+)\.(\d+)\.(\d+)", required)
    assert match, required
    # services.<name>.apiVersion is honoured since 1.10.2
    assert tuple(int(part) for part in match.groups()) >= (1, 10, 2)


def test_provisioning_warns_when_alerts_have_no_receiver(azure_yaml: dict[str, Any]) -> None:
    hook = azure_yaml["hooks"]["preprovision"]
    assert set(hook) == {"posix", "windows"}
    for shell in hook.values():
        assert "POSTBUS_ALERT_EMAIL" in shell["run"]
        assert "no receiver" in shell["run"]


def test_pipeline_variables_are_the_parameters_main_reads(azure_yaml: dict[str, Any]) -> None:
    parameters = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    read = {
        name
        for spec in parameters.values()
        for name in re.findall(r"\$\{(POSTBUS_[A-Z_]+)", str(spec["value"]))
        if name != "POSTBUS_DEPLOYER_DATA_ACCESS"  # dev only: never in CI
        and name
        != "POSTBUS_API_CLIENTS"  # a secret: a CI secret, or better a Key Vault reference, never a variable
    }
    pipeline = azure_yaml["pipeline"]
    assert pipeline["provider"] == "github"
    assert set(pipeline["variables"]) == read


def test_the_workflow_is_where_azd_pipeline_config_looks_and_runs_the_gate_first(
    workflow: dict[str, Any],
) -> None:
    # azd pipeline config looks for .github/workflows/azure-dev.yml (or .yaml)
    assert WORKFLOW.name == "azure-dev.yml"
    jobs = workflow["jobs"]
    assert set(jobs) == {"test", "validate-bicep", "deploy"}
    assert any(step.get("run") == ".ci/run" for step in jobs["test"]["steps"])
    assert any(step.get("run") == "make bicep-lint" for step in jobs["validate-bicep"]["steps"])
    assert set(jobs["deploy"]["needs"]) == {"test", "validate-bicep"}
    runs = [step.get("run", "") for step in jobs["deploy"]["steps"]]
    ordered = [
        next(i for i, run in enumerate(runs) if command in run)
        for command in (
            "azd auth login",
            "azd provision --preview",
            "azd provision --no-prompt",
            "azd deploy --no-prompt",
        )
    ]
    assert ordered == sorted(ordered)


def test_the_workflow_logs_in_with_a_federated_credential_and_least_permissions(
    workflow: dict[str, Any],
) -> None:
    assert workflow["permissions"] == {}
    deploy = workflow["jobs"]["deploy"]
    assert deploy["permissions"] == {"contents": "read", "id-token": "write"}
    for name, job in workflow["jobs"].items():
        if name != "deploy":
            assert job["permissions"] == {"contents": "read"}, name
    [login] = [step["run"] for step in deploy["steps"] if "azd auth login" in step.get("run", "")]
    assert "--federated-credential-provider github" in login
    assert "secret" not in login.lower()
    assert "secrets." not in WORKFLOW.read_text()
    # azd provision reads the same variables azd pipeline config stored
    for variable in (
        "AZURE_CLIENT_ID",
        "AZURE_TENANT_ID",
        "AZURE_SUBSCRIPTION_ID",
        "AZURE_ENV_NAME",
        "AZURE_LOCATION",
    ):
        assert deploy["env"][variable] == f"${{{{ vars.{variable} }}}}"


def test_every_action_is_pinned_by_commit(workflow: dict[str, Any]) -> None:
    uses = [step["uses"] for job in workflow["jobs"].values() for step in job["steps"] if "uses" in step]
    assert uses
    for action in uses:
        assert _PINNED.match(action), f"{action}: pin actions by commit sha"
    for step in (s for job in workflow["jobs"].values() for s in job["steps"]):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False
