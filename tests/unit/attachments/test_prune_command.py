"""``postbus attachments prune`` on the local directory store: retention by age, one line out."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from postbus.cli import main


def _blob(root: Path, name: str, age_days: float) -> Path:
    path = root / "sha256" / (name * 64)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"%PDF-1.7")
    stamp = time.time() - age_days * 86400
    os.utime(path, (stamp, stamp))
    return path


def test_prune_deletes_only_attachments_older_than_the_retention(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / ".postbus" / "attachments"
    old, fresh = _blob(root, "a", 31), _blob(root, "b", 29)
    assert main(["attachments", "prune", "--dry-run"]) == 0
    assert (
        capsys.readouterr().out
        == "would prune 1 attachment(s) older than 30 days from file:.postbus/attachments\n"
    )
    assert old.exists()
    assert main(["attachments", "prune"]) == 0
    assert capsys.readouterr().out.startswith("pruned 1 attachment(s) older than 30 days")
    assert not old.exists()
    assert fresh.exists()
    monkeypatch.setenv("POSTBUS_RECORD_RETENTION_DAYS", "7")
    assert main(["attachments", "prune"]) == 0
    assert not fresh.exists()


def test_an_unreachable_container_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("POSTBUS_ATTACHMENT_STORE_URL", "http://127.0.0.1:1/devstoreaccount1/claims")
    monkeypatch.setenv(
        "POSTBUS_ATTACHMENT_STORE_CONNECTION_STRING", "AccountName=devstoreaccount1;AccountKey=a2V5"
    )
    assert main(["attachments", "prune"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("postbus: error: blob sha256/* in http://127.0.0.1:1/devstoreaccount1/claims: ")
