"""The architecture's import rules, checked by reading every production module's imports."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
#: The production packages as they sit in the repository (postbus/ links the other three in).
PACKAGES = {"postbus": "postbus", "worker": "postbus.worker", "producers": "postbus.producers"}
#: The adapters allowed to import the Azure SDKs' exceptions, and why each one is an adapter.
EXCEPTION_ADAPTERS = {
    "postbus/bus/errors.py": "the Service Bus adapter's one translation",
    "worker/mailer/acs.py": "the ACS adapter: sends and lookups",
    "worker/ops/acs.py": "the ACS adapter of the support commands: status reads with their errors",
    "worker/ops/azure_checks.py": "the Azure Resource Manager adapter of `doctor --azure`",
    "postbus/records/tables.py": "the Table Storage adapter of the delivery record",
    "worker/roster/tables.py": "the Table Storage adapter of the replica roster",
    "postbus/attachments/blob.py": "the Blob Storage adapter of the claim-check attachment store",
}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for folder in PACKAGES:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO)
            if relative.parts[:2] in {
                ("postbus", "worker"),
                ("postbus", "producers"),
                ("postbus", "emulators"),
            }:
                continue  # the links: these files are read under their own folder
            yield relative.as_posix(), ast.parse(path.read_text(), filename=str(relative))


def _imports(tree: ast.Module) -> Iterator[tuple[str, str]]:
    """(module, name) for every import, ``name`` empty for ``import module``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ""
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            for alias in node.names:
                yield node.module, alias.name


def _is_azure_exception(module: str, name: str) -> bool:
    if not module.startswith("azure."):
        return False
    if module.endswith(".exceptions") or name == "exceptions":
        return True
    return name.endswith(("Error", "Exception", "Settled"))


def test_only_the_adapters_import_azure_exceptions() -> None:
    offenders = sorted(
        f"{path}: {module} {name}".strip()
        for path, tree in _modules()
        for module, name in _imports(tree)
        if _is_azure_exception(module, name) and path not in EXCEPTION_ADAPTERS
    )
    assert offenders == []


def test_every_listed_adapter_still_needs_its_exemption() -> None:
    needing = {path for path, tree in _modules() if any(_is_azure_exception(m, n) for m, n in _imports(tree))}
    assert set(EXCEPTION_ADAPTERS) == needing


@pytest.mark.parametrize(
    ("side", "other"), [("worker", "postbus.producers"), ("producers", "postbus.worker")]
)
def test_worker_and_producers_never_import_each_other(side: str, other: str) -> None:
    offenders = [
        f"{path}: {module}"
        for path, tree in _modules()
        if path.startswith(f"{side}/")
        for module, _ in _imports(tree)
        if module == other or module.startswith(f"{other}.")
    ]
    assert offenders == []


def test_only_the_demo_wiring_reaches_the_emulators() -> None:
    # The CLI root and the demo (with its harness) wire everything together, lazily; the pipeline
    # view's embedded source is the demo's view of its in-process emulators (type names only).
    allowed = {"postbus/cli.py", "postbus/demo.py", "postbus/harness.py", "postbus/pipeline_view/sources.py"}
    offenders = [
        f"{path}: {module}"
        for path, tree in _modules()
        for module, _ in _imports(tree)
        if module.startswith("postbus.emulators") and path not in allowed
    ]
    assert offenders == []


def test_the_sdk_exception_detector_sees_each_import_form() -> None:
    tree = ast.parse(
        "from azure.servicebus import exceptions as sb\n"
        "from azure.core.exceptions import AzureError\n"
        "import azure.servicebus.exceptions\n"
        "from azure.servicebus import MessageAlreadySettled\n"
        "from azure.servicebus import ServiceBusClient\n"
    )
    assert [_is_azure_exception(m, n) for m, n in _imports(tree)] == [True, True, True, True, False]
