"""Doctor and status building blocks: queue expectations, endpoint parsing, ARM config, status rows."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from postbus.emulators.acs_email.management import ManagementConfig
from postbus.settings import load_settings
from postbus.worker.ops import BadInput, OperationInfo, StatusRow
from postbus.worker.ops.azure_checks import AzureTarget, StaticTokenCredential, communication_service_name
from postbus.worker.ops.doctor import EXPECTED_QUEUE, _property_problems
from postbus.worker.ops.status import check_operation_id

GOOD: dict[str, Any] = {
    "requires_duplicate_detection": True,
    "duplicate_detection_history_time_window": timedelta(minutes=10),
    "max_delivery_count": 10,
    "lock_duration": timedelta(minutes=1),
    "requires_session": False,
}


def test_the_bicep_queue_meets_the_expectations() -> None:
    assert _property_problems(GOOD, EXPECTED_QUEUE) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"requires_duplicate_detection": False}, "duplicate detection is off"),
        ({"duplicate_detection_history_time_window": timedelta(minutes=1)}, "duplicate window"),
        ({"max_delivery_count": 3}, "MaxDeliveryCount 3 < 10"),
        ({"lock_duration": timedelta(seconds=5)}, "LockDuration"),
        ({"requires_session": True}, "sessions are required"),
    ],
)
def test_each_property_problem_is_named(change: dict[str, Any], problem: str) -> None:
    (found,) = _property_problems({**GOOD, **change}, EXPECTED_QUEUE)
    assert problem in found


@pytest.mark.parametrize(
    ("endpoint", "name"),
    [
        ("https://contoso-mail.communication.azure.com", "contoso-mail"),
        ("https://contoso.unitedstates.communication.azure.com", "contoso"),
        ("http://127.0.0.1:8025", None),
    ],
)
def test_the_communication_service_comes_from_the_acs_endpoint(endpoint: str, name: str | None) -> None:
    assert communication_service_name(load_settings(acs_endpoint=endpoint)) == name


def test_the_communication_service_comes_from_a_connection_string_too() -> None:
    settings = load_settings(
        acs_connection_string="endpoint=https://acs1.communication.azure.com/;accesskey=a2V5"
    )
    assert communication_service_name(settings) == "acs1"


def test_an_azure_target_needs_a_subscription_uuid() -> None:
    with pytest.raises(BadInput, match="not a subscription id"):
        AzureTarget(subscription_id="prod", resource_group="rg", email_service="mail", credential=None)


def test_the_static_credential_hands_out_its_token() -> None:
    token = StaticTokenCredential("abc").get_token("https://management.azure.com/.default")
    assert token.token == "abc"


def test_the_management_config_round_trips_and_refuses_nonsense() -> None:
    config = ManagementConfig.from_dict(
        {
            "email_service": "mail",
            "domains": ["a.example.com", {"name": "b.example.com", "verification": {"DKIM": "NotStarted"}}],
        }
    )
    assert ManagementConfig.from_dict(config.to_dict()) == config
    assert config.domain("B.EXAMPLE.COM") is not None
    assert config.domains[1].state("DKIM") == "NotStarted"
    assert config.domains[1].state("SPF") == "Verified"
    with pytest.raises(ValueError, match="unknown keys"):
        ManagementConfig.from_dict({"emailService": "mail"})
    with pytest.raises(ValueError, match="verification record"):
        ManagementConfig.from_dict({"domains": [{"name": "a.example.com", "verification": {"SPF": "Maybe"}}]})


def test_status_rows_explain_unknown_and_failed_operations() -> None:
    missing = StatusRow("op", 0, None)
    assert (missing.status, "does not know" in missing.error) == ("NotFound", True)
    failed = StatusRow("op", 1, OperationInfo("op", "Failed", "EmailDropped", "dropped"))
    assert (failed.status, failed.error) == ("Failed", "EmailDropped: dropped")
    assert OperationInfo("op", "Running").accepted
    assert not OperationInfo("op", "Failed").accepted


def test_operation_ids_are_uuids() -> None:
    assert (
        check_operation_id(" 8540C0DE-899F-5CCE-ACB5-3EC493AF3800 ") == "8540c0de-899f-5cce-acb5-3ec493af3800"
    )
    with pytest.raises(BadInput):
        check_operation_id("order-1")
