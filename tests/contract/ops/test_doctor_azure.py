"""``postbus doctor --azure`` against the emulator's ARM responses, for an Azure-managed and a custom domain.

The real azure-mgmt-communication SDK talks HTTPS to the ACS emulator's management routes, which
answer like ARM: the Azure-managed domain is a resource named ``AzureManagedDomain`` whose mail
comes from ``<guid>.azurecomm.net``; a custom domain is named after its DNS name. Only the rows
``--azure`` adds are asserted here (``test_doctor.py`` covers the rest of the checklist).
"""

from __future__ import annotations

import json
import ssl
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from postbus.cli import main
from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.settings import Settings

SUBSCRIPTION = "5f1c1f0e-6c1d-4a56-9d2f-0f6a3b2c9e11"
ARM_TOKEN = "arm-test-token"
MANAGED = "3f0b2c8e-5d1a-4b7c-9e2f-1a2b3c4d5e6f.azurecomm.net"
CUSTOM = "notify.example.com"
AZURE_ROWS = ("email service", "sender usernames", "linked domains")


@pytest.fixture
def arm() -> Iterator[EmailEmulator]:
    with EmailEmulator(tls=True) as emulator:
        yield emulator


def _managed(**extra: Any) -> dict[str, Any]:
    return {
        "name": "AzureManagedDomain",
        "domain_management": "AzureManaged",
        "mail_from_sender_domain": MANAGED,
    } | extra


def _custom(**extra: Any) -> dict[str, Any]:
    return {"name": CUSTOM, "sender_usernames": ["DoNotReply", "orders"]} | extra


def _describe(arm: EmailEmulator, domains: list[dict[str, Any]], linked: list[str]) -> None:
    document = {
        "resource_group": "rg-postbus-dev",
        "email_service": "ecs-postbus",
        "communication_service": "acs-postbus",
        "bearer_token": ARM_TOKEN,
        "domains": domains,
        "linked_domains": linked,
    }
    request = urllib.request.Request(
        f"{arm.endpoint}/_emulator/management",
        data=json.dumps(document).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(
        request, context=ssl.create_default_context(cafile=str(arm.cert_path))
    ) as answer:
        assert answer.status == 200


def _doctor(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    arm: EmailEmulator,
    senders: dict[str, str],
) -> dict[str, dict[str, str]]:
    monkeypatch.setenv("POSTBUS_SENDERS", json.dumps(senders))
    main(
        [
            "doctor",
            "--json",
            "--azure",
            "--subscription",
            SUBSCRIPTION,
            "--resource-group",
            "rg-postbus-dev",
            "--email-service",
            "ecs-postbus",
            "--communication-service",
            "acs-postbus",
            "--arm-endpoint",
            arm.endpoint,
            "--arm-token",
            ARM_TOKEN,
            "--arm-ca-bundle",
            str(arm.cert_path),
        ]
    )
    out, _ = capsys.readouterr()
    return {check["check"]: check for check in json.loads(out)["checks"]}


def _statuses(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {
        name: check["status"]
        for name, check in checks.items()
        if name in AZURE_ROWS or name.startswith("domain ")
    }


def test_a_fresh_deployment_on_the_azure_managed_domain_passes(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given what `azd up` creates: only the Azure-managed domain, linked, senders DoNotReply@<guid>.azurecomm.net
    _describe(arm, [_managed()], linked=["AzureManagedDomain"])
    senders = {alias: f"DoNotReply@{MANAGED}" for alias in ("orders", "returns", "care", "permits")}
    # When the doctor checks the ACS resources
    checks = _doctor(capsys, monkeypatch, arm, senders)
    # Then the senders are found on the domain resource named AzureManagedDomain, and every row passes
    assert _statuses(checks) == {
        "email service": "pass",
        f"domain AzureManagedDomain ({MANAGED})": "pass",
        "sender usernames": "pass",
        "linked domains": "pass",
    }
    assert "5/min" in checks[f"domain AzureManagedDomain ({MANAGED})"]["detail"]
    assert MANAGED in checks["linked domains"]["detail"]


def test_a_custom_domain_still_being_verified_warns_while_no_sender_uses_it(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the deploy guide's steps 1-3: the custom domain exists, DKIM2 is not verified yet, nothing links it
    _describe(
        arm,
        [_managed(), _custom(verification={"DKIM2": "VerificationInProgress", "DMARC": "NotStarted"})],
        linked=["AzureManagedDomain"],
    )
    # When the senders still use the Azure-managed domain
    checks = _doctor(capsys, monkeypatch, arm, {"orders": f"DoNotReply@{MANAGED}"})
    # Then the unfinished domain is a warning, not a failure, and says what is missing
    statuses = _statuses(checks)
    assert statuses[f"domain {CUSTOM}"] == "warn"
    assert "no sender uses it yet" in checks[f"domain {CUSTOM}"]["detail"]
    assert "DKIM2: VerificationInProgress" in checks[f"domain {CUSTOM}"]["detail"]
    assert "fail" not in statuses.values()


def test_a_verified_custom_domain_without_dmarc_is_a_warning(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the four records the guide requires verified, DMARC not, and the domain linked and in use
    _describe(
        arm,
        [_managed(), _custom(verification={"DMARC": "NotStarted"})],
        linked=["AzureManagedDomain", CUSTOM],
    )
    checks = _doctor(capsys, monkeypatch, arm, {"orders": f"orders@{CUSTOM}", "care": f"DoNotReply@{CUSTOM}"})
    # Then sending is not blocked: DMARC is advised, the rest passes
    assert _statuses(checks) == {
        "email service": "pass",
        f"domain AzureManagedDomain ({MANAGED})": "pass",
        f"domain {CUSTOM}": "warn",
        "sender usernames": "pass",
        "linked domains": "pass",
    }
    assert "DMARC: NotStarted" in checks[f"domain {CUSTOM}"]["detail"]


def test_a_custom_domain_in_use_must_be_verified_and_linked(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given senders switched to the custom domain before SPF verified and before it was linked
    _describe(
        arm, [_managed(), _custom(verification={"SPF": "VerificationFailed"})], linked=["AzureManagedDomain"]
    )
    checks = _doctor(
        capsys, monkeypatch, arm, {"orders": f"orders@{CUSTOM}", "returns": f"DoNotReply@{MANAGED}"}
    )
    # Then both problems fail, each with a fix
    statuses = _statuses(checks)
    assert statuses[f"domain {CUSTOM}"] == "fail"
    assert "SPF: VerificationFailed" in checks[f"domain {CUSTOM}"]["detail"]
    assert statuses["linked domains"] == "fail"
    assert f"not linked to acs-postbus: {CUSTOM}" in checks["linked domains"]["detail"]
    assert statuses["sender usernames"] == "pass"
    assert all(checks[name]["fix"] for name, status in statuses.items() if status == "fail")


def test_a_sender_domain_the_email_service_does_not_have_fails_every_row_that_needs_it(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a sender on a domain that is not on the email service at all
    _describe(arm, [_managed()], linked=["AzureManagedDomain"])
    checks = _doctor(capsys, monkeypatch, arm, {"orders": "orders@shop.example.com"})
    # Then the linked-domain check does not pass having checked nothing
    statuses = _statuses(checks)
    assert statuses["sender usernames"] == "fail"
    assert statuses["linked domains"] == "fail"
    assert "shop.example.com" in checks["linked domains"]["detail"]
    assert "shop.example.com is not a sending domain of ecs-postbus" in checks["sender usernames"]["detail"]
