"""Every Bicep file under infra/ parses with pycep-parser, and the module graph is consistent.

The Bicep CLI cannot be installed here, so these checks stand in for the compiler's: a module reference points at
a file that exists, every parameter passed is declared, and every required parameter is passed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from tests.infra.conftest import module_body

INFRA = Path(__file__).resolve().parents[2] / "infra"
FILES = sorted(INFRA.rglob("*.bicep"))


def test_infra_has_the_documented_layout() -> None:
    names = {str(p.relative_to(INFRA)) for p in FILES}
    assert {
        "main.bicep",
        "modules/identity.bicep",
        "modules/messaging.bicep",
        "modules/email.bicep",
        "modules/monitoring.bicep",
        "modules/alerts.bicep",
        "modules/registry.bicep",
        "modules/worker.bicep",
        "modules/dashboard.bicep",
        "modules/network.bicep",
        "modules/private-endpoint.bicep",
    } <= names


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(INFRA)) for p in FILES])
def test_bicep_file_parses(path: Path) -> None:
    # A parse error must fail the gate (checkov alone would only count it and exit 0).
    try:
        tree = BicepParser().parse(file_path=path)
    except Exception as exc:
        pytest.fail(f"pycep cannot parse {path.relative_to(INFRA)}: {type(exc).__name__}: {str(exc)[:500]}")
    assert tree.get("resources") or tree.get("modules"), "a Bicep file with nothing to deploy"


def test_main_targets_the_subscription_and_modules_a_resource_group(
    parsed: dict[str, dict[str, Any]],
) -> None:
    assert parsed["main.bicep"]["globals"]["scope"]["value"] == "subscription"
    for file, tree in parsed.items():
        if file != "main.bicep":
            assert tree["globals"]["scope"]["value"] == "resourceGroup", file


def test_module_calls_match_module_parameters(parsed: dict[str, dict[str, Any]]) -> None:
    calls = 0
    for file, tree in parsed.items():
        for name, module in (tree.get("modules") or {}).items():
            calls += 1
            assert module["type"] == "local", f"{file}:{name}: keep modules local so scanners see them"
            target = str(
                (INFRA / file).parent.joinpath(module["detail"]["path"]).resolve().relative_to(INFRA)
            )
            assert target in parsed, f"{file}:{name} -> missing {target}"
            declared = parsed[target]["parameters"]
            passed = set(module_body(module)["params"])
            assert passed <= set(declared), f"{file}:{name} passes undeclared {passed - set(declared)}"
            required = {p for p, spec in declared.items() if spec["default"] is None}
            assert required <= passed, f"{file}:{name} misses required {required - passed}"
    assert calls >= 12


def test_main_parameters_file_matches_main_bicep(parsed: dict[str, dict[str, Any]]) -> None:
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    declared = parsed["main.bicep"]["parameters"]
    assert set(params) <= set(declared), set(params) - set(declared)
    required = {p for p, spec in declared.items() if spec["default"] is None}
    assert required <= set(params)
    # azd fills these from its environment.
    assert params["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert params["location"]["value"] == "${AZURE_LOCATION}"
    assert params["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"
    assert params["workerExists"]["value"].startswith("${SERVICE_WORKER_RESOURCE_EXISTS")


def test_abbreviations_cover_every_prefix_main_uses() -> None:
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", (INFRA / "main.bicep").read_text()))
    assert used, "main.bicep names resources from abbreviations.json"
    assert used <= set(abbreviations), used - set(abbreviations)


def _references(code: str, name: str) -> int:
    """Uses of a symbol, not counting object keys (a line starting `name:`) or member names (`.name`)."""
    code = re.sub(rf"^\s*{re.escape(name)}\s*:", "", code, flags=re.M)
    return len(re.findall(rf"(?<![\w.']){re.escape(name)}\b", code))


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(INFRA)) for p in FILES])
def test_no_unused_parameters_or_variables(path: Path) -> None:
    # bicepconfig.json makes no-unused-params/no-unused-vars errors, which fail `az bicep build`.
    code = re.sub(r"//[^\n]*", "", path.read_text())
    tree = BicepParser().parse(file_path=path)
    for kind, keyword in (("parameters", "param"), ("variables", "var")):
        for name in tree.get(kind) or {}:
            declared = len(re.findall(rf"^\s*{keyword} {re.escape(name)}\b", code, re.M))
            assert _references(code, name) > declared, f"{path.name}: {keyword} {name} is never used"
