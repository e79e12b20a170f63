"""Fixtures for the template tests: one shipped renderer for the module, user template trees."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from postbus.worker.rendering import TemplateRenderer


@pytest.fixture(scope="session")
def shipped() -> TemplateRenderer:
    # Compiling is the slow part; the renderer is immutable after construction, so share it.
    return TemplateRenderer()


WriteTree = Callable[[dict[str, str]], Path]


@pytest.fixture
def write_tree(tmp_path: Path) -> WriteTree:
    """Write ``{relative path: content}`` under a fresh directory and return the directory."""

    def write(files: dict[str, str]) -> Path:
        root = tmp_path / "user-templates"
        root.mkdir(exist_ok=True)
        for relative, content in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
        return root

    return write
