"""The ``.env`` file: ``NAME=value`` lines read before the environment, which wins over them.

Which file: ``POSTBUS_ENV_FILE`` when it is set (empty: no file), else ``.env`` in the current
directory when there is one. A file named explicitly must exist; a missing default file is simply
not read. A line the parser cannot read fails at start with one line naming the file and the line
number -- an unterminated quote would otherwise swallow the settings below it::

    path = env_file_path(os.environ)            # Path(".env"), or None
    values = read_env_file(path)                # {"POSTBUS_QUEUE": "orders", ...}

The syntax is python-dotenv's (the parser pydantic-settings uses): ``NAME=value``, optional
``export``, ``#`` comments, single or double quotes. Values are never put into ``os.environ``.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from dotenv.parser import parse_stream

from postbus.errors import SettingsError

__all__ = ["DEFAULT_ENV_FILE", "ENCODING", "ENV_FILE_VARIABLE", "env_file_path", "read_env_file"]

#: The variable that names the file (it cannot be set from inside the file).
ENV_FILE_VARIABLE: Final = "POSTBUS_ENV_FILE"
DEFAULT_ENV_FILE: Final = ".env"
#: UTF-8; a byte-order mark (as some Windows editors write) is dropped.
ENCODING: Final = "utf-8-sig"


def env_file_path(environ: Mapping[str, str]) -> Path | None:
    """The file to read, or ``None``; raises :class:`SettingsError` if a file named explicitly is missing."""
    named = environ.get(ENV_FILE_VARIABLE)
    if named is None:
        default = Path(DEFAULT_ENV_FILE)
        return default if default.is_file() else None
    if not named.strip():
        return None
    path = Path(named).expanduser()
    if not path.exists():
        raise SettingsError(f"{ENV_FILE_VARIABLE}: {named} does not exist (set it empty to read no file)")
    if path.is_dir():
        raise SettingsError(f"{ENV_FILE_VARIABLE}: {named} is a directory, not a file of NAME=value lines")
    return path


def read_env_file(path: Path) -> dict[str, str | None]:
    """Every ``NAME=value`` of ``path`` (a name without ``=`` maps to ``None``); one-line errors.

    Raises :class:`SettingsError` naming ``POSTBUS_ENV_FILE``, the file and the first line that cannot
    be read. The message never contains a value from the file.
    """
    try:
        text = path.read_text(encoding=ENCODING)
    except UnicodeDecodeError:
        raise SettingsError(f"{ENV_FILE_VARIABLE}: {path} is not UTF-8 text") from None
    except OSError as exc:
        raise SettingsError(f"{ENV_FILE_VARIABLE}: cannot read {path}: {exc.strerror or exc}") from None
    values: dict[str, str | None] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise SettingsError(
                f"{ENV_FILE_VARIABLE}: {path} line {binding.original.line} is not NAME=value "
                "(check its quotes; '#' starts a comment)"
            )
        if binding.key is not None:
            values[binding.key] = binding.value
    return values
