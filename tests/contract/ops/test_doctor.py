"""``postbus doctor`` on the emulators, with ``--azure`` through azure-mgmt-communication over HTTPS."""

from __future__ import annotations

import base64
import json
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postbus.cli import main
from postbus.emulators.acs_email import EmailEmulator
from postbus.emulators.servicebus import ServiceBusEmulator
from postbus.settings import Settings

SUBSCRIPTION = "5f1c1f0e-6c1d-4a56-9d2f-0f6a3b2c9e11"
ARM_TOKEN = "arm-test-token"


@pytest.fixture
def arm() -> Iterator[EmailEmulator]:
    """An ACS emulator on HTTPS serving the ARM-shaped management responses."""
    with EmailEmulator(tls=True) as emulator:
        yield emulator


def configure_arm(arm: EmailEmulator, **overrides: Any) -> None:
    document: dict[str, Any] = {
        "resource_group": "mail-rg",
        "email_service": "mail",
        "communication_service": "acs",
        "data_location": "Europe",
        "bearer_token": ARM_TOKEN,
        "domains": [
            {"name": "shop.example.com", "sender_usernames": ["orders", "DoNotReply"]},
            {"name": "clinic.example.org", "sender_usernames": ["care"]},
        ],
    }
    document.update(overrides)
    request = urllib.request.Request(
        f"{arm.endpoint}/_emulator/management",
        data=json.dumps(document).encode(),
        method="PUT",
        headers={"Content-Type": "application/json"},
    )
    context = ssl.create_default_context(cafile=str(arm.cert_path))
    with urllib.request.urlopen(request, context=context) as response:
        assert response.status == 200


def _azure_args(arm: EmailEmulator) -> list[str]:
    return [
        "--azure",
        "--subscription",
        SUBSCRIPTION,
        "--resource-group",
        "mail-rg",
        "--email-service",
        "mail",
        "--communication-service",
        "acs",
        "--arm-endpoint",
        arm.endpoint,
        "--arm-token",
        ARM_TOKEN,
        "--arm-ca-bundle",
        str(arm.cert_path),
    ]


def _doctor(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, dict[str, str]]]:
    code = main(["doctor", "--json", *argv])
    out, _ = capsys.readouterr()
    report = json.loads(out)
    assert report["ok"] is (code == 0)
    return code, {check["check"]: check for check in report["checks"]}


