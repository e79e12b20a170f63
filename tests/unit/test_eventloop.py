"""POSTBUS_EVENT_LOOP: uvloop when installed and allowed, asyncio's own loop otherwise, one line when missing."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from postbus.errors import SettingsError
from postbus.eventloop import loop_factory, run
from postbus.settings import load_settings

HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def _without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "uvloop" else real(name, *a)
    )


def test_asyncio_is_asyncios_own_loop_whatever_is_installed() -> None:
    assert loop_factory("asyncio") is None
    assert run(_loop_module(), choice="asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_an_explicit_choice_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _without_uvloop(monkeypatch)
    assert run(_loop_module(), choice="auto").startswith("asyncio")
    with pytest.raises(SettingsError) as caught:
        run(_loop_module(), choice="uvloop")
    assert str(caught.value).startswith("POSTBUS_EVENT_LOOP: uvloop is not installed")
    assert "\n" not in str(caught.value)


@pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop (the fast extra) is not installed here")
@pytest.mark.parametrize("choice", ["auto", "uvloop"])
def test_with_uvloop_installed_auto_and_uvloop_run_on_it(choice: str) -> None:
    assert run(_loop_module(), choice=load_settings(None, event_loop=choice).event_loop).startswith("uvloop")


def test_an_unknown_choice_is_a_settings_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTBUS_EVENT_LOOP", "trio")
    with pytest.raises(SettingsError, match=r"^POSTBUS_EVENT_LOOP: "):
        load_settings()
