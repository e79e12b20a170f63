"""Locale formatting filters: deterministic money, numbers, dates, times and safe URLs."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from postbus.worker.templates.filters import (
    format_date,
    format_datetime,
    format_money,
    format_number,
    format_time,
    safe_url,
    text_direction,
)

NB = "\u00a0"


@pytest.mark.parametrize(
    ("locale", "amount", "currency", "expected"),
    [
        ("en", 1234.5, "EUR", "€1,234.50"),
        ("en-US", 1234.5, "USD", "$1,234.50"),
        ("en-GB", 0.1 + 0.2, "GBP", "£0.30"),
        ("en", 12, "CHF", f"CHF{NB}12.00"),
        ("de", 1234.5, "EUR", f"1.234,50{NB}€"),
        ("de-DE", -10, "EUR", f"-10,00{NB}€"),
        ("de-AT", 1234.5, "EUR", f"€{NB}1.234,50"),
        ("de-CH", 1234.5, "CHF", f"CHF{NB}1’234.50"),
        ("fr", 1234567.891, "EUR", f"1\u202f234\u202f567,89{NB}€"),
        ("nl", 5, "EUR", f"€{NB}5,00"),
        ("es", "19.995", "EUR", f"20,00{NB}€"),  # half up, from a string
        ("en", Decimal("2.675"), "USD", "$2.68"),
        ("ja", 1500, "JPY", f"¥{NB}1,500"),  # no table for ja: English numbers, symbol spaced
        ("en", 1500.4, "jpy", "¥1,500"),  # zero minor units, code case-insensitive
        ("en", 1.2345, "KWD", f"KWD{NB}1.235"),  # three minor units
    ],
)
def test_money(locale: str, amount: Any, currency: str, expected: str) -> None:
    assert format_money(locale, amount, currency) == expected


@pytest.mark.parametrize(
    ("amount", "currency", "error"),
    [
        (True, "EUR", TypeError),
        (None, "EUR", TypeError),
        ([1], "EUR", TypeError),
        ("abc", "EUR", ValueError),
        (float("nan"), "EUR", ValueError),
        ("Infinity", "EUR", ValueError),
        (1, "EURO", ValueError),
        (1, "€", ValueError),
        (1, None, TypeError),
    ],
)
def test_money_rejects_bad_input(amount: Any, currency: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        format_money("en", amount, currency)


@pytest.mark.parametrize(
    ("locale", "value", "digits", "expected"),
    [("en", 1234567, None, "1,234,567"), ("de", 1234.5, None, "1.234,5"), ("de", 2.345, 2, "2,35")],
)
def test_number(locale: str, value: Any, digits: int | None, expected: str) -> None:
    assert format_number(locale, value, digits) == expected


@pytest.mark.parametrize(
    ("locale", "style", "expected"),
    [
        ("en", "long", "December 1, 2026"),
        ("en-US", "full", "Tuesday, December 1, 2026"),
        ("en-US", "short", "12/1/2026"),
        ("en-GB", "long", "1 December 2026"),
        ("en-AU", "short", "01/12/2026"),
        ("de", "long", "1. Dezember 2026"),
        ("de-DE", "full", "Dienstag, 1. Dezember 2026"),
        ("de", "short", "01.12.2026"),
        ("fr", "full", "mardi 1 décembre 2026"),
        ("es", "long", "1 de diciembre de 2026"),
        ("it", "long", "1 dicembre 2026"),
        ("nl", "short", "01-12-2026"),
        ("pt-BR", "full", "terça-feira, 1 de dezembro de 2026"),
        ("pl", "long", "2026-12-01"),
    ],
)
def test_date_styles(locale: str, style: str, expected: str) -> None:
    assert format_date(locale, "2026-12-01", style) == expected


def test_date_of_a_date_time_is_the_day_in_its_own_offset() -> None:
    # 23:30 in New York is already the next day in UTC; show the local calendar day.
    assert format_date("en", "2026-12-01T23:30:00-05:00") == "December 1, 2026"
    assert format_date("de", dt.date(2027, 1, 3)) == "3. Januar 2027"
    assert format_date("de-AT", "2027-01-03") == "3. Jänner 2027"


@pytest.mark.parametrize(
    ("locale", "expected_time", "expected_datetime"),
    [
        ("en", f"2:05{NB}PM", f"December 1, 2026 at 2:05{NB}PM"),
        ("en-GB", "14:05", "1 December 2026 at 14:05"),
        ("de", "14:05", "1. Dezember 2026 um 14:05"),
        ("fr", "14:05", "1 décembre 2026 à 14:05"),
        ("sv", "14:05", "2026-12-01 14:05"),
    ],
)
def test_time_and_datetime(locale: str, expected_time: str, expected_datetime: str) -> None:
    value = "2026-12-01T14:05:00+01:00"
    assert format_time(locale, value) == expected_time
    assert format_datetime(locale, value) == expected_datetime


def test_twelve_hour_clock_edges() -> None:
    assert format_time("en-US", "2026-12-01T00:15:00Z") == f"12:15{NB}AM"
    assert format_time("en-US", "2026-12-01T12:00:00Z") == f"12:00{NB}PM"


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda: format_date("en", "yesterday"), ValueError),
        (lambda: format_date("en", 20261201), TypeError),
        (lambda: format_date("en", "2026-12-01", "medium"), ValueError),
        (lambda: format_time("en", "2026-12-01"), ValueError),
        (lambda: format_datetime("en", "2026-13-01T10:00:00"), ValueError),
    ],
)
def test_dates_reject_bad_input(call: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        call()


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.contoso.example/orders/1?x=1&y=2",
        "HTTP://example.com",
        "mailto:help@contoso.example",
        "tel:+4930555",
        "  https://padded.example/  ",
    ],
)
def test_safe_url_accepts_web_mail_and_phone_links(url: str) -> None:
    assert safe_url(url) == url.strip()


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html;base64,PHNjcmlwdD4=",
        "//evil.example/x",
        "/relative/path",
        "https://exa mple.com",
        "https://example.com/\nSet-Cookie: x",
        "vbscript:msgbox",
        "",
    ],
)
def test_safe_url_refuses_everything_else(url: str) -> None:
    with pytest.raises(ValueError, match="refusing URL"):
        safe_url(url)


def test_text_direction() -> None:
    assert text_direction("ar-EG") == "rtl"
    assert text_direction("he") == "rtl"
    assert text_direction("de-DE") == "ltr"
