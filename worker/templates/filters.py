"""Jinja filters for email templates: money, numbers, dates and times per locale, safe URLs.

Formatting is deliberately simple and deterministic: a small table of conventions per language
(with a few regional variants), no system locale calls and no Babel, so the same input renders
byte-identically on every machine. Languages outside the table get ISO dates and English-style
numbers. Filters read the formatting locale from the reserved ``postbus`` template variable.

>>> format_money("de-DE", 1234.5, "EUR")
'1.234,50\\xa0€'
>>> format_money("en-US", 1234.5, "USD")
'$1,234.50'
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Final

import jinja2

__all__ = ["FILTERS", "format_date", "format_datetime", "format_money", "format_time", "text_direction"]

NBSP: Final = "\u00a0"


@dataclass(frozen=True, slots=True)
class _Style:
    decimal: str
    group: str
    currency: str  # pattern with {s} (symbol) and {n} (number)
    months: tuple[str, ...]
    weekdays: tuple[str, ...]  # Monday first, as date.weekday() counts
    short: str  # date patterns: {d} {dd} {m} {mm} {yyyy} {month} {weekday}
    long: str
    full: str
    clock12: bool
    at: str  # joins {date} and {time}


def _names(text: str) -> tuple[str, ...]:
    return tuple(text.split())


# Tables read better one convention per line than as the formatter would wrap them.
# fmt: off
_EN_MONTHS = _names("January February March April May June July August September October November December")
_EN_DAYS = _names("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")
_DE_MONTHS = _names("Januar Februar März April Mai Juni Juli August September Oktober November Dezember")
_EN = _Style(
    ".", ",", "{s}{n}", _EN_MONTHS, _EN_DAYS,
    "{m}/{d}/{yyyy}", "{month} {d}, {yyyy}", "{weekday}, {month} {d}, {yyyy}", True, "{date} at {time}",
)
_DE = _Style(
    ",", ".", "{n}\u00a0{s}", _DE_MONTHS,
    _names("Montag Dienstag Mittwoch Donnerstag Freitag Samstag Sonntag"),
    "{dd}.{mm}.{yyyy}", "{d}. {month} {yyyy}", "{weekday}, {d}. {month} {yyyy}", False, "{date} um {time}",
)
_STYLES: Final[Mapping[str, _Style]] = {
    "en": _EN,
    "en-us": _EN,
    # Every other English region writes day-month-year and a 24-hour clock.
    "en-*": replace(
        _EN,
        short="{dd}/{mm}/{yyyy}",
        long="{d} {month} {yyyy}",
        full="{weekday} {d} {month} {yyyy}",
        clock12=False,
    ),
    "de": _DE,
    "de-at": replace(_DE, currency="{s}\u00a0{n}", months=("Jänner", *_DE_MONTHS[1:])),
    "de-ch": replace(_DE, decimal=".", group="’", currency="{s}\u00a0{n}"),
    "fr": _Style(
        ",",
        "\u202f",
        "{n}\u00a0{s}",
        _names("janvier février mars avril mai juin juillet août septembre octobre novembre décembre"),
        _names("lundi mardi mercredi jeudi vendredi samedi dimanche"),
        "{dd}/{mm}/{yyyy}",
        "{d} {month} {yyyy}",
        "{weekday} {d} {month} {yyyy}",
        False,
        "{date} à {time}",
    ),
    "es": _Style(
        ",",
        ".",
        "{n}\u00a0{s}",
        _names("enero febrero marzo abril mayo junio julio agosto septiembre octubre noviembre diciembre"),
        _names("lunes martes miércoles jueves viernes sábado domingo"),
        "{dd}/{mm}/{yyyy}",
        "{d} de {month} de {yyyy}",
        "{weekday}, {d} de {month} de {yyyy}",
        False,
        "{date}, {time}",
    ),
    "it": _Style(
        ",",
        ".",
        "{n}\u00a0{s}",
        _names(
            "gennaio febbraio marzo aprile maggio giugno luglio agosto settembre ottobre novembre dicembre"
        ),
        _names("lunedì martedì mercoledì giovedì venerdì sabato domenica"),
        "{dd}/{mm}/{yyyy}",
        "{d} {month} {yyyy}",
        "{weekday} {d} {month} {yyyy}",
        False,
        "{date}, {time}",
    ),
    "nl": _Style(
        ",",
        ".",
        "{s}\u00a0{n}",
        _names("januari februari maart april mei juni juli augustus september oktober november december"),
        _names("maandag dinsdag woensdag donderdag vrijdag zaterdag zondag"),
        "{dd}-{mm}-{yyyy}",
        "{d} {month} {yyyy}",
        "{weekday} {d} {month} {yyyy}",
        False,
        "{date} om {time}",
    ),
    "pt": _Style(
        ",",
        ".",
        "{n}\u00a0{s}",
        _names("janeiro fevereiro março abril maio junho julho agosto setembro outubro novembro dezembro"),
        _names("segunda-feira terça-feira quarta-feira quinta-feira sexta-feira sábado domingo"),
        "{dd}/{mm}/{yyyy}",
        "{d} de {month} de {yyyy}",
        "{weekday}, {d} de {month} de {yyyy}",
        False,
        "{date} às {time}",
    ),
}
# Languages we have no table for: unambiguous ISO dates, English-style numbers, currency codes.
_FALLBACK: Final = replace(
    _EN, currency="{s}\u00a0{n}", short="{yyyy}-{mm}-{dd}", long="{yyyy}-{mm}-{dd}", full="{yyyy}-{mm}-{dd}",
    clock12=False, at="{date} {time}",
)

_SYMBOLS: Final[Mapping[str, str]] = {
    "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "KRW": "₩", "ILS": "₪", "BRL": "R$",
    "CAD": "CA$", "AUD": "A$", "NZD": "NZ$", "MXN": "MX$", "CNY": "CN¥", "HKD": "HK$",
}
# ISO 4217 minor units where they differ from two.
_MINOR_UNITS: Final[Mapping[str, int]] = {
    "JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "UGX": 0, "XAF": 0, "XOF": 0, "PYG": 0,
    "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3, "TND": 3, "IQD": 3, "LYD": 3,
}
# fmt: on
_RTL_LANGUAGES: Final = frozenset({"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "ckb"})
_DATE_STYLES: Final = ("short", "long", "full")


@lru_cache(maxsize=256)
def _style(locale: str) -> _Style:
    key = locale.replace("_", "-").lower()
    language = key.split("-", 1)[0]
    wildcard = f"{language}-*" if "-" in key else language
    return _STYLES.get(key) or _STYLES.get(wildcard) or _STYLES.get(language) or _FALLBACK


def text_direction(locale: str) -> str:
    """``rtl`` for right-to-left languages (Arabic, Hebrew, …), otherwise ``ltr``."""
    return "rtl" if locale.replace("_", "-").lower().split("-", 1)[0] in _RTL_LANGUAGES else "ltr"


def _decimal(value: Any, what: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    try:
        number = Decimal(str(value).strip()) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not number.is_finite():
        raise ValueError(f"{what} must be finite, got {value!r}")
    return number


def _grouped(number: Decimal, digits: int, style: _Style) -> str:
    text = format(abs(number), f",.{digits}f")
    return text.translate({ord(","): style.group, ord("."): style.decimal})


def format_money(locale: str, amount: Any, currency: Any) -> str:
    """``1234.5, "EUR"`` -> ``1.234,50 €`` (de) / ``€1,234.50`` (en); rounds half up to minor units."""
    if not isinstance(currency, str):
        raise TypeError(f"currency must be an ISO 4217 code like 'EUR', got {type(currency).__name__}")
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise ValueError(f"currency must be an ISO 4217 code like 'EUR', got {currency!r}")
    code = currency.upper()
    digits = _MINOR_UNITS.get(code, 2)
    number = _decimal(amount, "amount").quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    style = _style(locale)
    symbol = _SYMBOLS.get(code, code)
    pattern = style.currency
    if pattern == "{s}{n}" and symbol[-1].isalpha():
        pattern = "{s}\u00a0{n}"  # "CHF 12.00", never "CHF12.00"
    text = pattern.format(s=symbol, n=_grouped(number, digits, style))
    return f"-{text}" if number < 0 else text


def format_number(locale: str, value: Any, digits: int | None = None) -> str:
    """Group thousands per locale; ``digits`` fixes the decimals (default: as given, ints as ints)."""
    number = _decimal(value, "value")
    if digits is None:
        exponent = number.as_tuple().exponent
        digits = max(0, -exponent) if isinstance(exponent, int) else 0
    else:
        number = number.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)
    text = _grouped(number, digits, _style(locale))
    return f"-{text}" if number < 0 else text


def _parse(value: Any, *, need_time: bool) -> dt.date:
    if isinstance(value, dt.date):
        parsed: dt.date = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            parsed = (
                dt.datetime.fromisoformat(text) if "T" in text or " " in text else dt.date.fromisoformat(text)
            )
        except ValueError:
            raise ValueError(f"expected an ISO 8601 date or date-time, got {value!r}") from None
    else:
        raise TypeError(f"expected an ISO 8601 date string, got {type(value).__name__}")
    if need_time and not isinstance(parsed, dt.datetime):
        raise ValueError(f"expected a date-time with a time of day, got {value!r}")
    return parsed


def format_date(locale: str, value: Any, style: str = "long") -> str:
    """An ISO date or date-time as a date: ``short`` 28.11.2026, ``long`` 28. November 2026, ``full``.

    A date-time is shown as the calendar date in its own UTC offset (no time-zone conversion).
    """
    if style not in _DATE_STYLES:
        raise ValueError(f"date style must be one of {', '.join(_DATE_STYLES)}, got {style!r}")
    day = _parse(value, need_time=False)
    conventions = _style(locale)
    pattern: str = getattr(conventions, style)
    return pattern.format(
        d=day.day,
        dd=f"{day.day:02d}",
        m=day.month,
        mm=f"{day.month:02d}",
        yyyy=f"{day.year:04d}",
        month=conventions.months[day.month - 1],
        weekday=conventions.weekdays[day.weekday()],
    )


def format_time(locale: str, value: Any) -> str:
    """The wall-clock time of an ISO date-time in its own offset: ``14:30`` or ``2:30 PM`` (en-US)."""
    moment = _parse(value, need_time=True)
    assert isinstance(moment, dt.datetime)  # guaranteed by need_time
    if _style(locale).clock12:
        hour = moment.hour % 12 or 12
        return f"{hour}:{moment.minute:02d}\u00a0{'AM' if moment.hour < 12 else 'PM'}"
    return f"{moment.hour:02d}:{moment.minute:02d}"


def format_datetime(locale: str, value: Any, style: str = "long") -> str:
    """Date and time joined per locale: ``28. November 2026 um 14:30``."""
    moment = _parse(value, need_time=True)
    return _style(locale).at.format(date=format_date(locale, moment, style), time=format_time(locale, moment))


# Absolute http(s) URLs, mailto: and tel:, with no whitespace or control characters anywhere.
_SAFE_URL: Final = re.compile(r"(?:https?://|mailto:|tel:)[^\s\x00-\x1f\x7f]*", re.IGNORECASE)


def safe_url(value: Any) -> str:
    """Pass through http(s), mailto and tel URLs; refuse anything else (``javascript:``, relative)."""
    if not isinstance(value, str):
        raise TypeError(f"URL must be a string, got {type(value).__name__}")
    url = value.strip()
    if _SAFE_URL.fullmatch(url) is None:
        raise ValueError(
            f"refusing URL {value[:80]!r}: only absolute http(s), mailto and tel URLs are allowed"
        )
    return url


# Values worth memoising: immutable scalars (bool is excluded: it is a bad amount, not 1).
_MEMO_TYPES: Final = frozenset({str, int, float, Decimal, dt.date, dt.datetime})


def _contextual(func: Callable[..., str]) -> Callable[..., str]:
    """Make ``func(locale, value, *args)`` a Jinja filter reading the locale from ``postbus``.

    Results are memoised: the same price or date recurs within an email (HTML and text) and across
    emails, and rendering is on the hot path. ``typed=True`` keeps ``1`` and ``1.0`` apart.
    """
    memo = lru_cache(maxsize=4096, typed=True)(func)

    @jinja2.pass_context
    def fil(context: jinja2.runtime.Context, value: Any, *args: Any, **kwargs: Any) -> str:
        meta = context.parent.get("postbus")
        locale = meta.get("locale", "en") if isinstance(meta, dict) else "en"
        if type(value) in _MEMO_TYPES:
            return memo(locale, value, *args, **kwargs)
        return func(locale, value, *args, **kwargs)

    fil.__name__ = func.__name__
    fil.__doc__ = func.__doc__
    return fil


#: Filters every template can use; see docs/templates.md.
FILTERS: Final[Mapping[str, Callable[..., Any]]] = {
    "money": _contextual(format_money),
    "number": _contextual(format_number),
    "date": _contextual(format_date),
    "time": _contextual(format_time),
    "datetime": _contextual(format_datetime),
    "url": safe_url,
}
