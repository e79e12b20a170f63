"""``postbus demo``: a bad --output is one line before anything starts; piped output is plain lines."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from postbus import demo
from postbus.cli import main
from postbus.harness import DemoReport


@pytest.mark.parametrize("where", ["a-file", "a-file/below"])
def test_an_output_that_is_not_a_directory_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    output = tmp_path / where
    assert main(["demo", "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.err == (
        f"postbus: error: Invalid value for --output: cannot write the demo's files into {str(output)!r}: "
        "it (or a parent) is a file, not a directory\n"
    )
    assert captured.out == ""


def test_an_output_that_cannot_be_written_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root may write anywhere, so a read-only directory proves nothing here: refuse the probe file.
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(demo.tempfile, "TemporaryFile", refuse)
    assert main(["demo", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"cannot write the demo's files into {str(tmp_path)!r}: Permission denied\n")
    assert err.count("\n") == 1


@dataclass
class _Counts:
    active: int
    scheduled: int = 0
    locked: int = 0
    deferred: int = 0
    dead_lettered: int = 0


class _Queue:
    """Drains two messages per look."""

    def __init__(self, total: int) -> None:
        self.left = total

    def counts(self, _queue: str) -> _Counts:
        self.left = max(0, self.left - 2)
        return _Counts(active=self.left)


class _Acs:
    def __init__(self, queue: _Queue, total: int) -> None:
        self.mailbox = _Mailbox(queue, total)


class _Mailbox:
    def __init__(self, queue: _Queue, total: int) -> None:
        self._queue, self._total = queue, total

    def __len__(self) -> int:
        return self._total - self._queue.left


async def test_piped_progress_is_plain_lines_ending_with_the_drained_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(demo.asyncio, "sleep", _no_wait)
    out = io.StringIO()
    console = Console(file=out, width=80)  # not a terminal: piped
    queue = _Queue(10)
    report = DemoReport(published=10)
    await demo._watch(console, queue, _Acs(queue, 10), report, t0=time.monotonic(), limit=60)  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    assert lines[-1].endswith("sent 10/10, dead-lettered 0, queued 0")
    assert all("\x1b" not in line for line in lines)
    assert report.problems == []


async def _no_wait(_seconds: float) -> None:
    return None


@pytest.mark.parametrize(("summarized", "code"), [(True, 0), (False, 130)])
def test_ctrl_c_after_the_summary_ends_the_demo_cleanly_and_before_it_says_so(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    summarized: bool,
    code: int,
) -> None:
    async def interrupted_run(*, report: DemoReport, **_options: Any) -> DemoReport:
        report.summarized = summarized
        raise KeyboardInterrupt

    monkeypatch.setattr(demo, "run_demo", interrupted_run)
    assert main(["demo", "--output", str(tmp_path)]) == code
    err = capsys.readouterr().err
    assert err == ("" if summarized else "postbus: interrupted: stopped by Ctrl-C before it finished\n")


class _Lanes:
    """Drained, with the dead letters on the critical lane only."""

    def counts(self, queue: str) -> _Counts:
        return _Counts(active=0, dead_lettered=3 if queue == "notifications-critical" else 0)


class _Sent:
    def __init__(self, n: int) -> None:
        self.mailbox = [object()] * n


async def test_dead_letters_on_any_lane_count_as_done(monkeypatch: pytest.MonkeyPatch) -> None:
    # An event dead-lettered on the critical lane is accounted for: the piped watch must not wait
    # for it on the normal queue until its time-out.
    monkeypatch.setattr(demo.asyncio, "sleep", _no_wait)
    out = io.StringIO()
    report = DemoReport(published=10)
    await demo._watch(Console(file=out, width=80), _Lanes(), _Sent(7), report, t0=time.monotonic(), limit=60)  # type: ignore[arg-type]
    assert out.getvalue().splitlines()[-1].endswith("sent 7/10, dead-lettered 3, queued 0")
    assert report.problems == []
