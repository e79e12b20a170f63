"""A stable access key: the emulator keeps one key in a state directory across restarts.

A worker or a ``.env`` file configured once keeps working after the emulator restarts; ``rotate``
(``--new-key`` on the command line) makes and stores a fresh one.

Example::

    key = stable_access_key(Path(".postbus"))          # the same key on every call
    key = stable_access_key(Path(".postbus"), rotate=True)
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from pathlib import Path

from postbus.emulators.acs_email.server import new_access_key

__all__ = ["KEY_FILE", "stable_access_key"]

KEY_FILE = "acs-email-access-key"


def stable_access_key(state_dir: Path, *, rotate: bool = False) -> str:
    """The key stored in ``state_dir``, created there on first use or when ``rotate`` is set.

    Raises ``OSError`` when the directory cannot be created or written, and ``ValueError`` when
    the stored file holds something that is not a base64 key.
    """
    path = state_dir / KEY_FILE
    if not rotate:
        try:
            stored = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            stored = ""
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} does not hold a base64 key") from exc
        if stored:
            try:
                base64.b64decode(stored, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"{path} does not hold a base64 key") from exc
            return stored
    key = new_access_key()
    state_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=state_dir)  # owner-only, like a key file
    try:
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(key + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return key
