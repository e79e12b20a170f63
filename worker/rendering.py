"""Render a notification event into an email: subject, HTML and plain text.

Templates live in a directory tree, one folder per notification type and one sub-folder per
locale (see ``docs/templates.md``)::

    worker/templates/
        _layout/                    shared layout and components (base.html.j2, base.txt.j2, …)
        order.confirmation/
            sample.json             sample data: documents the shape the templates expect
            en/subject.txt.j2  en/body.html.j2  en/body.txt.j2
            de/subject.txt.j2  de/body.html.j2  de/body.txt.j2

A user directory with the same layout is laid over the shipped one file by file (the user's
file wins), so it can override one subject, a whole locale, the layout, or add new types.

One Jinja2 environment is built per renderer: HTML autoescape, ``StrictUndefined``, templates
compiled once and cached, no reloading. Every failure while rendering is translated here, once,
into :class:`~worker.errors.TemplateError` (or :class:`~worker.errors.UnknownTemplate`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import jinja2

from postbus.errors import InvalidEvent, SettingsError
from postbus.events import NotificationEvent
from postbus.logs import get_logger
from postbus.worker.errors import TemplateError, UnknownTemplate
from postbus.worker.templates.filters import FILTERS, text_direction

__all__ = [
    "DEFAULT_LOCALE",
    "SHIPPED_TEMPLATES",
    "TEMPLATE_FILES",
    "RenderedEmail",
    "TemplateRenderer",
    "fallback_chain",
    "template_check",
]

log = get_logger(__name__)

#: The directory of templates that ship with Postbus.
SHIPPED_TEMPLATES: Final = Path(__file__).resolve().parent / "templates"
#: Every locale's last fallback; every type must have it.
DEFAULT_LOCALE: Final = "en"
#: The three files each ``<type>/<locale>/`` folder holds.
TEMPLATE_FILES: Final = ("subject.txt.j2", "body.html.j2", "body.txt.j2")
SAMPLE_FILE: Final = "sample.json"

# Arbitrary locale strings arrive with events; cap how many distinct ones we memoise.
_MAX_CACHED_LOCALES: Final = 4096
_MAX_MESSAGE: Final = 500
_BLANK_RUN: Final = re.compile(r"\n[ \t]*\n[ \t]*\n(?:[ \t]*\n)+")
_SUBJECT_BREAKS: Final = re.compile(r"[\x00-\x20\x7f-\x9f\u2028\u2029]+")
_LOCALE_RE: Final = re.compile(r"^[A-Za-z]{2,8}(?:[-_][A-Za-z0-9]{1,8})*$")


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """The rendered content of one email; equal inputs give byte-identical values."""

    subject: str
    html: str
    text: str


@dataclass(frozen=True, slots=True)
class _TypeInfo:
    """What the merged tree holds for one notification type."""

    locales: Mapping[str, str]  # normalised locale key -> folder name as spelled on disk
    sample: Path
    source: str  # "shipped", "user" or "shipped+user"


@dataclass(frozen=True, slots=True)
class _Compiled:
    event_type: str
    locale: str  # the template folder actually used, e.g. "de"
    subject: jinja2.Template
    html: jinja2.Template
    text: jinja2.Template


def fallback_chain(locale: str) -> list[str]:
    """Normalised lookup keys for ``locale``: exact, then shorter prefixes, then ``en``.

    >>> fallback_chain("de_DE")
    ['de-de', 'de', 'en']
    """
    chain: list[str] = []
    cleaned = locale.strip()
    if _LOCALE_RE.match(cleaned):
        parts = cleaned.replace("_", "-").lower().split("-")
        chain = ["-".join(parts[:n]) for n in range(len(parts), 0, -1)]
    if DEFAULT_LOCALE not in chain:
        chain.append(DEFAULT_LOCALE)
    return chain


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".htm.j2", ".html"))


def _finalize(value: Any) -> Any:
    # An explicit JSON null in the data renders as nothing rather than the word "None".
    return "" if value is None else value


def _run(template: jinja2.Template, context: dict[str, Any]) -> str:
    """``template.render(context)`` without copying ``context`` (it already holds the globals)."""
    try:
        return "".join(template.root_render_func(template.new_context(context, shared=True)))
    except Exception:
        # Re-raises with the template's own file and line in the traceback, as render() does.
        template.environment.handle_exception()
        raise  # pragma: no cover - handle_exception always raises


def _one_line_subject(text: str) -> str:
    # A subject is a header: no CR/LF (header injection), no other control characters or line
    # separators, no runs of spaces. No-break spaces stay: they keep "2:30 PM" or "12,50 €" together.
    return _SUBJECT_BREAKS.sub(" ", text).strip()


def _tidy_text(text: str) -> str:
    # Conditional blocks leave runs of blank lines behind; two in a row is the most we keep.
    return _BLANK_RUN.sub("\n\n\n", text.strip()) + "\n"


def _one_line(message: str) -> str:
    text = " ".join(message.split())
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


class _DataEnvironment(jinja2.Environment):
    """Prefer data keys to dict methods: ``order.items`` is the order's items, not ``dict.items``."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


