"""POSTBUS_RECORD_URL and friends: parsed at start, a wrong one fails in one line naming it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from postbus.errors import SettingsError
from postbus.records.store import MemoryRecordStore, record_store
from postbus.records.url import SqliteLocation, TableLocation, parse_record_url
from postbus.settings import load_settings

KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///.postbus/records.db", SqliteLocation(Path(".postbus/records.db"))),
        ("sqlite:////var/lib/postbus/records.db", SqliteLocation(Path("/var/lib/postbus/records.db"))),
        (
            "https://stpostbus.table.core.windows.net/deliveryrecords",
            TableLocation("https://stpostbus.table.core.windows.net", "stpostbus", "deliveryrecords"),
        ),
        (
            "http://127.0.0.1:10002/devstoreaccount1/records",
            TableLocation("http://127.0.0.1:10002/devstoreaccount1", "devstoreaccount1", "records"),
        ),
        (
            "https://localhost:10002/devstoreaccount1/Records2",
            TableLocation("https://localhost:10002/devstoreaccount1", "devstoreaccount1", "Records2"),
        ),
    ],
)
def test_record_urls_name_a_file_or_a_table(url: str, expected: SqliteLocation | TableLocation) -> None:
    assert parse_record_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgres://db/records", "is not a record store URL; use sqlite:///"),
        ("records.db", "is not a record store URL"),
        ("sqlite://records.db", "use sqlite:///path/records.db"),
        ("sqlite:///", "names no database file"),
        ("sqlite:///state/", "names no database file"),
        ("https://stpostbus.table.core.windows.net/", "the path must be /<table>"),
        ("https://stpostbus.table.core.windows.net/a/b", "the path must be /<table>"),
        ("https://stpostbus.table.core.windows.net/7records", "table name '7records'"),
        ("https://stpostbus.table.core.windows.net/tables", "table name 'tables'"),
        ("https://st-postbus.table.core.windows.net/records", "storage account 'st-postbus'"),
        ("http://stpostbus.table.core.windows.net/records", "plain http is only for a local emulator"),
        ("http://127.0.0.1:10002/records", "the path must be /<account>/<table>"),
        ("https://stpostbus.table.core.windows.net/records?sv=2024", "use sqlite:///path/records.db"),
    ],
)
def test_a_wrong_url_is_refused_with_the_reason(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_record_url(url)


def test_defaults_are_an_sqlite_file_in_the_state_folder_and_30_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTBUS_RECORD_URL")  # the suite points it at a temporary file
    settings = load_settings()
    assert parse_record_url(settings.record_url) == SqliteLocation(Path(".postbus/records.db"))
    assert settings.record_retention_days == 30
    assert settings.record_account_key is None


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"POSTBUS_RECORD_URL": "mysql://db/records"},
            "POSTBUS_RECORD_URL: 'mysql://db/records' is not a record store URL",
        ),
        (
            {"POSTBUS_RECORD_URL": "http://127.0.0.1:10002/devstoreaccount1/records"},
            "POSTBUS_RECORD_URL: a plain-http table (an emulator) needs POSTBUS_RECORD_ACCOUNT_KEY",
        ),
        (
            {"POSTBUS_RECORD_ACCOUNT_KEY": KEY},
            "POSTBUS_RECORD_ACCOUNT_KEY needs a table URL in POSTBUS_RECORD_URL",
        ),
        (
            {
                "POSTBUS_RECORD_URL": "https://stpostbus.table.core.windows.net/records",
                "POSTBUS_RECORD_ACCOUNT_KEY": "not*base64",
            },
            "POSTBUS_RECORD_ACCOUNT_KEY: not a base64 account key",
        ),
        (
            {"POSTBUS_RECORD_RETENTION_DAYS": "0"},
            "POSTBUS_RECORD_RETENTION_DAYS: Input should be greater than or equal to 1",
        ),
    ],
)
def test_a_bad_record_setting_fails_in_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)
    assert KEY not in str(caught.value)


def test_the_account_key_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBUS_RECORD_URL", "http://127.0.0.1:10002/devstoreaccount1/records")
    monkeypatch.setenv("POSTBUS_RECORD_ACCOUNT_KEY", KEY)
    settings = load_settings()
    assert KEY not in repr(settings)
    assert settings.record_account_key is not None
    assert settings.record_account_key.get_secret_value() == KEY


async def test_the_factory_does_not_touch_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POSTBUS_RECORD_URL")
    store = record_store(load_settings())
    await store.close()
    assert not (tmp_path / ".postbus").exists()  # opened lazily, on first use


async def test_the_memory_fake_can_play_an_unreachable_store() -> None:
    from postbus.records.errors import RecordStoreUnavailable

    store = MemoryRecordStore()
    store.fail_with = RecordStoreUnavailable("memory: down")
    with pytest.raises(RecordStoreUnavailable, match="memory: down"):
        await store.get("op")
    assert store.writes == 0
