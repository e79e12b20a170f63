"""The renderer: shipped types, locale fallback, strictness, escaping, user overlays, errors."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from postbus.errors import SettingsError
from postbus.worker.errors import TemplateError, UnknownTemplate
from postbus.worker.rendering import RenderedEmail, TemplateRenderer, fallback_chain

from .conftest import WriteTree

SHIPPED_TYPES = ["appointment.reminder", "order.confirmation", "permit.approved", "return.label"]
HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>|<!--|<!DOCTYPE", re.IGNORECASE)

USER_SUBJECT = "{{ customer.name }}, your order {{ order.number }} is in"
INVOICE_FILES = {
    "invoice.paid/sample.json": '{"invoice": {"number": "INV-1", "amount": 12.5, "currency": "EUR"}}',
    "invoice.paid/en/subject.txt.j2": "Invoice {{ invoice.number }} paid",
    "invoice.paid/en/body.html.j2": (
        '{% extends "_layout/base.html.j2" %}{% import "_layout/components.html.j2" as ui %}'
        "{% block title %}Invoice {{ invoice.number }}{% endblock %}"
        "{% block content %}{{ ui.h1('Paid') }}{% call ui.p() %}We received "
        "{{ invoice.amount | money(invoice.currency) }}.{% endcall %}{% endblock %}"
    ),
    "invoice.paid/en/body.txt.j2": "We received {{ invoice.amount | money(invoice.currency) }}.",
}


def sample(renderer: TemplateRenderer, event_type: str, **changes: Any) -> dict[str, Any]:
    data = renderer.sample_data(event_type)
    data.update(changes)
    return data


# -- every shipped type ----------------------------------------------------------------------


def test_the_four_shipped_types_exist_in_english_and_german(shipped: TemplateRenderer) -> None:
    assert shipped.types() == SHIPPED_TYPES
    for event_type in SHIPPED_TYPES:
        assert {"de", "en"} <= set(shipped.locales(event_type))
        assert shipped.source(event_type) == "shipped"


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("event_type", SHIPPED_TYPES)
def test_every_shipped_type_renders_in_every_locale_with_its_sample(
    shipped: TemplateRenderer, event_type: str, locale: str
) -> None:
    # Given the type's own sample data, when rendered, then all three parts are complete and sane.
    email = shipped.render(event_type, locale=locale, data=shipped.sample_data(event_type), tenant="contoso")

    assert isinstance(email, RenderedEmail)
    assert email.subject
    assert email.subject == email.subject.strip()
    assert "\n" not in email.subject
    assert "\r" not in email.subject
    assert email.html.startswith("<!DOCTYPE html>")
    assert f'<html lang="{locale}"' in email.html
    assert email.html.count("<h1") == 1
    assert 'class="pb-preheader"' in email.html
    assert "{{" not in email.html
    assert "{%" not in email.html
    assert email.text.endswith("\n")
    assert len(email.text) > 200
    assert HTML_TAG.search(email.text) is None, HTML_TAG.search(email.text)
    assert "None" not in email.text
    assert "None" not in email.html


def test_german_templates_format_money_and_dates_the_german_way(shipped: TemplateRenderer) -> None:
    email = shipped.render(
        "order.confirmation", locale="de-DE", data=shipped.sample_data("order.confirmation")
    )
    assert email.subject == "Ihre Bestellung CO-2026-104583 ist bestätigt"
    assert "138,35\u00a0€" in email.text
    assert "27. November 2026" in email.text
    assert "Mittwoch, 2. Dezember 2026" in email.html


def test_sample_data_is_a_fresh_copy(shipped: TemplateRenderer) -> None:
    first = shipped.sample_data("order.confirmation")
    first["order"]["number"] = "changed"
    assert shipped.sample_data("order.confirmation")["order"]["number"] == "CO-2026-104583"


def test_order_sample_totals_add_up() -> None:
    # The traffic generator copies these shapes; keep the arithmetic honest.
    data = TemplateRenderer().sample_data("order.confirmation")["order"]
    lines = sum(round(item["unit_price"] * item["quantity"], 2) for item in data["items"])
    assert round(lines, 2) == data["subtotal"]
    expected = data["subtotal"] - data["discount"] + data["shipping"]
    expected += 0 if data["tax_included"] else data["tax"]
    assert round(expected, 2) == data["total"]


# -- locale fallback -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("de-DE", ["de-de", "de", "en"]),
        ("de_CH", ["de-ch", "de", "en"]),
        ("EN", ["en"]),
        ("zh-Hant-TW", ["zh-hant-tw", "zh-hant", "zh", "en"]),
        ("", ["en"]),
        ("../../etc/passwd", ["en"]),
        ("de DE", ["en"]),
    ],
)
def test_fallback_chain_goes_exact_then_language_then_english(locale: str, chain: list[str]) -> None:
    assert fallback_chain(locale) == chain


@pytest.mark.parametrize(
    ("requested", "used"),
    [
        ("de-DE", "de"),
        ("de-AT", "de"),
        ("DE", "de"),
        ("de", "de"),
        ("fr-FR", "en"),
        ("", "en"),
        ("en-GB", "en"),
    ],
)
def test_resolve_locale_falls_back(shipped: TemplateRenderer, requested: str, used: str) -> None:
    assert shipped.resolve_locale("order.confirmation", requested) == used


def test_an_exact_regional_folder_wins_over_the_language(write_tree: WriteTree) -> None:
    user = write_tree({"order.confirmation/de-CH/subject.txt.j2": "Grüezi {{ customer.name }}"})
    for name in ("body.html.j2", "body.txt.j2"):
        source = Path(__file__).parents[3] / "worker/templates/order.confirmation/de" / name
        (user / "order.confirmation/de-CH" / name).write_text(
            source.read_text(encoding="utf-8"), encoding="utf-8"
        )
    renderer = TemplateRenderer(user_dir=user)
    data = renderer.sample_data("order.confirmation")

    assert renderer.render("order.confirmation", locale="de-CH", data=data).subject == "Grüezi Jamie Rivera"
    assert renderer.render("order.confirmation", locale="de-DE", data=data).subject.startswith(
        "Ihre Bestellung"
    )
    assert renderer.locales("order.confirmation") == ["de", "de-CH", "en"]


def test_regional_formatting_follows_the_requested_locale_within_the_language(
    shipped: TemplateRenderer,
) -> None:
    data = shipped.sample_data("order.confirmation")
    swiss = shipped.render("order.confirmation", locale="de-CH", data=data)
    us = shipped.render("order.confirmation", locale="en-US", data=data)
    british = shipped.render("order.confirmation", locale="en-GB", data=data)
    french = shipped.render("order.confirmation", locale="fr-FR", data=data)

    assert "Gesamtsumme:    €\u00a0138.35" in swiss.text  # German text, Swiss number format
    assert "November 27, 2026" in us.text
    assert "€138.35" in us.text
    assert "27 November 2026" in british.text
    # No French templates: English text, and English formatting to match it.
    assert french.subject.startswith("Your order")
    assert "November 27, 2026" in french.text


# -- strictness and errors -------------------------------------------------------------------


def test_a_missing_variable_is_a_template_error_naming_type_locale_file_and_variable(
    shipped: TemplateRenderer,
) -> None:
    data = shipped.sample_data("order.confirmation")
    del data["customer"]

    with pytest.raises(TemplateError) as caught:
        shipped.render("order.confirmation", locale="de-DE", data=data)

    message = str(caught.value)
    assert message.startswith("order.confirmation/de: 'customer' is undefined in body.html.j2 line ")
    assert "\n" not in message
    assert caught.value.reason == "TemplateError"


def test_a_missing_nested_key_is_a_template_error(shipped: TemplateRenderer) -> None:
    data = shipped.sample_data("appointment.reminder")
    del data["appointment"]["clinician"]
    with pytest.raises(TemplateError, match=r"appointment.reminder/en: .*clinician"):
        shipped.render("appointment.reminder", locale="en", data=data)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"support_url": "javascript:alert(1)"}, "refusing URL"),
        ({"support_url": 42}, "URL must be a string"),
        ({"shipping_address": "Hauptstraße 12, Berlin"}, "'str object' has no attribute 'lines'"),
    ],
)
def test_bad_filter_input_is_a_template_error(
    shipped: TemplateRenderer, change: dict[str, Any], problem: str
) -> None:
    with pytest.raises(TemplateError, match=re.escape(problem)):
        shipped.render(
            "order.confirmation", locale="en", data=sample(shipped, "order.confirmation", **change)
        )


def test_a_non_numeric_amount_is_a_template_error(shipped: TemplateRenderer) -> None:
    data = shipped.sample_data("order.confirmation")
    data["order"]["total"] = "a lot"
    with pytest.raises(TemplateError, match=r"order.confirmation/en: ValueError: amount must be a number"):
        shipped.render("order.confirmation", locale="en", data=data)


def test_unknown_type_raises_unknown_template(shipped: TemplateRenderer) -> None:
    with pytest.raises(UnknownTemplate, match=r"'no\.such\.type'") as caught:
        shipped.render("no.such.type", locale="en", data={})
    assert caught.value.reason == "UnknownTemplate"
    with pytest.raises(UnknownTemplate):
        shipped.locales("../order.confirmation")
    with pytest.raises(UnknownTemplate):
        shipped.sample_data("_layout")


def test_a_syntax_error_is_a_template_error_every_time(write_tree: WriteTree) -> None:
    files = dict(INVOICE_FILES)
    files["invoice.paid/en/body.txt.j2"] = "{% if invoice.number %}unclosed"
    renderer = TemplateRenderer(user_dir=write_tree(files))
    data = renderer.sample_data("invoice.paid")

    for _ in range(2):
        with pytest.raises(TemplateError, match=r"^invoice.paid/en: syntax error: .* in body.txt.j2 line 1$"):
            renderer.render("invoice.paid", locale="en", data=data)


def test_any_exception_while_rendering_is_a_template_error(write_tree: WriteTree) -> None:
    files = dict(INVOICE_FILES)
    files["invoice.paid/en/body.txt.j2"] = "{{ 1 // invoice.zero }}"
    files["invoice.paid/sample.json"] = (
        '{"invoice": {"number": "INV-1", "amount": 1, "currency": "EUR", "zero": 0}}'
    )
    renderer = TemplateRenderer(user_dir=write_tree(files))
    with pytest.raises(
        TemplateError, match=r"^invoice.paid/en: ZeroDivisionError: .* in body.txt.j2 line 1$"
    ):
        renderer.render("invoice.paid", locale="en", data=renderer.sample_data("invoice.paid"))


# -- escaping, subject and determinism -------------------------------------------------------


def test_html_escapes_data_and_plain_text_keeps_it_verbatim(shipped: TemplateRenderer) -> None:
    attack = '<script>alert("x")</script> & <b>bold</b>'
    data = sample(shipped, "order.confirmation", customer={"name": attack})
    data["brand"]["name"] = '"><img src=x onerror=alert(1)>'

    email = shipped.render("order.confirmation", locale="en", data=data)

    assert "<script>" not in email.html
    assert "<b>" not in email.html
    assert "<img src=x" not in email.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in email.html
    assert "&#34;&gt;&lt;img src=x onerror=alert(1)&gt;" in email.html
    assert f"Hi {attack}," in email.text


def test_subject_is_one_stripped_line_even_when_data_has_newlines(shipped: TemplateRenderer) -> None:
    data = shipped.sample_data("order.confirmation")
    data["order"]["number"] = "  A-1\r\nBcc: victim@example.com\u2028\tX  "
    email = shipped.render("order.confirmation", locale="en", data=data)
    assert email.subject == "Your order A-1 Bcc: victim@example.com X is confirmed"


def test_rendering_is_deterministic_across_calls_and_renderers(shipped: TemplateRenderer) -> None:
    for event_type in SHIPPED_TYPES:
        data = shipped.sample_data(event_type)
        first = shipped.render(event_type, locale="de-DE", data=data, tenant="t")
        again = shipped.render(event_type, locale="de-DE", data=shipped.sample_data(event_type), tenant="t")
        fresh = TemplateRenderer().render(event_type, locale="de-DE", data=data, tenant="t")
        assert first == again == fresh


def test_render_does_not_mutate_the_callers_data(shipped: TemplateRenderer) -> None:
    data = shipped.sample_data("return.label")
    before = repr(data)
    shipped.render("return.label", locale="en", data=data)
    assert repr(data) == before
    assert "postbus" not in data


def test_json_null_renders_as_nothing(shipped: TemplateRenderer) -> None:
    data = shipped.sample_data("appointment.reminder")
    data["appointment"]["clinician"] = None
    email = shipped.render("appointment.reminder", locale="en", data=data)
    assert "None" not in email.text
    assert "With:       \n" in email.text


def test_tenant_names_the_sender_when_data_has_no_brand(shipped: TemplateRenderer) -> None:
    data = shipped.sample_data("permit.approved")
    del data["brand"]
    email = shipped.render("permit.approved", locale="en", data=data, tenant="Fabrikam Permits")
    assert "Fabrikam Permits" in email.html
    assert "Fabrikam Permits" in email.text


# -- user templates --------------------------------------------------------------------------


def test_a_user_directory_overrides_one_file_and_adds_a_type(write_tree: WriteTree) -> None:
    user = write_tree({"order.confirmation/en/subject.txt.j2": USER_SUBJECT, **INVOICE_FILES})
    renderer = TemplateRenderer(user_dir=user)
    shipped_renderer = TemplateRenderer()
    data = renderer.sample_data("order.confirmation")

    overridden = renderer.render("order.confirmation", locale="en", data=data)
    original = shipped_renderer.render("order.confirmation", locale="en", data=data)

    assert overridden.subject == "Jamie Rivera, your order CO-2026-104583 is in"
    assert overridden.html == original.html  # the body still comes from the shipped tree
    assert renderer.render("order.confirmation", locale="de", data=data).subject.startswith("Ihre Bestellung")
    assert renderer.types() == sorted([*SHIPPED_TYPES, "invoice.paid"])
    assert renderer.source("order.confirmation") == "shipped+user"
    assert renderer.source("invoice.paid") == "user"

    invoice = renderer.render("invoice.paid", locale="de-DE", data=renderer.sample_data("invoice.paid"))
    assert invoice.subject == "Invoice INV-1 paid"
    assert "We received €12.50." in invoice.html  # shared layout and components, en fallback
    assert invoice.html.startswith("<!DOCTYPE html>")


def test_a_user_layout_overrides_the_shipped_layout(write_tree: WriteTree) -> None:
    user = write_tree({"_layout/base.txt.j2": "{% block content %}{% endblock %}\n-- custom footer"})
    renderer = TemplateRenderer(user_dir=user)
    email = renderer.render("return.label", locale="en", data=renderer.sample_data("return.label"))
    assert email.text.endswith("-- custom footer\n")


def test_an_incomplete_user_locale_or_a_stray_folder_is_ignored(write_tree: WriteTree) -> None:
    user = write_tree(
        {
            "return.label/fr/subject.txt.j2": "Votre étiquette",
            "return.label/Assets/logo.txt": "not a locale",
            "return.label/_partials/x.j2": "",
        }
    )
    renderer = TemplateRenderer(user_dir=user)
    assert renderer.locales("return.label") == ["de", "en"]
    assert renderer.resolve_locale("return.label", "fr") == "en"


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({k: v for k, v in INVOICE_FILES.items() if not k.endswith("sample.json")}, "has no sample.json"),
        ({k.replace("/en/", "/de/"): v for k, v in INVOICE_FILES.items()}, "has no complete 'en/' folder"),
    ],
)
def test_a_user_type_without_sample_or_english_is_a_settings_error(
    write_tree: WriteTree, files: dict[str, str], problem: str
) -> None:
    with pytest.raises(SettingsError, match=problem):
        TemplateRenderer(user_dir=write_tree(files))


def test_a_missing_user_directory_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="does not exist"):
        TemplateRenderer(user_dir=tmp_path / "nope")


def test_unreadable_user_sample_is_a_template_error(write_tree: WriteTree) -> None:
    files = dict(INVOICE_FILES)
    files["invoice.paid/sample.json"] = "[1, 2]"
    renderer = TemplateRenderer(user_dir=write_tree(files))
    with pytest.raises(TemplateError, match="must hold a JSON object"):
        renderer.sample_data("invoice.paid")


def test_a_build_without_the_shipped_templates_fails_loudly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an installation whose template folders were left out of the package data
    import postbus.worker.rendering

    empty = tmp_path / "templates"
    (empty / "_layout").mkdir(parents=True)
    monkeypatch.setattr(postbus.worker.rendering, "SHIPPED_TEMPLATES", empty)

    # Then the worker cannot start, instead of dead-lettering every message as UnknownTemplate.
    with pytest.raises(SettingsError, match="built without its template files"):
        TemplateRenderer()
