"""Settings: one frozen object from POSTBUS_* variables; a bad setting fails in one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from postbus.errors import SettingsError
from postbus.settings import Settings, env_name, load_settings, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_need_no_environment() -> None:
    settings = load_settings()
    assert settings.queue == "notifications"
    assert settings.concurrency == 16
    assert settings.senders == {}


def test_values_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "POSTBUS_SERVICEBUS_CONNECTION_STRING", "Endpoint=sb://127.0.0.1:5672;SharedAccessKey=k"
    )
    monkeypatch.setenv("POSTBUS_ACS_ENDPOINT", "http://127.0.0.1:8025/")
    monkeypatch.setenv("POSTBUS_ACS_ACCESS_KEY", "c2VjcmV0")
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@contoso.com", "care": "care@clinic.example"}')
    monkeypatch.setenv("POSTBUS_CONCURRENCY", "32")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", "InstrumentationKey=00000000")
    settings = load_settings()
    assert settings.acs_endpoint == "http://127.0.0.1:8025"
    assert settings.senders["care"] == "care@clinic.example"
    assert settings.concurrency == 32
    assert settings.applicationinsights_connection_string is not None
    # secrets never show in repr or str
    assert "c2VjcmV0" not in repr(settings)
    assert "SharedAccessKey=k" not in str(settings)


def test_settings_are_frozen() -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.concurrency = 3


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"POSTBUS_CONCURRENCY": "0"}, "POSTBUS_CONCURRENCY: Input should be greater than or equal to 1"),
        ({"POSTBUS_CONCURRENCY": "many"}, "POSTBUS_CONCURRENCY: Input should be a valid integer"),
        ({"POSTBUS_SENDERS": "{not json"}, "POSTBUS_SENDERS: not valid JSON"),
        ({"POSTBUS_SENDERS": '{"Orders": "a@b.com"}'}, "POSTBUS_SENDERS: sender alias 'Orders'"),
        ({"POSTBUS_SENDERS": '{"orders": "Orders <a@b.com>"}'}, "POSTBUS_SENDERS: sender 'orders'"),
        ({"POSTBUS_ACS_ENDPOINT": "contoso"}, "POSTBUS_ACS_ENDPOINT: 'contoso' is not an endpoint"),
        ({"POSTBUS_LOG_FORMAT": "xml"}, "POSTBUS_LOG_FORMAT: Input should be"),
        (
            {
                "POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://x",
                "POSTBUS_SERVICEBUS_NAMESPACE": "x.servicebus.windows.net",
            },
            "POSTBUS_SERVICEBUS_CONNECTION_STRING and POSTBUS_SERVICEBUS_NAMESPACE are both set",
        ),
        (
            {
                "POSTBUS_ACS_CONNECTION_STRING": "endpoint=https://x/;accesskey=k",
                "POSTBUS_ACS_ENDPOINT": "https://x",
            },
            "POSTBUS_ACS_CONNECTION_STRING excludes POSTBUS_ACS_ENDPOINT",
        ),
        ({"POSTBUS_ACS_ACCESS_KEY": "k"}, "POSTBUS_ACS_ACCESS_KEY needs POSTBUS_ACS_ENDPOINT"),
        (
            {"POSTBUS_RETRY_BACKOFF_BASE_SECONDS": "60", "POSTBUS_RETRY_BACKOFF_CAP_SECONDS": "10"},
            "POSTBUS_RETRY_BACKOFF_CAP_SECONDS must be at least POSTBUS_RETRY_BACKOFF_BASE_SECONDS",
        ),
    ],
)
def test_bad_settings_fail_in_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert caught.value.exit_code == 2


def test_requirements_name_the_missing_variables() -> None:
    settings = load_settings()
    with pytest.raises(
        SettingsError, match="POSTBUS_SERVICEBUS_CONNECTION_STRING or POSTBUS_SERVICEBUS_NAMESPACE"
    ):
        settings.require_servicebus("the worker")
    with pytest.raises(SettingsError, match="POSTBUS_ACS_ENDPOINT or POSTBUS_ACS_CONNECTION_STRING"):
        settings.require_acs("the worker")
    with pytest.raises(SettingsError, match="POSTBUS_SENDERS must map at least one alias"):
        settings.require_senders("the worker")


def test_env_names_follow_the_prefix_except_the_standard_variables() -> None:
    assert env_name("queue") == "POSTBUS_QUEUE"
    assert env_name("applicationinsights_connection_string") == "APPLICATIONINSIGHTS_CONNECTION_STRING"


def test_readme_configuration_table_matches_the_settings_model() -> None:
    # Regenerate with: .venv/bin/python -m postbus.settings
    readme = README.read_text(encoding="utf-8")
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    end = readme.index("<!-- settings-table:end -->")
    assert readme[start:end].strip() == settings_table()
    assert len(Settings.model_fields) == settings_table().count("\n") - 1
