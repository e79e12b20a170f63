"""Docs that hold: every Markdown link in README.md and docs/ resolves inside the repository.

Relative links must name a file or folder of the repository (never a path that climbs out of it)
and any ``#anchor`` must be a heading of the target page. Links to http(s) pages are allowed (the
public Microsoft docs); any other scheme is not. Code blocks and inline code are not links.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]
PAGES = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md")])

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`+[^`\n]*`+")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.MULTILINE)
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def _prose(text: str) -> str:
    return _CODE.sub("", _FENCE.sub("", text))


def links(page: Path) -> list[str]:
    prose = _prose(page.read_text(encoding="utf-8"))
    return [*_LINK.findall(prose), *_REFERENCE.findall(prose)]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: inline markup dropped, lower case, punctuation out, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def problem(page: Path, target: str) -> str | None:
    """Why ``target`` (a link on ``page``) does not hold, or None."""
    parts = urlsplit(target)
    if parts.scheme in ("http", "https"):
        return None
    if parts.scheme or parts.netloc:
        return "only http(s) links may leave the repository"
    destination = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if not destination.is_relative_to(REPO):
        return "points outside the repository"
    if not destination.exists():
        return "no such file in the repository"
    if parts.fragment and destination.suffix == ".md" and parts.fragment not in anchors(destination):
        return f"no heading #{parts.fragment} in {destination.relative_to(REPO)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    broken = [f"{target}: {why}" for target in links(page) if (why := problem(page, target))]
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_page_cites_the_teams_notes_outside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    assert re.findall(r"(?:\.\./)+shared/|shared/reference/|/work/", text) == []


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("../shared/ARCHITECTURE.md", "points outside the repository"),
        ("docs/nowhere.md", "no such file in the repository"),
        ("docs/publishing.md#no-such-heading", "no heading #no-such-heading in docs/publishing.md"),
        ("#not-a-heading", "no heading #not-a-heading in README.md"),
        ("file:///etc/passwd", "only http(s) links may leave the repository"),
        ("//example.com/x", "only http(s) links may leave the repository"),
        ("docs/publishing.md#what-is-checked-where", None),
        ("#quickstart", None),
        ("https://learn.microsoft.com/azure/communication-services/", None),
    ],
)
def test_the_checker_catches_what_it_should(target: str, why: str | None) -> None:
    assert problem(REPO / "README.md", target) == why


def test_the_checker_sees_links_and_skips_code() -> None:
    sample = REPO / "README.md"
    text = '[a](x.md) and `[b](y.md)`\n```\n[c](z.md)\n```\n![img](pic.png "title")\n[ref]: ../out.md\n'
    assert [*_LINK.findall(_prose(text)), *_REFERENCE.findall(_prose(text))] == [
        "x.md",
        "pic.png",
        "../out.md",
    ]
    assert slug("Custom domain: SPF, DKIM, DMARC") == "custom-domain-spf-dkim-dmarc"
    assert slug("Django: `transaction.on_commit`") == "django-transactionon_commit"
    assert sample.exists()
