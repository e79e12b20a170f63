"""The emulator's access key survives restarts unless it is rotated."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from postbus.emulators.acs_email.keys import KEY_FILE, stable_access_key


def test_the_first_call_makes_a_key_and_later_calls_return_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    key = stable_access_key(state)
    assert len(base64.b64decode(key, validate=True)) == 64
    assert stable_access_key(state) == key
    assert stat.S_IMODE(os.stat(state / KEY_FILE).st_mode) == 0o600


def test_rotate_replaces_the_stored_key(tmp_path: Path) -> None:
    first = stable_access_key(tmp_path)
    second = stable_access_key(tmp_path, rotate=True)
    assert second != first
    assert stable_access_key(tmp_path) == second


def test_a_damaged_key_file_is_reported_not_replaced(tmp_path: Path) -> None:
    (tmp_path / KEY_FILE).write_text("not base64!\n", encoding="ascii")
    with pytest.raises(ValueError, match="does not hold a base64 key"):
        stable_access_key(tmp_path)
    assert (tmp_path / KEY_FILE).read_text(encoding="ascii") == "not base64!\n"


def test_a_state_dir_that_is_a_file_raises_oserror(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="ascii")
    with pytest.raises(NotADirectoryError):
        stable_access_key(blocker)
