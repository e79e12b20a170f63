"""Settings: one frozen object from POSTBUS_* variables; a bad setting fails in one line naming it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from postbus.errors import SettingsError
from postbus.settings import Settings, env_name, load_settings, quota_defaults, settings_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_defaults_need_no_environment() -> None:
    settings = load_settings()
    assert settings.queue == "notifications"
    assert settings.concurrency == 16
    assert settings.senders == {}


def test_values_come_from_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "POSTBUS_SERVICEBUS_CONNECTION_STRING",
        "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=Root;SharedAccessKey=k;UseDevelopmentEmulator=true",
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
        ({"POSTBUS_SERVICEBUS_SOCKET_TIMEOUT": "0"}, "POSTBUS_SERVICEBUS_SOCKET_TIMEOUT: Input should be"),
        ({"POSTBUS_SERVICEBUS_SOCKET_TIMEOUT": "30"}, "POSTBUS_SERVICEBUS_SOCKET_TIMEOUT: Input should be"),
        (
            {
                "POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://x;SharedAccessKeyName=a;SharedAccessKey=k",
                "POSTBUS_SERVICEBUS_NAMESPACE": "x.servicebus.windows.net",
            },
            "POSTBUS_SERVICEBUS_CONNECTION_STRING and POSTBUS_SERVICEBUS_NAMESPACE are both set",
        ),
        (
            {
                "POSTBUS_ACS_CONNECTION_STRING": "endpoint=https://x/;accesskey=a2V5",
                "POSTBUS_ACS_ENDPOINT": "https://x",
            },
            "POSTBUS_ACS_CONNECTION_STRING excludes POSTBUS_ACS_ENDPOINT",
        ),
        ({"POSTBUS_ACS_ACCESS_KEY": "a2V5"}, "POSTBUS_ACS_ACCESS_KEY needs POSTBUS_ACS_ENDPOINT"),
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
    # One row per field, plus the header, its rule and POSTBUS_ENV_FILE (read before the model).
    assert len(Settings.model_fields) == settings_table().count("\n") - 2


# -- the env file -------------------------------------------------------------------------------


def test_the_env_file_in_the_current_directory_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a .env in the current directory and one of its variables also in the environment
    (tmp_path / ".env").write_text(
        '# written by hand\nPOSTBUS_QUEUE=orders\nexport POSTBUS_CONCURRENCY="8"\nOTHER_TOOL=1\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBUS_ENV_FILE", raising=False)
    monkeypatch.setenv("POSTBUS_CONCURRENCY", "4")
    # When the settings are loaded
    settings = load_settings()
    # Then the file fills in what the environment leaves unset, and the environment wins
    assert (settings.queue, settings.concurrency) == ("orders", 4)


def test_postbus_env_file_names_another_file_and_empty_reads_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("POSTBUS_QUEUE=from-dot-env\n", encoding="utf-8")
    (tmp_path / "local.env").write_text("POSTBUS_QUEUE=from-local\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("POSTBUS_ENV_FILE", "local.env")
    assert load_settings().queue == "from-local"
    monkeypatch.setenv("POSTBUS_ENV_FILE", "")
    assert load_settings().queue == "notifications"
    # An explicit argument wins over the variable (the demo passes None to stay hermetic).
    assert load_settings(tmp_path / ".env").queue == "from-dot-env"
    assert load_settings(None).queue == "notifications"


def test_a_missing_default_env_file_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBUS_ENV_FILE", raising=False)
    assert load_settings().queue == "notifications"


def test_a_byte_order_mark_does_not_hide_the_first_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "bom.env"
    env.write_bytes("\ufeffPOSTBUS_QUEUE=orders\r\nPOSTBUS_PREFETCH=7\r\n".encode())
    monkeypatch.setenv("POSTBUS_ENV_FILE", str(env))
    settings = load_settings()
    assert (settings.queue, settings.prefetch) == ("orders", 7)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            'POSTBUS_QUEUE=orders\nPOSTBUS_ACS_ACCESS_KEY="c2VjcmV0\nPOSTBUS_CONCURRENCY=4\n',
            "POSTBUS_ENV_FILE: {path} line 2 is not NAME=value",
        ),
        ("POSTBUS_QUEUE orders c2VjcmV0\n", "POSTBUS_ENV_FILE: {path} line 1 is not NAME=value"),
        (b"POSTBUS_QUEUE=\xff\xfe c2VjcmV0\n", "POSTBUS_ENV_FILE: {path} is not UTF-8 text"),
        ("POSTBUS_CONCURRENCY=many\n", "POSTBUS_CONCURRENCY: Input should be a valid integer"),
        ("POSTBUS_SENDERS={c2VjcmV0\n", "POSTBUS_SENDERS: not valid JSON"),
    ],
)
def test_a_bad_env_file_fails_in_one_line_without_echoing_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str | bytes, message: str
) -> None:
    env = tmp_path / "bad.env"
    if isinstance(content, bytes):
        env.write_bytes(content)
    else:
        env.write_text(content, encoding="utf-8")
    monkeypatch.setenv("POSTBUS_ENV_FILE", str(env))
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message.format(path=env))
    assert "\n" not in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.env", "POSTBUS_ENV_FILE: {path} does not exist"),
        (".", "POSTBUS_ENV_FILE: {path} is a directory"),
    ],
)
def test_an_env_file_named_explicitly_must_be_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, message: str
) -> None:
    path = str(tmp_path / name)
    monkeypatch.setenv("POSTBUS_ENV_FILE", path)
    with pytest.raises(SettingsError, match="^" + re.escape(message.format(path=path))):
        load_settings()


# -- the quota follows the sender domains -------------------------------------------------------


@pytest.mark.parametrize(
    ("senders", "quota"),
    [
        ({}, (30, 100)),
        ({"orders": "orders@contoso.com"}, (30, 100)),
        ({"orders": "DoNotReply@0f1e2d3c.azurecomm.net"}, (5, 10)),
        ({"orders": "DoNotReply@0F1E.AzureComm.NET", "care": "care@clinic.example"}, (5, 10)),
        ({"orders": "orders@azurecomm.net.contoso.com"}, (30, 100)),
    ],
)
def test_an_unset_quota_follows_the_sender_domains(
    monkeypatch: pytest.MonkeyPatch, senders: dict[str, str], quota: tuple[int, int]
) -> None:
    monkeypatch.setenv("POSTBUS_SENDERS", json.dumps(senders))
    settings = load_settings()
    assert (settings.quota_per_minute, settings.quota_per_hour) == quota
    assert quota_defaults(senders) == quota


@pytest.mark.parametrize("source", ["environment", "env file", "override"])
def test_an_explicit_quota_wins_and_zero_still_means_no_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "DoNotReply@0f1e.azurecomm.net"}')
    overrides: dict[str, int] = {}
    if source == "environment":
        monkeypatch.setenv("POSTBUS_QUOTA_PER_MINUTE", "0")
    elif source == "env file":
        (tmp_path / "q.env").write_text("POSTBUS_QUOTA_PER_MINUTE=0\n", encoding="utf-8")
        monkeypatch.setenv("POSTBUS_ENV_FILE", str(tmp_path / "q.env"))
    else:
        overrides["quota_per_minute"] = 0
    settings = load_settings(**overrides)
    # The minute quota was given (0: no limit); the hour quota still follows the managed domain.
    assert (settings.quota_per_minute, settings.quota_per_hour) == (0, 10)


def test_a_bad_senders_value_is_reported_by_its_field_not_by_the_quota_rule(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTBUS_SENDERS", '["orders@contoso.com"]')
    with pytest.raises(SettingsError, match=r"^POSTBUS_SENDERS: "):
        load_settings()


# -- connection strings and keys ------------------------------------------------------------------

SECRET = "c2VjcmV0LWtleS12YWx1ZQ=="


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"POSTBUS_SERVICEBUS_CONNECTION_STRING": f"garbage{SECRET}"},
            "POSTBUS_SERVICEBUS_CONNECTION_STRING: not a Service Bus connection string "
            "(Connection string is either blank or malformed); expected Endpoint=sb://",
        ),
        (
            {"POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://pb.servicebus.windows.net/"},
            "POSTBUS_SERVICEBUS_CONNECTION_STRING: not a Service Bus connection string (At least one of the "
            "SharedAccessKey or SharedAccessSignature must be present)",
        ),
        (
            {
                "POSTBUS_SERVICEBUS_CONNECTION_STRING": f"Endpoint=sb://pb.servicebus.windows.net/;SharedAccessKey={SECRET}"
            },
            "POSTBUS_SERVICEBUS_CONNECTION_STRING: not a Service Bus connection string (Connection string must "
            "have both SharedAccessKeyName and SharedAccessKey)",
        ),
        (
            {
                "POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://pb.servicebus.windows.net/;"
                f"SharedAccessKeyName=send;SharedAccessKey={SECRET};EntityPath=returns"
            },
            "POSTBUS_SERVICEBUS_CONNECTION_STRING: its EntityPath 'returns' is another queue than POSTBUS_QUEUE "
            "'notifications'; remove EntityPath or set POSTBUS_QUEUE=returns",
        ),
        (
            {
                "POSTBUS_ACS_ENDPOINT": "https://acs1.communication.azure.com",
                "POSTBUS_ACS_ACCESS_KEY": "c2VjcmV0 x",
            },
            "POSTBUS_ACS_ACCESS_KEY: not valid base64",
        ),
        (
            {"POSTBUS_ACS_ENDPOINT": "https://acs1.communication.azure.com", "POSTBUS_ACS_ACCESS_KEY": " "},
            "POSTBUS_ACS_ACCESS_KEY: empty",
        ),
        (
            {
                "POSTBUS_ACS_CONNECTION_STRING": "endpoint=https://acs1.communication.azure.com/;accesskey=c2VjcmV0x"
            },
            "POSTBUS_ACS_CONNECTION_STRING: accesskey: not valid base64",
        ),
        (
            {"POSTBUS_ACS_CONNECTION_STRING": f"https://acs1.communication.azure.com/;{SECRET}"},
            "POSTBUS_ACS_CONNECTION_STRING: expected endpoint=https://<resource>.communication.azure.com/;accesskey=<key>",
        ),
        (
            {"POSTBUS_ACS_CONNECTION_STRING": f"endpoint=https://;accesskey={SECRET}"},
            "POSTBUS_ACS_CONNECTION_STRING: the endpoint has no host name",
        ),
    ],
)
def test_connection_strings_and_keys_the_sdks_would_refuse_fail_at_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert "c2VjcmV0" not in str(caught.value)


@pytest.mark.parametrize(
    "variables",
    [
        {
            "POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName="
            "RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;"
        },
        {
            "POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://pb.servicebus.windows.net/;"
            f"SharedAccessKeyName=send;SharedAccessKey={SECRET};EntityPath=orders",
            "POSTBUS_QUEUE": "orders",
        },
        {
            "POSTBUS_SERVICEBUS_CONNECTION_STRING": "Endpoint=sb://pb.servicebus.windows.net/;"
            "SharedAccessSignature=SharedAccessSignature sr=pb&sig=abc&se=1900000000&skn=send"
        },
        {"POSTBUS_ACS_CONNECTION_STRING": f"endpoint=http://127.0.0.1:8025/;accesskey={SECRET}"},
        {"POSTBUS_ACS_CONNECTION_STRING": f"Endpoint=acs1.communication.azure.com;AccessKey={SECRET}"},
        {"POSTBUS_ACS_ENDPOINT": "https://acs1.communication.azure.com", "POSTBUS_ACS_ACCESS_KEY": SECRET},
    ],
)
def test_connection_strings_the_sdks_accept_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str]
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.queue == variables.get("POSTBUS_QUEUE", "notifications")


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({}, 0.02),  # the default concurrency, 16
        ({"POSTBUS_CONCURRENCY": "32"}, 0.02),
        ({"POSTBUS_CONCURRENCY": "64"}, 0.05),  # many settlements waiting: fewer wake-ups
        ({"POSTBUS_CONCURRENCY": "256", "POSTBUS_SERVICEBUS_SOCKET_TIMEOUT": "0.01"}, 0.01),
    ],
)
def test_the_service_bus_socket_timeout_follows_the_concurrency_unless_it_is_set(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], expected: float
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert load_settings().socket_timeout == expected
