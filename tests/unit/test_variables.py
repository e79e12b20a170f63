"""Unknown POSTBUS_ variables: found in the environment and the env file, with a suggestion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postbus.settings import Settings, env_name
from postbus.variables import DEPLOYMENT_VARIABLES, UnknownVariable, unknown_variables, variables_check

REPO = Path(__file__).resolve().parents[2]


def test_a_misspelt_variable_is_reported_with_the_closest_setting() -> None:
    # Given a typo among real settings and variables of other tools
    environ = {
        "POSTBUS_QUOTA_PER_MINUT": "0",
        "POSTBUS_QUEUE": "orders",
        "PATH": "/usr/bin",
        "POSTBUS_ENV_FILE": "",
    }
    # When the environment is checked
    [unknown] = unknown_variables(environ)
    # Then only the typo is reported, with the setting it was meant to be
    assert unknown == UnknownVariable("POSTBUS_QUOTA_PER_MINUT", "environment", "POSTBUS_QUOTA_PER_MINUTE")
    assert str(unknown) == (
        "POSTBUS_QUOTA_PER_MINUT (from the environment) is not a Postbus setting and is ignored; "
        "did you mean POSTBUS_QUOTA_PER_MINUTE?"
    )


def test_names_are_compared_case_insensitively_like_the_settings_read_them() -> None:
    environ = {"postbus_queue": "orders", "Postbus_Sendrs": "{}", "POSTBUS_ENV_FILE": ""}
    [unknown] = unknown_variables(environ)
    assert (unknown.name, unknown.suggestion) == ("Postbus_Sendrs", "POSTBUS_SENDERS")


def test_a_name_far_from_every_setting_gets_no_suggestion() -> None:
    [unknown] = unknown_variables({"POSTBUS_ZZZ": "1", "POSTBUS_ENV_FILE": ""})
    assert unknown.suggestion is None
    assert str(unknown).endswith("is not a Postbus setting and is ignored")


def test_the_env_file_is_checked_too_and_a_name_is_reported_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "local.env"
    env.write_text("POSTBUS_CONCURENCY=4\nPOSTBUS_QUEUE=orders\nPOSTBUS_ZZZ=1\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    found = unknown_variables({"POSTBUS_ENV_FILE": "local.env", "POSTBUS_ZZZ": "2"})
    assert [(u.name, u.source, u.suggestion) for u in found] == [
        ("POSTBUS_ZZZ", "environment", None),
        ("POSTBUS_CONCURENCY", "env file local.env", "POSTBUS_CONCURRENCY"),
    ]


def test_a_broken_env_file_is_left_to_load_settings(tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    env.write_text('POSTBUS_QUEUE="open\n', encoding="utf-8")
    assert unknown_variables({"POSTBUS_ENV_FILE": str(env)}) == []
    assert unknown_variables({"POSTBUS_ENV_FILE": str(tmp_path / "missing.env")}) == []


def test_every_setting_and_the_deployments_variables_are_known() -> None:
    environ = {env_name(field): "x" for field in Settings.model_fields}
    environ.update(dict.fromkeys(DEPLOYMENT_VARIABLES, "x"))
    environ["POSTBUS_ENV_FILE"] = ""
    assert unknown_variables(environ) == []


def test_the_deployment_variables_are_exactly_what_the_infrastructure_declares() -> None:
    # azd reads parameters from main.parameters.json and writes main.bicep's outputs to its env file.
    parameters = (REPO / "infra" / "main.parameters.json").read_text(encoding="utf-8")
    bicep = (REPO / "infra" / "main.bicep").read_text(encoding="utf-8")
    declared = set(re.findall(r"\$\{(POSTBUS_[A-Z0-9_]+)", parameters))
    declared |= set(re.findall(r"^output (POSTBUS_[A-Z0-9_]+)", bicep, flags=re.MULTILINE))
    settings = {env_name(field) for field in Settings.model_fields}
    assert declared - settings == DEPLOYMENT_VARIABLES


def test_the_doctor_row_passes_or_warns_with_every_name() -> None:
    assert variables_check({"POSTBUS_ENV_FILE": ""}) == ("pass", "no unknown POSTBUS_ variables", "")
    status, detail, fix = variables_check(
        {"POSTBUS_QUOTA_PER_MINUT": "0", "POSTBUS_ZZZ": "1", "POSTBUS_ENV_FILE": ""}
    )
    assert status == "warn"
    assert detail == (
        "not settings, ignored: POSTBUS_QUOTA_PER_MINUT (did you mean POSTBUS_QUOTA_PER_MINUTE?); POSTBUS_ZZZ"
    )
    assert fix == "rename or remove them"
