"""``postbus status`` from the delivery record first, and ``postbus report``, on real stores and emulators."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from postbus.cli import main
from postbus.emulators.acs_email import EmailEmulator
from postbus.records import dead_lettered, parse_report, sent
from postbus.records.sqlite import SqliteRecordStore
from postbus.records.url import SqliteLocation, parse_record_url
from postbus.settings import Settings
from postbus.worker.mailer import operation_id_for

from .conftest import make_event, mark_sent


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _path(settings: Settings) -> Path:
    location = parse_record_url(settings.record_url)
    assert isinstance(location, SqliteLocation)
    return location.path


def _bounce(op: str, at: datetime) -> str:
    return json.dumps(
        {
            "id": f"r-{op}",
            "eventType": "Microsoft.Communication.EmailDeliveryReportReceived",
            "eventTime": at.isoformat(),
            "data": {
                "sender": "orders@shop.example.com",
                "recipient": "jane.doe@example.com",
                "messageId": op,
                "status": "Bounced",
                "deliveryAttemptTimeStamp": at.isoformat(),
                "deliveryStatusDetails": {"statusMessage": "550 5.1.1 <jane.doe@example.com>: no such user"},
            },
        }
    )


def _delivered(op: str, at: datetime) -> str:
    return _bounce(op, at).replace('"Bounced"', '"Delivered"')


async def _write(settings: Settings, *writes: object) -> None:
    async with SqliteRecordStore(_path(settings)) as store:
        for write in writes:
            await store.write(write)  # type: ignore[arg-type]


def _sent(
    settings: Settings,
    event_id: str,
    *,
    tenant: str = "contoso",
    type_: str = "order.confirmation",
    at: datetime,
) -> object:
    return sent(
        operation_id=operation_id_for(event_id, namespace=settings.operation_namespace),
        event_id=event_id,
        generation=0,
        tenant=tenant,
        type=type_,
        recipient_domains=["example.com"],
        first_enqueued=at - timedelta(seconds=2),
        attempts=1,
        accepted_at=at,
        at=at,
    )


def test_status_tells_the_whole_story_from_the_record_without_asking_acs(
    environ: Settings, acs: EmailEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    op = operation_id_for("rs1", namespace=environ.operation_namespace)
    asyncio.run(
        _write(
            environ,
            _sent(environ, "rs1", at=now),
            parse_report(_bounce(op, now + timedelta(seconds=3))).as_write(),
        )
    )
    reads_before = acs.stats()["status_reads"]

    code, out, _ = _cli(capsys, "status", "--event-id", "rs1", "--json")
    assert code == 0
    answer = json.loads(out)
    assert answer["acs"] is None  # the record had a final outcome: ACS was not asked
    (record,) = answer["records"]
    assert (record["operation_id"], record["outcome"], record["smtp_code"], record["smtp_status"]) == (
        op,
        "bounced",
        550,
        "5.1.1",
    )
    assert record["recipient_domains"] == ["example.com"]
    assert "jane.doe@example.com" not in out
    assert acs.stats()["status_reads"] == reads_before

    code, out, _ = _cli(capsys, "status", op)
    assert code == 0
    assert "bounced" in out
    assert "550 5.1.1" in out
    assert "accepted by ACS" in out


def test_status_asks_acs_when_the_record_has_no_final_outcome(
    environ: Settings, acs: EmailEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    event = make_event("rs2")
    op = mark_sent(acs, event)
    asyncio.run(_write(environ, _sent(environ, "rs2", at=datetime.now(UTC))))

    code, out, _ = _cli(capsys, "status", "--event-id", "rs2", "--generations", "0", "--json")
    assert code == 0
    answer = json.loads(out)
    assert [r["outcome"] for r in answer["records"]] == ["sent"]
    assert [(r["operation_id"], r["status"]) for r in answer["acs"]] == [(op, "Succeeded")]


def test_status_with_a_dead_lettered_record_names_the_reason(
    environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    op = operation_id_for("rs3", namespace=environ.operation_namespace)
    write = dead_lettered(
        operation_id=op,
        event_id="rs3",
        generation=0,
        tenant="contoso",
        type="order.confirmation",
        recipient_domains=[],
        first_enqueued=None,
        attempts=8,
        reason="RetriesExhausted",
        description="ACS answered 503",
    )
    asyncio.run(_write(environ, write))
    code, out, _ = _cli(capsys, "status", "--event-id", "rs3")
    assert code == 0
    assert "RetriesExhausted" in out
    assert "dead-letter queue" in out


def test_report_summarises_by_status_tenant_and_type_with_the_two_shares(
    environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(UTC)
    writes: list[object] = []
    for n in range(4):
        event_id = f"rp{n}"
        op = operation_id_for(event_id, namespace=environ.operation_namespace)
        tenant = "clinic" if n < 3 else "shop"
        writes.append(_sent(environ, event_id, tenant=tenant, type_="appointment.reminder", at=now))
        report = (
            _bounce(op, now + timedelta(seconds=5)) if n == 2 else _delivered(op, now + timedelta(seconds=5))
        )
        writes.append(parse_report(report).as_write(at=now))
    asyncio.run(_write(environ, *writes))

    code, out, _ = _cli(capsys, "report", "--since", "1h", "--json")
    assert code == 0
    document = json.loads(out)
    assert document["total"] == 4
    assert document["by_outcome"] == {"bounced": 1, "delivered": 3}
    assert document["bounce_failed_share"] == 0.25
    assert document["delivered_within_slo_share"] == 0.75
    rows = {(r["tenant"], r["type"], r["outcome"]): r["count"] for r in document["rows"]}
    assert rows == {
        ("clinic", "appointment.reminder", "bounced"): 1,
        ("clinic", "appointment.reminder", "delivered"): 2,
        ("shop", "appointment.reminder", "delivered"): 1,
    }

    code, out, _ = _cli(capsys, "report", "--since", "1h", "--tenant", "shop", "--json")
    assert json.loads(out)["total"] == 1

    code, out, _ = _cli(capsys, "report", "--since", "1h")
    assert code == 0
    assert "bounced+failed 25.00%" in out
    assert "delivered within 5 minutes 75.00%" in out


def test_report_of_an_empty_range_says_so_plainly(
    environ: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _cli(capsys, "report", "--since", "1h")
    assert code == 0
    assert out.strip().splitlines()[-1] == "0 records; bounced+failed n/a; delivered within 5 minutes n/a"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("report", "--since", "yesterday"), "--since 'yesterday': use a duration ago"),
        (("report", "--since", "1h", "--until", "2h"), "--until is before --since"),
    ],
)
def test_report_bad_input_is_one_line(
    environ: Settings, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, _out, err = _cli(capsys, *argv)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1