def test_doctor_passes_on_a_healthy_emulator_setup_with_azure_checks(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")
    configure_arm(arm)
    assert servicebus.admin_url is not None

    code, checks = _doctor(capsys, "--servicebus-admin", servicebus.admin_url, *_azure_args(arm))

    assert code == 0, checks
    assert {name: check["status"] for name, check in checks.items()} == {
        "settings": "pass",
        "variables": "pass",
        "Service Bus queue": "pass",
        "dead-letter queue": "pass",
        "queue properties": "pass",
        "ACS credentials": "pass",
        "sender aliases": "pass",
        "attachment store": "pass",
        "templates": "pass",
        "telemetry": "pass",
        "email service": "pass",
        "domain shop.example.com": "pass",
        "domain clinic.example.org": "pass",
        "sender usernames": "pass",
        "linked domains": "pass",
    }
    assert "Europe" in checks["email service"]["detail"]


def test_doctor_names_each_failure_and_its_fix(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    arm: EmailEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a wrong ACS key, a queue that does not exist, a user template that cannot render,
    # an unverified domain, a missing sender username and a domain not linked to the service
    monkeypatch.setenv("POSTBUS_ACS_ACCESS_KEY", base64.b64encode(b"not the key").decode())
    monkeypatch.setenv("POSTBUS_QUEUE", "no-such-queue")
    broken = tmp_path / "templates" / "order.confirmation" / "en"
    broken.mkdir(parents=True)
    (broken / "subject.txt.j2").write_text("Order {{ order.no_such_field.deeper }}")
    monkeypatch.setenv("POSTBUS_TEMPLATES_DIR", str(tmp_path / "templates"))
    configure_arm(
        arm,
        domains=[
            {"name": "shop.example.com", "sender_usernames": ["DoNotReply"]},
            {
                "name": "clinic.example.org",
                "sender_usernames": ["care"],
                "verification": {"SPF": "VerificationFailed"},
            },
        ],
        linked_domains=["shop.example.com"],
    )

    # When the doctor runs
    code, checks = _doctor(capsys, *_azure_args(arm))

    # Then each failure is named with a fix, and the exit code is non-zero
    assert code == 1
    failed = {name for name, check in checks.items() if check["status"] == "fail"}
    assert failed == {
        "Service Bus queue",
        "ACS credentials",
        "templates",
        "domain clinic.example.org",
        "sender usernames",
        "linked domains",
    }
    assert "'no-such-queue' does not exist" in checks["Service Bus queue"]["detail"]
    assert "401" in checks["ACS credentials"]["detail"]
    assert "order.confirmation" in checks["templates"]["detail"]
    assert "SPF: VerificationFailed" in checks["domain clinic.example.org"]["detail"]
    assert "no sender username 'orders'" in checks["sender usernames"]["detail"]
    assert "clinic.example.org" in checks["linked domains"]["detail"]
    assert all(checks[name]["fix"] for name in failed)
    assert checks["telemetry"]["status"] == "warn"


def test_doctor_reports_a_bad_setting_as_a_failed_check(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTBUS_CONCURRENCY", "lots")
    code, checks = _doctor(capsys)
    assert code == 1
    assert checks["settings"]["status"] == "fail"
    assert "POSTBUS_CONCURRENCY" in checks["settings"]["detail"]


def test_doctor_prints_a_table_with_fixes(
    servicebus: ServiceBusEmulator, environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["doctor"])
    out, _ = capsys.readouterr()
    assert code == 0  # telemetry is only a warning; queue properties are skipped on the emulator
    assert "skipped: management API not reachable" in out
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in out
    assert "all checks passed" in out


def test_doctor_checks_queue_properties_through_the_emulator_admin_endpoint(
    acs: EmailEmulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from postbus.emulators.servicebus.config import EmulatorConfig

    config = EmulatorConfig.from_queues({"notifications": {"MaxDeliveryCount": 3, "LockDuration": "PT10S"}})
    with ServiceBusEmulator(config, admin_port=0) as servicebus:
        assert servicebus.admin_url is not None
        monkeypatch.setenv("POSTBUS_SERVICEBUS_CONNECTION_STRING", servicebus.connection_string)
        monkeypatch.setenv("POSTBUS_ACS_ENDPOINT", acs.endpoint)
        monkeypatch.setenv("POSTBUS_ACS_ACCESS_KEY", acs.access_key)
        monkeypatch.setenv("POSTBUS_SENDERS", '{"orders": "orders@shop.example.com"}')
        code, checks = _doctor(capsys, "--servicebus-admin", servicebus.admin_url)
    assert code == 1
    detail = checks["queue properties"]["detail"]
    assert checks["queue properties"]["status"] == "fail"
    assert "duplicate detection is off" in detail
    assert "MaxDeliveryCount 3 < 10" in detail
    assert "LockDuration 0:00:10 < 0:00:30" in detail


def test_doctor_checks_every_lane_queue_and_names_the_missing_one(
    servicebus: ServiceBusEmulator,
    environ: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given lanes on, with the bulk lane pointing at a queue that does not exist
    monkeypatch.setenv("POSTBUS_LANES", "true")
    monkeypatch.setenv("POSTBUS_QUEUE_BULK", "no-such-bulk")
    assert servicebus.admin_url is not None
    code, checks = _doctor(capsys, "--servicebus-admin", servicebus.admin_url)
    # Then the critical and normal lanes pass, and the bulk lane's row names its queue and the fix
    assert code == 1
    lanes = {name: check["status"] for name, check in checks.items() if "lane)" in name}
    assert lanes == {
        "Service Bus queue (critical lane)": "pass",
        "dead-letter queue (critical lane)": "pass",
        "queue properties (critical lane)": "pass",
        "Service Bus queue (normal lane)": "pass",
        "dead-letter queue (normal lane)": "pass",
        "queue properties (normal lane)": "pass",
        "Service Bus queue (bulk lane)": "fail",
    }
    bulk = checks["Service Bus queue (bulk lane)"]
    assert "'no-such-bulk' does not exist" in bulk["detail"]
    assert "POSTBUS_QUEUE_BULK" in bulk["fix"]
