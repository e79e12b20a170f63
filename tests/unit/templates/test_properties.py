"""Property tests: arbitrary strings in data never break rendering and are always escaped in HTML."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from postbus.worker.rendering import TemplateRenderer

# Markers that HTML escaping leaves alone, so every place a value lands in the output can be found.
OPEN, CLOSE = "\u27e6", "\u27e7"
text_values = st.text(alphabet=st.characters(blacklist_characters=OPEN + CLOSE), max_size=60)
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_RENDERER = TemplateRenderer()  # module-level: hypothesis calls the test many times


def assert_one_clean_line(subject: str) -> None:
    assert subject == subject.strip()
    assert "  " not in subject
    assert not any(ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F or ch in "\u2028\u2029" for ch in subject)


def _occurrences(output: str) -> list[str]:
    return re.findall(re.escape(OPEN) + "(.*?)" + re.escape(CLOSE), output, flags=re.DOTALL)


@SETTINGS
@given(name=text_values, item=text_values, line=text_values, locale=st.sampled_from(["en", "de-DE", "fr"]))
def test_arbitrary_strings_render_and_are_escaped_everywhere_in_html(
    name: str, item: str, line: str, locale: str
) -> None:
    data = _RENDERER.sample_data("order.confirmation")
    data["customer"]["name"] = f"{OPEN}{name}{CLOSE}"
    data["order"]["items"][0]["name"] = f"{OPEN}{item}{CLOSE}"
    data["shipping_address"]["lines"] = [f"{OPEN}{line}{CLOSE}"]

    email = _RENDERER.render("order.confirmation", locale=locale, data=data)

    found = _occurrences(email.html)
    assert len(found) >= 4  # preheader, greeting, item row, address
    assert set(found) <= {str(escape(name)), str(escape(item)), str(escape(line))}
    assert_one_clean_line(email.subject)
    assert f"{OPEN}{name}{CLOSE}" in email.text  # plain text is not HTML: verbatim


@SETTINGS
@given(number=st.text(max_size=40), service=text_values)
def test_arbitrary_strings_keep_the_subject_on_one_stripped_line(number: str, service: str) -> None:
    data = _RENDERER.sample_data("return.label")
    data["order"]["number"] = number
    email = _RENDERER.render("return.label", locale="en", data=data)
    assert_one_clean_line(email.subject)

    reminder = _RENDERER.sample_data("appointment.reminder")
    reminder["appointment"]["service"] = f"{OPEN}{service}{CLOSE}"
    rendered = _RENDERER.render("appointment.reminder", locale="de", data=reminder)
    assert set(_occurrences(rendered.html)) == {str(escape(service))}
    assert_one_clean_line(rendered.subject)
