"""The public surface other parts import stays explicit."""

from __future__ import annotations

import importlib
import pkgutil

import postbus.emulators.acs_email as package


def test_package_exports_the_embedding_api() -> None:
    assert set(package.__all__) == {
        "CapturedAttachment",
        "CapturedEmail",
        "EmailEmulator",
        "FailureRule",
        "Faults",
        "Mailbox",
        "QuotaConfig",
    }


def test_every_module_declares_all_and_imports_nothing_of_ours_beyond_the_allowed_kernel() -> None:
    for info in pkgutil.iter_modules(package.__path__):
        if info.name == "__main__":
            continue
        module = importlib.import_module(f"postbus.emulators.acs_email.{info.name}")
        assert hasattr(module, "__all__"), info.name
        for name in vars(module).values():
            origin = getattr(name, "__module__", "") or ""
            assert not origin.startswith(("worker", "producers")), (info.name, origin)
