"""``postbus templates list|render``: the typer app on its own and mounted under the root CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from postbus import cli
from postbus.worker.errors import TemplateError, UnknownTemplate
from postbus.worker.templates_cli import app

from .conftest import WriteTree

runner = CliRunner()


@pytest.fixture
def root_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    # The lead registers the group in postbus/cli.py; make sure it is there for these tests either way.
    monkeypatch.setitem(
        cli.COMMANDS, "templates", cli.LazyCommand("postbus.worker.templates_cli:app", "Email templates.")
    )


def test_list_shows_every_type_with_locales_and_source() -> None:
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    for event_type in ("appointment.reminder", "order.confirmation", "permit.approved", "return.label"):
        assert event_type in result.stdout
    assert "de, en" in result.stdout
    assert "shipped" in result.stdout
    rows = {line.split()[1]: line for line in result.stdout.splitlines() if "." in line and "│" in line}
    assert "critical" in rows["appointment.reminder"]
    assert "normal" in rows["order.confirmation"]


def test_list_includes_user_templates(write_tree: WriteTree) -> None:
    user = write_tree({"order.confirmation/en/subject.txt.j2": "Override {{ order.number }}"})
    result = runner.invoke(app, ["list", "--templates-dir", str(user)])
    assert result.exit_code == 0, result.output
    assert "shipped+user" in result.stdout


def test_render_prints_subject_and_text_and_writes_html(tmp_path: Path) -> None:
    html_out = tmp_path / "preview.html"
    result = runner.invoke(
        app, ["render", "order.confirmation", "--locale", "de-DE", "--html-out", str(html_out)]
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Subject: Ihre Bestellung CO-2026-104583 ist bestätigt\n\n")
    assert "VIELEN DANK FÜR IHRE BESTELLUNG" in result.stdout
    assert "<" not in result.stdout
    assert html_out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert "with locale de (asked for de-DE)" in result.stderr


def test_render_uses_data_from_a_file(tmp_path: Path) -> None:
    data_file = tmp_path / "data.json"
    from postbus.worker.rendering import TemplateRenderer

    data = TemplateRenderer().sample_data("permit.approved")
    data["permit"]["number"] = "BP-9"
    data_file.write_text("\ufeff" + json.dumps(data), encoding="utf-8")  # with a BOM, as Notepad saves it

    result = runner.invoke(app, ["render", "permit.approved", "--data", str(data_file)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Subject: Permit BP-9 approved: Residential renovation\n")


def test_render_reads_the_templates_dir_from_the_environment(
    write_tree: WriteTree, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = write_tree({"order.confirmation/en/subject.txt.j2": "From env {{ order.number }}"})
    monkeypatch.setenv("POSTBUS_TEMPLATES_DIR", str(user))
    result = runner.invoke(app, ["render", "order.confirmation"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Subject: From env CO-2026-104583\n")


def test_unknown_type_fails(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "no.such.type"])
    assert result.exit_code != 0
    assert isinstance(result.exception, UnknownTemplate)


def test_a_render_error_fails(tmp_path: Path) -> None:
    data_file = tmp_path / "data.json"
    data_file.write_text('{"order": {}}', encoding="utf-8")
    result = runner.invoke(app, ["render", "order.confirmation", "--data", str(data_file)])
    assert isinstance(result.exception, TemplateError)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "cannot read"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        (b"\xff\xfe", "cannot read"),
    ],
)
def test_bad_data_files_are_usage_errors(tmp_path: Path, content: str | bytes | None, problem: str) -> None:
    data_file = tmp_path / "data.json"
    if isinstance(content, bytes):
        data_file.write_bytes(content)
    elif content is not None:
        data_file.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["render", "return.label", "--data", str(data_file)])
    assert result.exit_code == 2
    assert problem in " ".join(result.stderr.replace("│", " ").split())  # rich draws a box


@pytest.mark.usefixtures("root_cli")
def test_root_cli_reports_errors_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["templates", "render", "no.such.type"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("postbus: error: no template for notification type 'no.such.type'")
    assert err.count("\n") == 1

    bad = tmp_path / "bad.json"
    bad.write_text("{oops", encoding="utf-8")
    assert cli.main(["templates", "render", "return.label", "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("postbus: error: Invalid value for '--data':")
    assert err.count("\n") == 1

    missing_dir = tmp_path / "missing"
    assert cli.main(["templates", "list", "--templates-dir", str(missing_dir)]) == 2
    assert "is not a directory" in capsys.readouterr().err


@pytest.mark.usefixtures("root_cli")
def test_root_cli_renders(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["templates", "render", "appointment.reminder", "--locale", "en-US"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "Subject: Reminder: Dental check-up and cleaning on December 1, 2026 at 2:30\u00a0PM\n"
    )


def test_list_as_json_gives_types_lanes_locales_and_source(write_tree: WriteTree) -> None:
    user = write_tree({"order.confirmation/en/subject.txt.j2": "Override {{ order.number }}"})
    result = runner.invoke(app, ["list", "--json", "--templates-dir", str(user)])
    assert result.exit_code == 0, result.output
    listing = {entry["type"]: entry for entry in json.loads(result.stdout)}
    assert listing["order.confirmation"] == {
        "type": "order.confirmation",
        "lane": "normal",
        "locales": ["de", "en"],
        "source": "shipped+user",
    }
    assert listing["permit.approved"]["source"] == "shipped"
    assert listing["appointment.reminder"]["lane"] == "critical"


def test_check_reports_each_event_a_worker_would_dead_letter(tmp_path: Path) -> None:
    from postbus.worker.rendering import TemplateRenderer

    good = {
        "id": "ok-1",
        "type": "order.confirmation",
        "to": ["a@example.com"],
        "sender": "orders",
        "data": TemplateRenderer().sample_data("order.confirmation"),
    }
    lines = [
        good,
        {**good, "id": "t-1", "type": "invoice.paid"},
        {"event": {**good, "id": "d-1", "data": {}}, "send_at": "2030-01-01T00:00:00Z"},
        "{not json",
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\ufeff" + "".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    result = runner.invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "line 2: type: no template for notification type 'invoice.paid' (known: appointment.reminder, "
        "order.confirmation, permit.approved, return.label)",
        "line 3: data: order.confirmation/en: 'order' is undefined in subject.txt.j2 line 1",
        "line 4: not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        "checked 4, failed 3",
    ]


def test_check_of_a_clean_file_exits_0(tmp_path: Path) -> None:
    from postbus.worker.rendering import TemplateRenderer

    event = {
        "id": "ok-1",
        "type": "permit.approved",
        "to": ["a@example.com"],
        "sender": "permits",
        "data": TemplateRenderer().sample_data("permit.approved"),
    }
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(event) + "\n")
    result = runner.invoke(app, ["check", str(path)])
    assert (result.exit_code, result.stderr) == (0, "checked 1, failed 0\n")


def test_template_check_is_a_publish_check_naming_the_field() -> None:
    from postbus.errors import InvalidEvent
    from postbus.events import parse_event
    from postbus.worker.rendering import TemplateRenderer, template_check

    check = template_check(TemplateRenderer())
    event = parse_event({"id": "a", "type": "nope.x", "to": ["a@example.com"], "sender": "orders"})
    with pytest.raises(InvalidEvent) as raised:
        check(event)
    assert raised.value.field == "type"
