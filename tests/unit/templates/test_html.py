"""Structure and accessibility checks on the shipped HTML bodies."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from postbus.worker.rendering import TemplateRenderer

VOID = {"meta", "br", "img", "hr", "link", "input", "col", "source", "wbr"}


class _Checker(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.headings: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "a":
            self.links.append(attributes.get("href") or "")
        if tag == "img":
            self.images.append(attributes)
        if tag in {"h1", "h2", "h3"}:
            self.headings.append(tag)
        if tag == "script":
            self.problems.append("script element")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else '-'}>")
            return
        self.stack.pop()


def _check(html: str) -> _Checker:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    return checker


@pytest.mark.parametrize("locale", ["en", "de"])
@pytest.mark.parametrize("event_type", TemplateRenderer().types())
def test_shipped_html_is_well_formed_and_accessible(
    shipped: TemplateRenderer, event_type: str, locale: str
) -> None:
    data = shipped.sample_data(event_type)
    data.setdefault("brand", {})["logo_url"] = "https://cdn.contoso.example/logo.png"
    email = shipped.render(event_type, locale=locale, data=data)

    checker = _check(email.html)

    assert checker.problems == []
    assert checker.stack == []
    assert checker.headings[0] == "h1"
    assert checker.headings.count("h1") == 1
    assert all(link.startswith(("https://", "mailto:", "tel:")) for link in checker.links), checker.links
    assert checker.images
    assert all(image.get("alt") for image in checker.images)
    assert 'name="color-scheme" content="light dark"' in email.html
    assert "@media (prefers-color-scheme: dark)" in email.html
    assert "max-width:600px" in email.html
