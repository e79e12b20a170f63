"""``.env`` lines: one spelling that a shell and the settings' ``.env`` reader take the same way,
merged into an existing file without touching the lines that are not ours."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest
from dotenv import dotenv_values
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from postbus.emulators.envfile import format_env, format_line, merge_env_file
from postbus.settings import Settings

CONNECTION = (
    "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;"
    "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
)
SENDERS = json.dumps({"orders": "orders@shop.example.com", "care": "care@clinic.example.org"})


def _shell(path: Path, names: list[str]) -> dict[str, str]:
    """What ``set -a; . FILE`` gives a POSIX shell for ``names``."""
    script = 'set -a; . "$1"; shift; for n in "$@"; do eval "printf \'%s\\0\' \\"\\${$n}\\""; done'
    done = subprocess.run(
        ["sh", "-c", script, "sh", str(path), *names], capture_output=True, check=True, env={}
    )
    return dict(zip(names, done.stdout.decode().split("\0")[:-1], strict=True))


def test_plain_values_are_bare_and_others_single_quoted() -> None:
    assert format_line("POSTBUS_QUOTA_PER_MINUTE", "30") == "POSTBUS_QUOTA_PER_MINUTE=30"
    assert format_line("KEY", "ab+/c9==") == "KEY=ab+/c9=="
    assert format_line("POSTBUS_SERVICEBUS_CONNECTION_STRING", CONNECTION).endswith(f"='{CONNECTION}'")
    assert format_line("POSTBUS_SENDERS", SENDERS) == f"POSTBUS_SENDERS='{SENDERS}'"
    assert format_line("EMPTY", "") == "EMPTY="


@pytest.mark.parametrize("value", ["it's", "back\\slash", "two\nlines", "cr\rhere"])
def test_a_value_without_a_portable_spelling_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        format_line("NAME", value)


def test_a_bad_name_is_refused() -> None:
    with pytest.raises(ValueError, match="not a variable name"):
        format_line("9LIVES", "x")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.text(st.characters(blacklist_characters="'\\\n\r\x00", blacklist_categories=("Cs",)), max_size=40),
        min_size=1,
        max_size=6,
    )
)
def test_a_shell_and_the_dotenv_reader_read_back_what_was_written(tmp_path: Path, values: list[str]) -> None:
    variables = {f"V{i}": value for i, value in enumerate(values)}
    path = tmp_path / "values.env"
    path.write_text(format_env(variables), encoding="utf-8")
    assert _shell(path, list(variables)) == variables
    assert dotenv_values(path) == variables


def test_the_settings_read_a_written_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    merge_env_file(
        path,
        {
            "POSTBUS_SERVICEBUS_CONNECTION_STRING": CONNECTION,
            "POSTBUS_ACS_CONNECTION_STRING": "endpoint=http://127.0.0.1:8025/;accesskey=a2V5",
            "POSTBUS_SENDERS": SENDERS,
            "POSTBUS_QUOTA_PER_MINUTE": "0",
        },
    )
    loaded = Settings(_env_file=path)  # type: ignore[call-arg]  # pydantic-settings' init option
    assert loaded.servicebus_connection_string is not None
    assert loaded.servicebus_connection_string.get_secret_value() == CONNECTION
    assert loaded.senders == json.loads(SENDERS)
    assert loaded.quota_per_minute == 0


def test_merge_replaces_our_lines_in_place_and_keeps_everything_else(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(
        "# my project\n"
        "DATABASE_URL='postgres://db/app'\n"
        "export POSTBUS_QUOTA_PER_MINUTE=5\n"
        "\n"
        "POSTBUS_ACS_ENDPOINT=https://old.communication.azure.com\n"
        "POSTBUS_LOG_LEVEL=debug\n"
        "POSTBUS_QUOTA_PER_MINUTE=6\n",
        encoding="utf-8",
    )
    merge_env_file(
        path,
        {"POSTBUS_QUOTA_PER_MINUTE": "0", "POSTBUS_SENDERS": SENDERS},
        remove=("POSTBUS_ACS_ENDPOINT",),
    )
    assert path.read_text(encoding="utf-8").splitlines() == [
        "# my project",
        "DATABASE_URL='postgres://db/app'",
        "export POSTBUS_QUOTA_PER_MINUTE=0",
        "",
        "POSTBUS_LOG_LEVEL=debug",
        f"POSTBUS_SENDERS='{SENDERS}'",
    ]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600  # it holds keys


def test_merge_creates_a_missing_file_and_refuses_a_directory(tmp_path: Path) -> None:
    merge_env_file(tmp_path / "new.env", {"A": "1"})
    assert (tmp_path / "new.env").read_text(encoding="utf-8") == "A=1\n"
    with pytest.raises(IsADirectoryError):
        merge_env_file(tmp_path, {"A": "1"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.env"]  # no temporary file left


def test_merge_checks_every_value_before_touching_the_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("KEEP=1\n", encoding="utf-8")
    with pytest.raises(ValueError, match="cannot be written"):
        merge_env_file(path, {"A": "ok", "B": "it's"})
    assert path.read_text(encoding="utf-8") == "KEEP=1\n"
