"""``NAME=value`` lines that both a POSIX shell and a ``.env`` reader take the same way.

A value of only ``A-Z a-z 0-9 _ . / : @ % + = , -`` is written bare; anything else (``;`` in a
connection string, the quotes and spaces of JSON) goes in single quotes, inside which neither a
shell (``set -a; . ./.env``) nor python-dotenv (what pydantic-settings reads ``.env`` with) changes
anything. A value that holds a single quote, a backslash or a line break has no such spelling and is
refused.

Example::

    text = format_env({"POSTBUS_QUOTA_PER_MINUTE": "30", "POSTBUS_SENDERS": '{"orders": "o@x.test"}'})
    merge_env_file(Path(".env"), values)   # replaces those names' lines, keeps every other line
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["format_env", "format_line", "merge_env_file"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE = re.compile(r"[A-Za-z0-9_./:@%+=,-]*")
_ASSIGNMENT = re.compile(r"\s*(export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=")


def format_line(name: str, value: str) -> str:
    """``NAME=value`` or ``NAME='value'`` (raises ``ValueError`` for a value with no safe spelling)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a variable name")
    if _BARE.fullmatch(value):
        return f"{name}={value}"
    if "'" in value or "\\" in value or "\n" in value or "\r" in value:
        raise ValueError(f"{name}: a value with a quote, backslash or line break cannot be written")
    return f"{name}='{value}'"


def format_env(values: Mapping[str, str]) -> str:
    """One line per variable, in the mapping's order, ending with a newline."""
    return "".join(format_line(name, value) + "\n" for name, value in values.items())


def merge_env_file(path: Path, values: Mapping[str, str], *, remove: Iterable[str] = ()) -> None:
    """Write ``values`` into the file at ``path``, keeping every line that sets another name.

    A line that assigns one of ``values`` (``NAME=...``, or ``export NAME=...`` which stays an
    export) is replaced where it stands, and a line that assigns a name in ``remove`` is dropped.
    Names not yet in the file are appended; comments, blank lines and other names are kept as they
    are. The file is replaced atomically and left readable by its owner only, since it holds keys.
    Raises ``OSError`` when the file cannot be read or written.
    """
    lines = format_env(values).splitlines()  # validates every value before touching the file
    wanted = dict(zip(values, lines, strict=True))
    dropped = set(remove)
    try:
        existing = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        existing = []
    out: list[str] = []
    for line in existing:
        match = _ASSIGNMENT.match(line)
        name = match.group(2) if match else None
        if match and name in wanted:
            out.append(("export " if match.group(1) else "") + wanted.pop(name))
        elif name is None or (name not in values and name not in dropped):
            out.append(line)  # (a second assignment of a written name is dropped too)
    out.extend(wanted.values())
    directory = path.parent if str(path.parent) else Path()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(out) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
