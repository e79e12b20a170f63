"""The doctor's ``attachment store`` row: a read of an attachment that cannot exist tells reachable from not."""

from __future__ import annotations

from pathlib import Path

from postbus.settings import load_settings
from postbus.worker.ops.doctor import _attachment_store


async def test_a_local_store_passes_even_before_its_first_write(tmp_path: Path) -> None:
    check = await _attachment_store(load_settings(attachment_store_url=f"file://{tmp_path / 'none-yet'}"))
    assert (check.status, check.detail) == ("pass", f"readable: file://{tmp_path / 'none-yet'}")


async def test_an_unreachable_container_fails_with_the_fix() -> None:
    settings = load_settings(
        attachment_store_url="http://127.0.0.1:1/devstoreaccount1/claims",
        attachment_store_connection_string="AccountName=devstoreaccount1;AccountKey=a2V5",
    )
    check = await _attachment_store(settings)
    assert check.status == "fail"
    assert "Cannot connect to host 127.0.0.1:1" in check.detail
    assert "POSTBUS_ATTACHMENT_STORE_URL" in check.fix
