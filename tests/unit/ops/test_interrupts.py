"""The CLI's signal handling: the first SIGINT/SIGTERM asks to stop, the second cancels."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from postbus.cli import main as cli_main
from postbus.errors import Interrupted
from postbus.worker.ops.console import run_interruptible


def test_the_first_signal_sets_stop_and_the_run_returns_normally() -> None:
    async def main(stop: asyncio.Event) -> str:
        os.kill(os.getpid(), signal.SIGTERM)
        await stop.wait()
        return "finished cleanly"

    assert run_interruptible(main) == "finished cleanly"


def test_a_second_signal_cancels_and_says_what_was_done() -> None:
    async def main(stop: asyncio.Event) -> str:
        os.kill(os.getpid(), signal.SIGINT)
        await stop.wait()
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.Event().wait()  # only a cancellation ends this
        return "unreachable"

    with pytest.raises(Interrupted, match=r"^stopped at the second signal; replayed 3$"):
        run_interruptible(main, done_so_far=lambda: "replayed 3")
    # The handlers are gone again: the default SIGINT handler is back in charge.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_the_root_command_prints_one_line_for_an_interrupt(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through typer, which turns a KeyboardInterrupt into a silent exit: the line must still come.
    from postbus.worker.ops import dlq_cli

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise Interrupted("stopped at the second signal; replayed 2, skipped 0, failed 0 before it")

    monkeypatch.setenv(
        "POSTBUS_SERVICEBUS_CONNECTION_STRING",
        "Endpoint=sb://127.0.0.1:9;SharedAccessKeyName=a;SharedAccessKey=b;UseDevelopmentEmulator=true",
    )
    monkeypatch.setattr(dlq_cli, "run_interruptible", interrupted)
    assert cli_main(["dlq", "replay", "--force"]) == 130
    captured = capsys.readouterr()
    assert captured.err == (
        "postbus: interrupted: stopped at the second signal; replayed 2, skipped 0, failed 0 before it\n"
    )


def test_a_ctrl_c_in_any_command_is_one_line_not_a_silent_exit(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from postbus.worker.ops import dlq_cli

    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(dlq_cli, "ops_settings", interrupted)
    assert cli_main(["dlq", "list"]) == 130
    assert capsys.readouterr().err == "postbus: interrupted: stopped by Ctrl-C before it finished\n"
