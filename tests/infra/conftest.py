"""Fixtures for the offline infra gate: every Bicep file under infra/, parsed once per session with pycep.

pycep returns plain dicts. Two of its habits matter to the tests: string literals and identifiers both come back
as bare strings ('0' and queueName look alike), and a resource declared with a loop or a condition, like a
conditional module call, keeps its body under config["config"] (see ``body`` and ``module_body``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

__all__ = ["Resource", "body", "module_body", "parsed", "resources"]

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA = REPO_ROOT / "infra"


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource declaration: where it is, its symbolic name, its ARM type and its parsed body."""

    file: str
    name: str
    type: str
    api_version: str
    config: dict[str, Any]


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """The resource body, whether declared plainly, with a condition, or with a loop."""
    config: dict[str, Any] = resource["config"]
    return config["config"] if "loop_type" in config or "condition" in config else config


def module_body(module: dict[str, Any]) -> dict[str, Any]:
    """A module call's ``name``/``scope``/``params``, whether the call is conditional or not."""
    config: dict[str, Any] = module["config"]
    return config["config"] if "condition" in config else config


@pytest.fixture(scope="session")
def parsed() -> dict[str, dict[str, Any]]:
    """Relative path (e.g. 'modules/messaging.bicep') -> pycep's parse of that file."""
    parser = BicepParser()
    return {str(p.relative_to(INFRA)): parser.parse(file_path=p) for p in sorted(INFRA.rglob("*.bicep"))}


@pytest.fixture(scope="session")
def resources(parsed: dict[str, dict[str, Any]]) -> list[Resource]:
    """Every resource the templates deploy (references to `existing` resources are left out)."""
    found = []
    for file, tree in parsed.items():
        for name, res in (tree.get("resources") or {}).items():
            if not res.get("existing"):
                found.append(Resource(file, name, res["type"], res["api_version"], body(res)))
    return found
