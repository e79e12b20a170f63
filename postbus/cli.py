"""The ``postbus`` command line.

Subcommand groups live next to the code they drive (``producers.cli``, ``worker.cli``,
``emulators.cli``, ...) and are imported only when invoked, so ``postbus --help`` stays fast
and does not pull in the Azure SDKs or proton.

Every failure the user can fix is reported as one line on stderr with a non-zero exit code:
usage errors exit 2, configuration errors exit 2, operational failures exit 1.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any

import click
import typer

from postbus import __version__
from postbus.errors import PostbusError

__all__ = ["COMMANDS", "LazyGroup", "build_cli", "main"]


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a subcommand lives (``module:attribute``, a ``typer.Typer``) and its one-line help."""

    target: str
    help: str


# Registration order is the order ``postbus --help`` lists them in.
COMMANDS: dict[str, LazyCommand] = {
    "emulator": LazyCommand("emulators.cli:app", "Run the local Service Bus and ACS Email emulators."),
    "demo": LazyCommand("postbus.demo:app", "Run a holiday spike end to end on the embedded emulators."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: dict[str, LazyCommand], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *self._lazy]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self._lazy:
            return self._load(cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text comes from the registry, so listing commands imports none of them.
        rows = [(name, entry.help) for name, entry in self._lazy.items()]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _load(self, name: str) -> click.Command:
        module_name, _, attr = self._lazy[name].target.partition(":")
        app = getattr(importlib.import_module(module_name), attr)
        command = typer.main.get_command(app) if isinstance(app, typer.Typer) else app
        if not isinstance(command, click.Command):  # pragma: no cover - registry mistake
            raise TypeError(f"{self._lazy[name].target} is not a command")
        command.name = name
        return command


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"postbus {__version__}")
        ctx.exit(0)


def build_cli() -> click.Group:
    """Build the root command (a fresh object per call, so tests can invoke it in isolation)."""
    return LazyGroup(
        name="postbus",
        lazy=COMMANDS,
        help="Postbus: transactional email on Azure Service Bus and ACS Email.",
        params=[
            click.Option(
                ["--version"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_print_version,
                help="Print the version and exit.",
            )
        ],
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``postbus`` console script; returns the process exit code."""
    cli = build_cli()
    try:
        result = cli.main(args=argv, prog_name="postbus", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx else "", err=True)
        return 2
    except click.ClickException as exc:
        click.echo(f"postbus: error: {exc.format_message()}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("postbus: aborted", err=True)
        return 130
    except PostbusError as exc:
        click.echo(f"postbus: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("postbus: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
