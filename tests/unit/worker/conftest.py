"""Fixtures of the worker's unit tests."""

from __future__ import annotations

import pytest

from postbus.settings import Settings, load_settings


@pytest.fixture
def settings() -> Settings:
    """A worker with no quota, four handlers and a short grace: the loop tests' default."""
    return load_settings(
        senders={"orders": "orders@shop.example.com"},
        quota_per_minute=0,
        quota_per_hour=0,
        health_port=0,
        concurrency=4,
        shutdown_grace_seconds=5,
    )
