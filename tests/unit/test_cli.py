"""The root command line: fast help, a version, and one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from postbus import __version__
from postbus.cli import COMMANDS, main


def test_help_lists_every_registered_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, entry in COMMANDS.items():
        assert name in out
        assert entry.help[:30] in out


def test_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"postbus {__version__}"


@pytest.mark.parametrize(
    ("argv", "message"),
    [(["--bogus"], "No such option: --bogus"), (["frobnicate"], "No such command 'frobnicate'")],
)
def test_bad_arguments_get_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip().rstrip(".") == f"postbus: error: {message}"
    assert err.count("\n") == 1


def test_help_does_not_import_subcommands_or_sdks() -> None:
    # Lazy registration keeps `postbus --help` fast: nothing heavy is imported to list commands.
    probe = (
        "import sys; from postbus.cli import main; main(['--help']); "
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('azure', 'proton', 'aiohttp', 'jinja2', 'emulators', 'worker', 'producers', 'opentelemetry')]; "
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postbus.cli", "--version"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0
    assert result.stdout.strip() == f"postbus {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["publish", "--help"],
        ["worker", "--help"],
        ["templates", "list", "--help"],
        ["dlq", "list", "--help"],
        ["dlq", "replay", "--help"],
        ["dlq", "purge", "--help"],
        ["status", "--help"],
        ["doctor", "--help"],
        ["emulator", "up", "--help"],
        ["demo", "--help"],
    ],
    ids=" ".join,
)
def test_flags_show_no_value_type_in_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    # A flag such as --json takes no value; "<bool>" beside it read as if it wanted one.
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--help" in out
    assert "<bool>" not in out