class TemplateRenderer:
    """Renders notification events with the shipped templates and, optionally, a user directory.

    Example::

        renderer = TemplateRenderer(user_dir=Path("/etc/postbus/templates"))
        email = renderer.render(
            "order.confirmation", locale="de-DE", data=renderer.sample_data("order.confirmation")
        )
        email.subject  # 'Ihre Bestellung CO-2026-104583 ist bestätigt'

    Construction scans both trees (cheap); templates are compiled on first use and cached.
    Rendering is thread-safe and deterministic.
    """

    def __init__(self, user_dir: Path | None = None) -> None:
        if user_dir is not None and not user_dir.is_dir():
            raise SettingsError(f"templates directory {str(user_dir)!r} does not exist or is not a directory")
        self._user_dir = user_dir.resolve() if user_dir is not None else None
        self._roots: tuple[Path, ...] = (
            (self._user_dir, SHIPPED_TEMPLATES) if self._user_dir is not None else (SHIPPED_TEMPLATES,)
        )
        self._types = self._scan()
        self._env = _DataEnvironment(
            loader=jinja2.FileSystemLoader([str(root) for root in self._roots], encoding="utf-8"),
            undefined=jinja2.StrictUndefined,
            autoescape=_autoescape,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
            cache_size=-1,
            finalize=_finalize,
        )
        self._env.filters.update(FILTERS)
        self._compiled: dict[tuple[str, str], _Compiled] = {}
        self._resolved: dict[tuple[str, str], tuple[str, str]] = {}
        self._broken: dict[tuple[str, str], str] = {}

    # -- catalogue ---------------------------------------------------------------------------

    def types(self) -> list[str]:
        """Sorted notification types available (shipped and user)."""
        return sorted(self._types)

    def locales(self, event_type: str) -> list[str]:
        """Sorted locale folders available for ``event_type`` (e.g. ``['de', 'en']``)."""
        return sorted(self._info(event_type).locales.values())

    def source(self, event_type: str) -> str:
        """Where ``event_type`` comes from: ``shipped``, ``user`` or ``shipped+user`` (overridden)."""
        return self._info(event_type).source

    def sample_data(self, event_type: str) -> dict[str, Any]:
        """A fresh copy of ``<type>/sample.json``: data the type's templates render with."""
        sample = self._info(event_type).sample
        try:
            data = json.loads(sample.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TemplateError(_one_line(f"{event_type}: cannot read {sample}: {exc}")) from exc
        if not isinstance(data, dict):
            raise TemplateError(f"{event_type}: {sample} must hold a JSON object")
        return data

    def resolve_locale(self, event_type: str, locale: str) -> str:
        """The locale folder that :meth:`render` uses for ``locale`` (``de-AT`` -> ``de``)."""
        return self._resolve(event_type, locale)[0]

    # -- rendering ---------------------------------------------------------------------------

    def render(
        self, event_type: str, *, locale: str, data: Mapping[str, Any], tenant: str = ""
    ) -> RenderedEmail:
        """Render ``event_type`` for ``locale`` with ``data`` as the template variables.

        Raises :class:`UnknownTemplate` for a type with no templates and :class:`TemplateError`
        for anything that goes wrong while compiling or rendering (the message names the type,
        locale, template file and problem).
        """
        folder, fmt_locale = self._resolve(event_type, locale)
        compiled = self._compile(event_type, folder)
        # One context dict shared by the three templates (Template.render would copy it twice each).
        context = {**self._env.globals, **data}
        # One reserved name, so data keys never collide with what the layout and filters need.
        context["postbus"] = {
            "type": event_type,
            "tenant": tenant,
            "locale": fmt_locale,
            "template_locale": folder,
            "language": folder.split("-", 1)[0].lower(),
            "dir": text_direction(folder),
        }
        try:
            subject = _one_line_subject(_run(compiled.subject, context))
            html = _run(compiled.html, context)
            text = _run(compiled.text, context)
        except Exception as exc:  # every render failure is a TemplateError, by contract
            raise TemplateError(self._describe(compiled.event_type, compiled.locale, exc)) from exc
        return RenderedEmail(subject=subject, html=html, text=_tidy_text(text))

    # -- internals ---------------------------------------------------------------------------

    def _info(self, event_type: str) -> _TypeInfo:
        try:
            return self._types[event_type]
        except KeyError:
            known = ", ".join(sorted(self._types)[:12])
            raise UnknownTemplate(
                _one_line(f"no template for notification type {event_type!r} (known: {known})")
            ) from None

    def _resolve(self, event_type: str, locale: str) -> tuple[str, str]:
        """Return (template folder, formatting locale) for a requested locale."""
        key = (event_type, locale)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit
        info = self._info(event_type)
        for candidate in fallback_chain(locale):
            folder = info.locales.get(candidate)
            if folder is not None:
                break
        else:  # pragma: no cover - _scan guarantees an "en" folder for every type
            raise UnknownTemplate(f"{event_type}: no '{DEFAULT_LOCALE}' templates")
        requested = fallback_chain(locale)[0]
        # Format dates and money for the requested region (en-GB, de-CH) when it speaks the
        # template's language; otherwise the text and its numbers would disagree.
        same_language = requested.split("-", 1)[0] == candidate.split("-", 1)[0]
        fmt_locale = requested if same_language else candidate
        result = (folder, fmt_locale)
        if len(self._resolved) < _MAX_CACHED_LOCALES:
            self._resolved[key] = result
        return result

    def _compile(self, event_type: str, folder: str) -> _Compiled:
        key = (event_type, folder)
        compiled = self._compiled.get(key)
        if compiled is not None:
            return compiled
        broken = self._broken.get(key)
        if broken is not None:
            raise TemplateError(broken)
        try:
            subject, html, text = (
                self._env.get_template(f"{event_type}/{folder}/{name}") for name in TEMPLATE_FILES
            )
        except Exception as exc:  # syntax errors, missing includes, bad encodings
            message = self._describe(event_type, folder, exc)
            self._broken[key] = message
            log.warning("templates.compile_failed", type=event_type, locale=folder, error=message)
            raise TemplateError(message) from exc
        compiled = _Compiled(event_type, folder, subject, html, text)
        self._compiled[key] = compiled
        return compiled

    def _describe(self, event_type: str, folder: str, exc: BaseException) -> str:
        where = self._where(exc, f"{event_type}/{folder}/")
        if isinstance(exc, jinja2.TemplateSyntaxError):
            problem = f"syntax error: {exc.message}"
        elif isinstance(exc, jinja2.TemplateNotFound):
            problem = f"template {exc.name!r} not found"
        elif isinstance(exc, jinja2.UndefinedError):
            problem = str(exc.message)
        else:
            problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        suffix = f" in {where}" if where else ""
        return _one_line(f"{event_type}/{folder}: {problem}{suffix}")

    def _where(self, exc: BaseException, prefix: str) -> str:
        """``body.html.j2 line 12``: the innermost template frame of the failure."""
        if isinstance(exc, jinja2.TemplateSyntaxError) and (exc.filename or exc.name):
            return f"{self._short(exc.filename or exc.name or '', prefix)} line {exc.lineno}"
        where = ""
        tb: TracebackType | None = exc.__traceback__
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.endswith(".j2"):
                where = f"{self._short(filename, prefix)} line {tb.tb_lineno}"
            tb = tb.tb_next
        return where

    def _short(self, filename: str, prefix: str) -> str:
        name = filename.replace("\\", "/")
        for root in self._roots:
            root_str = root.as_posix() + "/"
            if name.startswith(root_str):
                name = name[len(root_str) :]
                break
        return name[len(prefix) :] if name.startswith(prefix) else name

    def _scan(self) -> dict[str, _TypeInfo]:
        """Index the merged tree: types, their complete locale folders and sample files."""
        folders: dict[str, dict[str, str]] = {}  # type -> normalised locale -> folder name
        files: dict[str, dict[str, set[str]]] = {}  # type -> folder -> files present (any root)
        samples: dict[str, Path] = {}
        origins: dict[str, set[str]] = {}
        for root in self._roots:
            origin = "shipped" if root == SHIPPED_TEMPLATES else "user"
            for type_dir in sorted(p for p in root.iterdir() if p.is_dir()):
                name = type_dir.name
                if name.startswith(("_", ".")):
                    continue
                origins.setdefault(name, set()).add(origin)
                sample = type_dir / SAMPLE_FILE
                if sample.is_file():
                    samples.setdefault(name, sample)
                for locale_dir in sorted(p for p in type_dir.iterdir() if p.is_dir()):
                    if not _LOCALE_RE.match(locale_dir.name):
                        log.warning("templates.not_a_locale", type=name, folder=locale_dir.name)
                        continue
                    present = {f for f in TEMPLATE_FILES if (locale_dir / f).is_file()}
                    files.setdefault(name, {}).setdefault(locale_dir.name, set()).update(present)
                    folders.setdefault(name, {}).setdefault(
                        fallback_chain(locale_dir.name)[0], locale_dir.name
                    )
        if not any("shipped" in seen_in for seen_in in origins.values()):
            # Type folders (order.confirmation) are not Python packages; a build that forgets them
            # in package-data installs a worker that would dead-letter every message.
            raise SettingsError(
                f"no shipped templates in {SHIPPED_TEMPLATES}: the package was built without its "
                "template files (package-data for worker.templates must include **/*.j2 and **/*.json)"
            )
        types: dict[str, _TypeInfo] = {}
        for name, seen_in in origins.items():
            complete = {
                key: folder
                for key, folder in folders.get(name, {}).items()
                if files[name][folder] == set(TEMPLATE_FILES)
            }
            for folder, present in files.get(name, {}).items():
                if present != set(TEMPLATE_FILES):
                    missing = ", ".join(sorted(set(TEMPLATE_FILES) - present))
                    log.warning("templates.locale_incomplete", type=name, locale=folder, missing=missing)
            if name not in samples:
                raise SettingsError(f"template type {name!r} has no {SAMPLE_FILE} (every type must ship one)")
            if DEFAULT_LOCALE not in complete:
                raise SettingsError(
                    f"template type {name!r} has no complete '{DEFAULT_LOCALE}/' folder "
                    f"(needs {', '.join(TEMPLATE_FILES)}); it is every locale's last fallback"
                )
            source = "shipped+user" if len(seen_in) == 2 else next(iter(seen_in))
            types[name] = _TypeInfo(locales=complete, sample=samples[name], source=source)
        return types


def template_check(renderer: TemplateRenderer) -> Callable[[NotificationEvent], None]:
    """A publish check that renders the event as a worker with ``renderer``'s templates would.

    It refuses, as :class:`~postbus.errors.InvalidEvent`, a type with no template (field
    ``type``) and data the templates cannot render (field ``data``): what the worker would
    dead-letter as ``UnknownTemplate`` or ``TemplateError``. For a publisher that sees the same
    templates as the workers::

        # from postbus.producers import Publisher, all_of, publish_checks
        check = all_of(publish_checks(settings), template_check(TemplateRenderer(user_dir=settings.templates_dir)))
        Publisher.from_settings(settings, check=check)
    """

    def check(event: NotificationEvent) -> None:
        try:
            renderer.render(event.type, locale=event.locale, data=event.data, tenant=event.tenant)
        except UnknownTemplate as exc:
            raise InvalidEvent(f"type: {exc}", field="type") from None
        except TemplateError as exc:
            raise InvalidEvent(f"data: {exc}", field="data") from None

    return check
