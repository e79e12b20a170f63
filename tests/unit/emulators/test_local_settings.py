"""The settings ``postbus emulator up`` prints: the demo's senders and the emulator's own quota."""

from __future__ import annotations

import json

import pytest

from postbus import demo
from postbus.emulators.acs_email import QuotaConfig
from postbus.emulators.up import SENDERS, SUPERSEDED, local_settings
from postbus.settings import Settings


def _settings(quota: str) -> dict[str, str]:
    return local_settings(
        servicebus_connection_string="Endpoint=sb://127.0.0.1:5672;SharedAccessKey=k;UseDevelopmentEmulator=true",
        queue="notifications",
        acs_endpoint="http://127.0.0.1:8025",
        access_key="a2V5",
        quota=QuotaConfig.parse(quota),
    )


def test_the_senders_are_the_demos() -> None:
    assert SENDERS == demo.SENDERS
    assert json.loads(_settings("unlimited")["POSTBUS_SENDERS"]) == SENDERS


@pytest.mark.parametrize(
    ("quota", "per_minute", "per_hour"),
    [
        ("unlimited", "0", "0"),
        ("azure-default", "30", "100"),
        ("azure-managed", "5", "10"),
        ("120,2000", "120", "2000"),
    ],
)
def test_the_quota_is_the_emulators_with_0_for_no_limit(quota: str, per_minute: str, per_hour: str) -> None:
    values = _settings(quota)
    assert (values["POSTBUS_QUOTA_PER_MINUTE"], values["POSTBUS_QUOTA_PER_HOUR"]) == (per_minute, per_hour)


def test_every_name_is_a_setting_and_the_superseded_ones_contradict_them() -> None:
    fields = {f"POSTBUS_{name.upper()}" for name in Settings.model_fields}
    assert set(_settings("unlimited")) <= fields
    assert set(SUPERSEDED) <= fields
    assert (
        _settings("unlimited")["POSTBUS_ACS_CONNECTION_STRING"]
        == "endpoint=http://127.0.0.1:8025/;accesskey=a2V5"
    )
