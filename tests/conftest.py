"""Suite-wide fixtures.

Every test starts with none of our environment variables set, so a developer's shell cannot change
what a test sees (httpx's ``clean_environ`` idea).
"""

from __future__ import annotations

import os

import pytest

_OURS = ("POSTBUS_", "APPLICATIONINSIGHTS_", "OTEL_")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(_OURS):
            monkeypatch.delenv(name)
